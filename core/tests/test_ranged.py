"""open_ranged: a seekable file over fetch(start, end), with a growing read-ahead."""

import io
import os
import pickle

import pytest
from stashflow.exceptions import StorageError
from stashflow.storage import ranged
from stashflow.storage.ranged import FIRST_READ_BYTES, MAX_READ_BYTES, open_ranged

KiB = 1024
MiB = 1024 * KiB


class Remote:
    """An object behind ranged GETs: `calls` records every (start, end) fetched."""

    def __init__(self, data: bytes):
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def fetch(self, start: int, end: int) -> bytes:
        assert 0 <= start < end <= len(self.data), (start, end)
        self.calls.append((start, end))
        return self.data[start:end]

    def open(self):
        return open_ranged(self.fetch, len(self.data), "test://bucket/key")

    @property
    def sizes(self) -> list[int]:
        return [end - start for start, end in self.calls]


@pytest.fixture
def remote():
    return Remote(os.urandom(3 * MiB + 123))


def test_reads_and_seeks_give_the_object_bytes(remote):
    data = remote.data
    with remote.open() as f:
        assert f.readable() and f.seekable() and not f.writable()
        assert f.name == "test://bucket/key"
        assert f.read(10) == data[:10]
        assert f.tell() == 10
        assert f.seek(2 * MiB + 5) == 2 * MiB + 5
        assert f.read(1000) == data[2 * MiB + 5:2 * MiB + 1005]
        assert f.seek(-50, io.SEEK_END) == len(data) - 50
        assert f.read() == data[-50:]
        assert f.read(10) == b""
        assert f.seek(100) == 100
        assert f.seek(20, io.SEEK_CUR) == 120
        assert f.read(5) == data[120:125]
        f.seek(7)  # backwards, inside what was read ahead
        assert f.read(3) == data[7:10]
        f.seek(len(data) + 10)  # past the end: reads give nothing, fetch nothing
        assert f.read(1) == b""
        f.seek(0)
        assert f.read() == data


def test_a_header_read_costs_one_small_fetch(remote):
    with remote.open() as f:
        assert f.read(100) == remote.data[:100]
        f.seek(30)
        assert f.read(500) == remote.data[30:530]  # from the read-ahead
        assert remote.calls == [(0, FIRST_READ_BYTES)]
        assert f.fetched == FIRST_READ_BYTES


def test_the_read_ahead_doubles_with_each_sequential_refill():
    remote = Remote(os.urandom(4 * MiB))
    with remote.open() as f:
        chunks = list(iter(lambda: f.read(4 * KiB), b""))
    assert b"".join(chunks) == remote.data
    assert remote.sizes == [64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, MiB, 2 * MiB, 64 * KiB]
    assert [start for start, _ in remote.calls] == [0, *(end for _, end in remote.calls[:-1])]
    assert sum(remote.sizes) == len(remote.data)  # every byte fetched once


def test_the_read_ahead_stops_growing_at_its_cap(monkeypatch):
    monkeypatch.setattr(ranged, "FIRST_READ_BYTES", 16 * KiB)
    monkeypatch.setattr(ranged, "MAX_READ_BYTES", 128 * KiB)
    remote = Remote(os.urandom(MiB))
    with remote.open() as f:
        assert b"".join(iter(lambda: f.read(KiB), b"")) == remote.data
    assert remote.sizes[:6] == [16 * KiB, 32 * KiB, 64 * KiB, 128 * KiB, 128 * KiB, 128 * KiB]
    assert max(remote.sizes) == 128 * KiB
    assert sum(remote.sizes) == MiB


