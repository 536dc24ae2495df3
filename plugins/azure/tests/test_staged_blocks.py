"""Values over 8 MiB are staged in blocks and committed by one Put Block List: what a
commit publishes, and what two writers of one blob get."""

from __future__ import annotations

import io
import os

from stashflow_azure import PART_BYTES
from stashflow_test_io import race


def test_streamed_write_is_staged_in_blocks_and_committed_once(backend, azure, container):
    data = os.urandom(2 * PART_BYTES + 12345)
    backend.write("big/stream", io.BufferedReader(io.BytesIO(data)))
    assert backend.read("big/stream") == data
    blob = azure.raw.get_blob_client(container, "results/v1/big/stream")
    committed, uncommitted = blob.get_block_list("all")
    assert [b.size for b in committed] == [PART_BYTES, PART_BYTES, 12345]
    assert uncommitted == []


def test_big_conditional_creates_raced_have_one_winner(backend):
    values = [bytes([i]) * (PART_BYTES + 100) for i in range(2)]
    results = race(2, lambda i: backend.create("race/big", io.BytesIO(values[i])))
    assert sorted(results) == [False, True], results
    assert backend.read("race/big") == values[results.index(True)]


def test_big_writes_raced_on_one_blob_both_land_whole(backend):
    values = [bytes([i]) * (2 * PART_BYTES) for i in range(2)]
    assert race(2, lambda i: backend.write("race/write", io.BytesIO(values[i]))) == [None, None]
    assert backend.read("race/write") in values
