"""Chunk math shared by every part: ids, checksums, and mapping file offsets to chunks.

A file is a sequence of fixed-size chunk slots (`chunk_size` is set per file when it is created).
Slot i covers bytes [i * chunk_size, (i + 1) * chunk_size). A slot with no chunk, or the part of
a slot past its chunk's length, is a hole and reads as zeros. Chunks are immutable: changing a
file writes new chunks and points the slots at them.

Checksums are CRC-32C (hardware-accelerated by the `crc32c` package, about 16 GB/s here): one
over the whole chunk, kept by the master and checked end to end, and one per BLOCK_SIZE block,
kept by the keeper so that a partial read can be verified without reading the whole chunk.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import crc32c as _crc32c

MiB = 1 << 20

# 64 KiB blocks, as GFS and MooseFS checksum them.
BLOCK_SIZE = 64 * 1024
# The unit data moves in over gRPC: big enough that per-message cost vanishes, small enough that
# memory stays low.
PIECE_SIZE = 1 * MiB
# See docs/design.md "Chunk size" for the measurement behind this default.
DEFAULT_CHUNK_SIZE = 8 * MiB
MAX_CHUNK_SIZE = 256 * MiB
MAX_GOAL = 16  # copies of a chunk at most (the cluster's goal, or a file's or folder's)
MAX_LINKS = 10_000  # chunks a keeper links in one call (LinkChunks: a snapshot's)

_CHUNK_ID = re.compile(r"[0-7][0-9a-f]{15}")  # ids are positive signed 64-bit numbers (SQLite's INTEGER)


def crc32c(data: bytes | memoryview, value: int = 0) -> int:
    """CRC-32C of data, continuing from value."""
    return int(_crc32c.crc32c(data, value))


_ZEROS = bytes(BLOCK_SIZE)


def _after_zeros(crc: int, length: int) -> int:
    """crc continued over `length` zero bytes."""
    for start in range(0, length, BLOCK_SIZE):
        crc = crc32c(memoryview(_ZEROS)[: min(BLOCK_SIZE, length - start)], crc)
    return crc


@functools.lru_cache(maxsize=64)
def _zeros_crc(length: int) -> int:
    """CRC-32C of `length` zero bytes."""
    return _after_zeros(0, length)


def crc32c_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32C of a + b from crc1 of a, crc2 of b and b's length, without their bytes. CRC is
    affine: crc(a + b) = crc(a + z) ^ crc(b) ^ crc(z), for z zeros as long as b."""
    return _after_zeros(crc1, length2) ^ crc2 ^ _zeros_crc(length2)


# CRC-32C's polynomial, bits reflected (x^0 is the top bit), for arithmetic on CRCs.
_POLY = 0x82F63B78
_X0 = 1 << 31  # the polynomial 1


def _multmodp(a: int, b: int) -> int:
    """a times b modulo CRC-32C's polynomial (zlib's multmodp)."""
    product, mask = 0, _X0
    while a:
        if a & mask:
            product ^= b
            a ^= mask
        mask >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


_X_2N = [_X0 >> 1]  # x^(2^n): x, x^2, x^4, ...
for _ in range(40):
    _X_2N.append(_multmodp(_X_2N[-1], _X_2N[-1]))


@functools.lru_cache(maxsize=1024)
def _after_zeros_operator(length: int) -> int:
    """x^(8 * length) modulo the polynomial: a CRC's linear part times it is that part continued
    over `length` zero bytes."""
    operator, bits, n = _X0, length * 8, 0
    while bits:
        if bits & 1:
            operator = _multmodp(_X_2N[n], operator)
        bits >>= 1
        n += 1
    return operator


def crc32c_replaced(crc: int, length: int, end: int, old_crc: int, new_crc: int) -> int:
    """The CRC-32C of a `length`-byte message of CRC-32C crc once the bytes ending at `end`
    whose CRC-32C is old_crc are replaced by as many bytes of CRC-32C new_crc, without reading
    the message (a small overwrite of a big chunk). CRC is affine: crc(m ^ x) = crc(m) ^ lin(x),
    lin being the CRC without its initial and final inversions. x is zeros but for old ^ new,
    which ends at `end`; zeros ahead of it leave lin at 0, and lin(old ^ new) = crc(old) ^
    crc(new), continued over the length - end zeros after it."""
    return crc ^ _multmodp(_after_zeros_operator(length - end), old_crc ^ new_crc)


def file_pieces(path: Path) -> Iterator[bytes]:
    """A file's bytes in pieces of PIECE_SIZE, for streaming it without holding it whole."""
    with open(path, "rb") as f:
        while piece := f.read(PIECE_SIZE):
            yield piece


def block_crcs(data: bytes | memoryview) -> list[int]:
    """CRC-32C of each BLOCK_SIZE block of data (the last one may be short)."""
    view = memoryview(data)
    return [crc32c(view[i : i + BLOCK_SIZE]) for i in range(0, len(view), BLOCK_SIZE)]


def all_zeros(data: bytes) -> bool:
    """Whether data is zero bytes only: such a chunk is a hole, never stored (it reads as zeros)."""
    return not data or (data[0] == 0 and data[-1] == 0 and data == bytes(len(data)))


def format_chunk_id(number: int) -> str:
    return f"{number:016x}"


def is_valid_chunk_id(chunk_id: str) -> bool:
    """True for the only form a chunk id takes: 16 lowercase hex digits (so never a path)."""
    return _CHUNK_ID.fullmatch(chunk_id) is not None


def parse_chunk_id(chunk_id: str) -> int:
    if not is_valid_chunk_id(chunk_id):
        raise ValueError(f"bad chunk id {chunk_id!r}")
    return int(chunk_id, 16)


@dataclass(frozen=True)
class Span:
    """The part of one chunk slot that a byte range of a file touches."""

    index: int  # chunk slot
    offset: int  # offset within the slot
    length: int


def spans(offset: int, length: int, chunk_size: int) -> Iterator[Span]:
    """Splits the file range [offset, offset + length) at chunk slot boundaries."""
    end = offset + length
    while offset < end:
        index, within = divmod(offset, chunk_size)
        step = min(chunk_size - within, end - offset)
        yield Span(index, within, step)
        offset += step


def chunk_count(size: int, chunk_size: int) -> int:
    """How many slots a file of size bytes spans."""
    return -(-size // chunk_size)


def aligned_range(offset: int, length: int, stored_length: int) -> tuple[int, int]:
    """The block-aligned range of a chunk to read so that [offset, offset+length) can be verified."""
    end = min(offset + length, stored_length)
    start = offset - offset % BLOCK_SIZE
    aligned_end = min(-(-end // BLOCK_SIZE) * BLOCK_SIZE, stored_length)
    return start, max(0, aligned_end - start)
