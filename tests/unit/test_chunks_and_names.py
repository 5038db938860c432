"""Chunk math and name rules shared by every part."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusedfs.chunks import (
    BLOCK_SIZE,
    Span,
    aligned_range,
    chunk_count,
    crc32c,
    crc32c_combine,
    crc32c_replaced,
    is_valid_chunk_id,
    spans,
)
from fusedfs.errors import FsError
from fusedfs.names import split_path, validate_name


def test_spans_split_at_slot_boundaries() -> None:
    assert list(spans(0, 10, 4)) == [Span(0, 0, 4), Span(1, 0, 4), Span(2, 0, 2)]
    assert list(spans(5, 2, 4)) == [Span(1, 1, 2)]
    assert list(spans(3, 0, 4)) == []
    assert sum(s.length for s in spans(123, 10_000, 4096)) == 10_000


def test_chunk_count_and_aligned_range() -> None:
    assert [chunk_count(n, 4) for n in (0, 1, 4, 5)] == [0, 1, 1, 2]
    assert aligned_range(BLOCK_SIZE + 1, 10, 10 * BLOCK_SIZE) == (BLOCK_SIZE, BLOCK_SIZE)
    assert aligned_range(0, 100, 50) == (0, 50)  # never past the stored end


def test_chunk_ids() -> None:
    assert is_valid_chunk_id("0123456789abcdef")
    for bad in ("0123456789ABCDEF", "../x", "", "0123456789abcdef0"):
        assert not is_valid_chunk_id(bad)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        (b"", errno.EINVAL),
        (b".", errno.EINVAL),
        (b"..", errno.EINVAL),
        (b"a/b", errno.EINVAL),
        (b"a\0b", errno.EINVAL),
        (b"x" * 256, errno.ENAMETOOLONG),
    ],
)
def test_bad_names(name: bytes, code: int) -> None:
    with pytest.raises(FsError) as info:
        validate_name(name)
    assert info.value.errno == code


def test_paths() -> None:
    validate_name(b"x" * 255)
    assert split_path("/a//b/./c/") == [b"a", b"b", b"c"]
    assert split_path("/") == []
    for bad in ("relative", "/a/../b"):
        with pytest.raises(FsError):
            split_path(bad)


@given(st.binary(max_size=200_000), st.binary(max_size=200_000))
@settings(max_examples=50, deadline=None)
def test_the_crc_of_two_pieces_joined_comes_from_their_crcs_and_the_second_ones_length(a: bytes, b: bytes) -> None:
    assert crc32c_combine(crc32c(a), crc32c(b), len(b)) == crc32c(a + b)


@given(st.binary(min_size=1, max_size=300_000), st.data())
@settings(max_examples=60, deadline=None)
def test_the_crc_of_bytes_replaced_in_place_comes_from_the_old_and_new_ones_crcs(
    message: bytes, data: st.DataObject
) -> None:
    start = data.draw(st.integers(0, len(message) - 1))
    end = data.draw(st.integers(start + 1, len(message)))
    new = data.draw(st.binary(min_size=end - start, max_size=end - start))
    changed = message[:start] + new + message[end:]
    replaced = crc32c_replaced(crc32c(message), len(message), end, crc32c(message[start:end]), crc32c(new))
    assert replaced == crc32c(changed)
