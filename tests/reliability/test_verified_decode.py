"""Only verified bytes are decoded: a writer racing a signed reader never gets code run.

The attacker can write the storage but has no signing key. It rewrites the
first bytes of a big signed record's payload in place, over and over, flipping
between the genuine bytes and a pickle that creates a marker file. A reader that
verified one view of the file and then unpickled from the file again would run
the attacker's pickle whenever the flip lands between the two; stashflow
decodes a private copy of exactly the bytes it verified.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time

import pytest
from stashflow import ResultStore
from stashflow.exceptions import ResultCorrupted

ATTACKER = textwrap.dedent("""
    import sys, time
    path, offset, good, evil, stop = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), \\
        bytes.fromhex(sys.argv[4]), sys.argv[5]
    import os
    with open(path, "r+b") as f:
        n = 0
        while not os.path.exists(stop):
            f.seek(offset); f.write(evil); f.flush()
            time.sleep(0.0005 * (n % 7))
            f.seek(offset); f.write(good); f.flush()
            time.sleep(0.0005 * (n % 5))
            n += 1
""")


class Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "a"))


@pytest.mark.slow
@pytest.mark.parametrize("mib", [32, 96])
def test_a_writer_racing_a_signed_reader_never_gets_its_pickle_decoded(tmp_path, monkeypatch, mib):
    monkeypatch.setenv("STASHFLOW_RESULTS_SIGNING_KEY", "reader's key")
    marker = tmp_path / "pwned"
    store = ResultStore(tmp_path / "root", "pickle")
    value = os.urandom(mib * 1024 * 1024)
    meta = store.write("big", value)
    path = tmp_path / "root" / "big"
    offset = meta.header_size
    evil = pickle.dumps(Evil(str(marker)), protocol=5)
    good = path.read_bytes()[offset:offset + len(evil)]
    stop = tmp_path / "stop"
    script = tmp_path / "attacker.py"
    script.write_text(ATTACKER)
    attacker = subprocess.Popen([sys.executable, str(script), str(path), str(offset), good.hex(),
                                 evil.hex(), str(stop)])
    outcomes = {"value": 0, "refused": 0}
    try:
        deadline = time.monotonic() + 20
        tries = 0
        while tries < 12 or (time.monotonic() < deadline and tries < 40):
            tries += 1
            try:
                assert store.read("big") == value
                outcomes["value"] += 1
            except ResultCorrupted:  # the copy taken was the attacker's: refused
                outcomes["refused"] += 1
    finally:
        stop.touch()
        attacker.wait(timeout=30)
    assert not marker.exists(), f"the attacker's pickle ran ({outcomes})"
    assert outcomes["refused"] > 0, "the attacker never raced the reader: the test proved nothing"