def test_a_seek_elsewhere_starts_the_read_ahead_small_again():
    remote = Remote(os.urandom(4 * MiB))
    with remote.open() as f:
        for _ in range(3):
            f.read(FIRST_READ_BYTES)  # 64 KiB, then 128 KiB of read-ahead
        f.seek(3 * MiB)
        assert f.read(10) == remote.data[3 * MiB:3 * MiB + 10]
        f.seek(0)  # backwards, past the read-ahead
        assert f.read(10) == remote.data[:10]
    assert remote.calls[-2:] == [(3 * MiB, 3 * MiB + FIRST_READ_BYTES), (0, FIRST_READ_BYTES)]


def test_a_read_bigger_than_the_read_ahead_goes_straight_into_the_callers_buffer(remote):
    with remote.open() as f:
        buf = bytearray(MiB)
        assert f.readinto(buf) == MiB
        assert buf == remote.data[:MiB]
        assert remote.calls == [(0, MiB)]  # one fetch, exactly what was asked for
        f.seek(10)
        assert f.read(10) == remote.data[10:20]
        assert remote.calls[-1] == (10, 10 + FIRST_READ_BYTES)  # nothing of it was kept


def test_a_big_read_is_fetched_in_pieces_of_the_cap(monkeypatch):
    monkeypatch.setattr(ranged, "MAX_READ_BYTES", 256 * KiB)
    remote = Remote(os.urandom(MiB + 5))
    with remote.open() as f:
        buf = bytearray(MiB + 100)
        assert f.readinto(buf) == MiB + 5
        assert buf[:MiB + 5] == remote.data
    assert remote.sizes == [256 * KiB] * 4 + [5]


def test_a_record_sized_read_then_the_rest_fetches_each_byte_once(remote):
    with remote.open() as f:
        head = f.read(FIRST_READ_BYTES)  # what read_record's first read asks for
        f.seek(200)
        rest = bytearray(len(remote.data) - 200)
        assert f.readinto(rest) == len(rest)
    assert head + rest[FIRST_READ_BYTES - 200:] == remote.data
    assert sum(remote.sizes) == len(remote.data)


def test_pickle_loads_a_big_value_through_it():
    value = {"payload": os.urandom(5 * MiB), "n": 1}
    remote = Remote(pickle.dumps(value, protocol=5))
    with remote.open() as f:
        assert pickle.load(f) == value
    assert sum(remote.sizes) == len(remote.data)
    assert max(remote.sizes) <= MAX_READ_BYTES


def test_an_empty_object_reads_empty_without_fetching():
    remote = Remote(b"")
    with remote.open() as f:
        assert f.read() == b""
        assert f.read(10) == b""
        assert f.seek(0, io.SEEK_END) == 0
    assert remote.calls == []


@pytest.mark.parametrize("wrong", [b"short", b"x" * (FIRST_READ_BYTES + 1)])
def test_a_fetch_of_the_wrong_length_is_a_storage_error_naming_the_object(wrong):
    f = open_ranged(lambda start, end: wrong, 10 * MiB, "test://bucket/key")
    with pytest.raises(StorageError, match=r"test://bucket/key: asked for 65536 bytes at offset 0"):
        f.read(10)


def test_fetch_errors_pass_through_unchanged():
    def fetch(start, end):
        raise StorageError("test: could not read test://bucket/key: gone")

    with pytest.raises(StorageError, match="could not read test://bucket/key: gone"):
        open_ranged(fetch, 100, "test://bucket/key").read(1)


def test_fetch_may_return_any_bytes_like_object(remote):
    data = remote.data
    f = open_ranged(lambda start, end: memoryview(bytearray(data[start:end])), len(data), "k")
    assert f.read(5) == data[:5]
    assert f.read() == data[5:]


def test_bad_seeks_and_a_closed_file_are_refused(remote):
    f = remote.open()
    with pytest.raises(ValueError, match="negative seek position -1"):
        f.seek(-1)
    with pytest.raises(ValueError, match="invalid whence"):
        f.seek(0, 3)
    f.close()
    assert f.closed
    for call in (lambda: f.read(1), lambda: f.seek(0), f.tell):
        with pytest.raises(ValueError, match="closed file"):
            call()
