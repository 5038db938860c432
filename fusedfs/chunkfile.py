"""The chunk file: how a keeper lays out one chunk on its disk, and verified reads of it.

Shared by the keeper, which writes and serves these files, and by clients on the same machine,
which read them straight from the keeper's disk (short-circuit reads, client/shortcircuit.py).

    magic "FDFSCHK1" | version u32 | block_size u32 | length u64 | chunk crc32c u32 | block count u32
    the CRC-32C of every BLOCK_SIZE block (u32 each), padding to a 4 KiB boundary, then the data.

A chunk file appears whole under its final name (the keeper writes it elsewhere, fsyncs it and
links it in) and never changes after: a reader needs no lock, only the checksums.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fusedfs.chunks import BLOCK_SIZE, PIECE_SIZE, crc32c

MAGIC = b"FDFSCHK1"
VERSION = 1
HEADER = struct.Struct("<8sIIQII")
ALIGN = 4096
KEEPER_ID_FILE = "keeper-id"  # in a keeper's data folder: the keeper's identity


class CorruptChunk(Exception):
    """A chunk file does not match its checksums (bit rot, a torn or tampered file), or its disk
    cannot read it (a bad sector: EIO)."""


def _unreadable(chunk_id: str, e: OSError) -> CorruptChunk | OSError:
    """A read of a chunk file that failed: EIO is the disk failing under this copy (a bad sector,
    the commonest disk fault), a damaged copy like any other; anything else stays what it is."""
    if e.errno == errno.EIO:
        return CorruptChunk(f"chunk {chunk_id}: its disk cannot read it ({e.strerror})")
    return e


@dataclass(frozen=True)
class Piece:
    """Whole checksum blocks of a chunk (but for its last block), as a keeper sends them."""

    offset: int
    data: bytes
    block_crc32c: list[int]
    block_size: int = BLOCK_SIZE


@dataclass(frozen=True)
class Header:
    length: int  # bytes of data
    crc: int  # of the whole chunk
    block_crcs: list[int]


def data_offset(length: int) -> int:
    """Where the data of a chunk of `length` bytes starts in its file."""
    blocks = -(-length // BLOCK_SIZE)
    return -(-(HEADER.size + 4 * blocks) // ALIGN) * ALIGN


def chunk_path(root: Path, chunk_id: str) -> Path:
    """The file of a chunk in a keeper's data folder (chunk ids are checked before they get here)."""
    return root / "chunks" / chunk_id[-2:] / chunk_id


def header_fields(raw: bytes) -> tuple[int, int] | None:
    """(length, crc) from a header's bytes, or None when they are not a valid header."""
    if len(raw) < HEADER.size:
        return None
    magic, version, block_size, length, crc, blocks = HEADER.unpack_from(raw)
    if magic != MAGIC or version != VERSION or block_size != BLOCK_SIZE or blocks != -(-length // BLOCK_SIZE):
        return None
    return length, crc


def read_header(chunk_id: str, f: BinaryIO) -> Header:
    """The header of an open chunk file (read from its start); CorruptChunk when it is bad."""
    try:
        raw = f.read(HEADER.size)
        fields = header_fields(raw)
        if fields is None:
            raise CorruptChunk(f"chunk {chunk_id}: bad header")
        length, crc = fields
        blocks = -(-length // BLOCK_SIZE)
        raw_crcs = f.read(4 * blocks)
    except OSError as e:
        raise _unreadable(chunk_id, e) from None
    if len(raw_crcs) != 4 * blocks:
        raise CorruptChunk(f"chunk {chunk_id}: truncated checksums")
    return Header(length, crc, list(struct.unpack(f"<{blocks}I", raw_crcs)))


def read_pieces(
    chunk_id: str, f: BinaryIO, header: Header, offset: int, length: int, verify: bool = True
) -> Iterator[Piece]:
    """The block-aligned pieces (PIECE_SIZE at most) covering [offset, offset + length) of the
    chunk (length 0: to its end); closes f when done. With verify, raises CorruptChunk at the
    first block that fails its checksum (a caller that checks the pieces itself passes False)."""
    with f:
        stored = header.length
        end = stored if length == 0 else min(stored, offset + length)
        pos = offset - offset % BLOCK_SIZE
        start = data_offset(stored)
        fd = f.fileno()
        while pos < end:
            size = min(PIECE_SIZE, stored - pos, -(-(end - pos) // BLOCK_SIZE) * BLOCK_SIZE)
            try:
                data = os.pread(fd, size, start + pos)
            except OSError as e:
                raise _unreadable(chunk_id, e) from None
            if len(data) != size:
                raise CorruptChunk(f"chunk {chunk_id}: file is shorter than its header says")
            first = pos // BLOCK_SIZE
            piece_crcs = header.block_crcs[first : first + -(-size // BLOCK_SIZE)]
            if verify:
                view = memoryview(data)
                for i, expected in enumerate(piece_crcs):
                    if crc32c(view[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE]) != expected:
                        raise CorruptChunk(f"chunk {chunk_id}: block {first + i} fails its checksum")
            yield Piece(pos, data, piece_crcs)
            pos += size
