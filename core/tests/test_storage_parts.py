"""stashflow.storage.parts: data cut into upload parts, and one request or many."""

import array
import io
import os
import threading

import pytest
from stashflow.storage.parts import iter_parts, single_or_parts


class Trickle(io.RawIOBase):
    """A raw stream that returns at most `most` bytes a read; `reads` counts them."""

    def __init__(self, data: bytes, most: int):
        self._data, self._pos, self._most = data, 0, most
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.reads += 1
        n = min(len(buffer), self._most, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos


def sizes(parts) -> list[int]:
    return [len(part) for part in parts]


def test_bytes_are_sliced_without_copying():
    data = os.urandom(2500)
    parts = list(iter_parts(data, 1000))
    assert sizes(parts) == [1000, 1000, 500]
    assert b"".join(parts) == data
    assert all(isinstance(part, memoryview) and part.obj is data for part in parts)


def test_any_bytes_like_object_is_cut_by_bytes():
    numbers = array.array("i", range(1000))  # 4 bytes an item
    parts = list(iter_parts(memoryview(numbers), 1024))
    assert sizes(parts) == [1024, 1024, 1024, 928]
    assert b"".join(parts) == numbers.tobytes()
    assert sizes(iter_parts(bytearray(3000), 1000)) == [1000, 1000, 1000]


def test_a_file_is_cut_from_where_it_stands_into_full_parts():
    data = os.urandom(2500)
    f = io.BytesIO(data)
    f.seek(100)
    parts = list(iter_parts(f, 1000))
    assert sizes(parts) == [1000, 1000, 400]
    assert b"".join(parts) == data[100:]


def test_empty_data_is_one_empty_part():
    assert sizes(iter_parts(b"", 1000)) == [0]
    assert sizes(iter_parts(io.BytesIO(), 1000)) == [0]


def test_a_file_of_whole_parts_ends_without_an_empty_part():
    assert sizes(iter_parts(b"x" * 3000, 1000)) == [1000, 1000, 1000]
    assert sizes(iter_parts(io.BytesIO(b"x" * 3000), 1000)) == [1000, 1000, 1000]


def test_short_reads_of_a_raw_stream_still_make_full_parts():
    data = os.urandom(10_000)
    source = Trickle(data, most=300)
    parts = list(iter_parts(source, 4096))
    assert sizes(parts) == [4096, 4096, 1808]
    assert b"".join(parts) == data
    assert source.reads > 3


def test_a_pipe_is_read_into_full_parts():
    data = os.urandom(300_000)  # more than a pipe holds: reads come back short
    r, w = os.pipe()

    def feed() -> None:
        with open(w, "wb") as f:
            f.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    with open(r, "rb", buffering=0) as source:
        parts = list(iter_parts(source, 128 * 1024))
    feeder.join()
    assert sizes(parts) == [128 * 1024, 128 * 1024, 300_000 - 256 * 1024]
    assert b"".join(parts) == data


def test_a_file_is_read_one_part_at_a_time():
    source = Trickle(os.urandom(5000), most=10_000)
    parts = iter_parts(source, 1000)
    assert source.tell() == 0  # nothing read before the first part is asked for
    next(parts)
    assert source.tell() == 1000
    next(parts)
    assert source.tell() == 2000


def test_a_part_size_below_one_is_refused():
    with pytest.raises(ValueError, match="part_size must be at least 1, not 0"):
        iter_parts(b"data", 0)


@pytest.mark.parametrize("make", [bytes, io.BytesIO], ids=["bytes", "file"])
@pytest.mark.parametrize("size", [0, 1, 999, 1000])
def test_what_fits_in_one_part_is_sent_whole(make, size):
    data = os.urandom(size)
    single, parts = single_or_parts(make(data), 1000)
    assert parts is None
    assert bytes(single) == data


@pytest.mark.parametrize("make", [bytes, io.BytesIO], ids=["bytes", "file"])
@pytest.mark.parametrize("size, expected", [(1001, [1000, 1]), (3000, [1000, 1000, 1000]),
                                            (3500, [1000, 1000, 1000, 500])])
def test_what_does_not_fit_comes_as_parts_none_empty(make, size, expected):
    data = os.urandom(size)
    single, parts = single_or_parts(make(data), 1000)
    assert single is None
    got = list(parts)
    assert sizes(got) == expected
    assert b"".join(got) == data


def test_the_choice_reads_a_file_no_further_than_its_second_part():
    source = Trickle(os.urandom(5500), most=700)
    single, parts = single_or_parts(source, 1000)
    assert single is None
    assert source.tell() == 2000  # the first part, and the second to know there is one
    assert sizes(parts) == [1000] * 5 + [500]


def test_a_short_first_part_is_the_whole_file():
    source = Trickle(os.urandom(500), most=100)
    single, parts = single_or_parts(source, 1000)
    assert parts is None and len(single) == 500
    assert source.read(1) == b""
