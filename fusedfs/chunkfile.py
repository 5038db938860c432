"""The chunk file: how a keeper lays out one chunk on its disk, and verified reads of it.

Shared by the keeper, which writes and serves these files, and by clients on the same machine,
which read them straight from the keeper's disk (short-circuit reads, client/shortcircuit.py).

A whole chunk:

    magic "FDFSCHK1" | version u32 | block_size u32 | length u64 | chunk crc32c u32 | block count u32
    the CRC-32C of every BLOCK_SIZE block (u32 each), padding to a 4 KiB boundary, then the data.

A derived chunk that changes only a few blocks of its base (a database's small overwrite, made
durable: ChunkStore.derive) is kept as those blocks alone, beside a further name of its base's
file, `<id>.base` (a hard link, so the base's bytes stay when the base chunk itself is deleted):

    magic "FDFSDLT1" | version u32 | block_size u32 | length u64 | chunk crc32c u32 | block count u32
    | base length u64 | copies u32
    the CRC-32C of every block (u32 each), then where each block is (u32 each: FROM_BASE, the
    base's block of that index; else the index of its copy here), padding to a 4 KiB boundary,
    then the copies, BLOCK_SIZE apart.

A base is always a whole chunk file (a chunk derived from a derived one names its base's base).

A chunk file appears whole under its final name (the keeper writes it elsewhere, fsyncs it and
links it in) and never changes after, nor does a base: a reader needs no lock, only the checksums.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fusedfs.chunks import BLOCK_SIZE, MAX_CHUNK_SIZE, PIECE_SIZE, crc32c

MAGIC = b"FDFSCHK1"
DELTA_MAGIC = b"FDFSDLT1"
VERSION = 1
HEADER = struct.Struct("<8sIIQII")
DELTA_HEADER = struct.Struct("<8sIIQIIQI")
FROM_BASE = 0xFFFFFFFF
BASE_SUFFIX = ".base"
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
    # A derived chunk kept as changes to its base: where each block is (FROM_BASE, or the index of
    # its copy in this file), how many copies this file holds, and the base's length. None: a
    # whole chunk file.
    sources: list[int] | None = None
    copies: int = 0
    base_length: int = 0

    def file_size(self) -> int:
        """The size of a whole file with this header."""
        if self.sources is None:
            return data_offset(self.length) + self.length
        return delta_data_offset(len(self.block_crcs)) + self.copies * BLOCK_SIZE

    def pack(self) -> bytes:
        blocks = len(self.block_crcs)
        crcs = struct.pack(f"<{blocks}I", *self.block_crcs)
        if self.sources is None:
            return HEADER.pack(MAGIC, VERSION, BLOCK_SIZE, self.length, self.crc, blocks) + crcs
        head = DELTA_HEADER.pack(
            DELTA_MAGIC, VERSION, BLOCK_SIZE, self.length, self.crc, blocks, self.base_length, self.copies
        )
        return head + crcs + struct.pack(f"<{blocks}I", *self.sources)


def block_count(length: int) -> int:
    return -(-length // BLOCK_SIZE)


def block_length(length: int, index: int) -> int:
    """Bytes in block `index` of a chunk of `length` bytes (the last one may be short)."""
    return max(0, min(BLOCK_SIZE, length - index * BLOCK_SIZE))


def data_offset(length: int) -> int:
    """Where the data of a whole chunk of `length` bytes starts in its file."""
    return -(-(HEADER.size + 4 * block_count(length)) // ALIGN) * ALIGN


def delta_data_offset(blocks: int) -> int:
    """Where the copies of a derived chunk of `blocks` blocks start in its file."""
    return -(-(DELTA_HEADER.size + 8 * blocks) // ALIGN) * ALIGN


def chunk_path(root: Path, chunk_id: str) -> Path:
    """The file of a chunk in a keeper's data folder (chunk ids are checked before they get here)."""
    return root / "chunks" / chunk_id[-2:] / chunk_id


def base_path(path: Path) -> Path:
    """The further name of its base's file beside a derived chunk's file."""
    return path.with_name(path.name + BASE_SUFFIX)


def read_header(chunk_id: str, f: BinaryIO) -> Header:
    """The header of an open chunk file (read from its start); CorruptChunk when it is bad."""
    bad = CorruptChunk(f"chunk {chunk_id}: bad header")
    try:
        raw = f.read(DELTA_HEADER.size)
        if len(raw) < HEADER.size:
            raise bad
        magic, version, block_size, length, crc, blocks = HEADER.unpack_from(raw)
        if magic not in (MAGIC, DELTA_MAGIC) or version != VERSION or block_size != BLOCK_SIZE:
            raise bad
        if blocks != block_count(length) or length > MAX_CHUNK_SIZE:  # (a header bit-flipped to ask for 2**60 bytes)
            raise bad
        if magic == MAGIC:
            f.seek(HEADER.size)
            tables = 1
        elif len(raw) == DELTA_HEADER.size:
            tables = 2
        else:
            raise bad
        raw_tables = f.read(4 * blocks * tables)
    except OSError as e:
        raise _unreadable(chunk_id, e) from None
    if len(raw_tables) != 4 * blocks * tables:
        raise CorruptChunk(f"chunk {chunk_id}: truncated checksums")
    crcs = list(struct.unpack_from(f"<{blocks}I", raw_tables))
    if tables == 1:
        return Header(length, crc, crcs)
    # (A block table that is wrong makes its reads short, or their checksums fail: no check
    # here, which every short-circuit read would pay for, a block at a time.)
    base_length, copies = DELTA_HEADER.unpack_from(raw)[6:]
    if base_length > MAX_CHUNK_SIZE or copies > blocks:
        raise bad
    sources = list(struct.unpack_from(f"<{blocks}I", raw_tables, 4 * blocks))
    return Header(length, crc, crcs, sources, copies, base_length)


class ChunkFile:
    """An open chunk file (and a derived chunk's base): its header, and reads of its blocks.

    OSError when it cannot be opened (FileNotFoundError: no such chunk here, or it was deleted
    while being opened); CorruptChunk when its header is bad."""

    def __init__(self, chunk_id: str, path: Path) -> None:
        self.chunk_id = chunk_id
        self.path = path
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by close())
        self._base: BinaryIO | None = None
        try:
            self.header = read_header(chunk_id, self._file)
            if self.header.sources is not None:
                self._base = open(base_path(path), "rb", buffering=0)  # noqa: SIM115
        except BaseException:
            self.close()
            raise

    @property
    def base_file(self) -> Path:
        """The whole chunk file that holds this chunk's blocks not copied here: its own, or its
        base's (the name beside it)."""
        return self.path if self.header.sources is None else base_path(self.path)

    def close(self) -> None:
        self._file.close()
        if self._base is not None:
            self._base.close()

    def __enter__(self) -> ChunkFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pieces(self, offset: int = 0, length: int = 0, verify: bool = True) -> Iterator[Piece]:
        """The block-aligned pieces (PIECE_SIZE at most) covering [offset, offset + length) of the
        chunk (length 0: to its end). With verify, raises CorruptChunk at the first block that
        fails its checksum (a caller that checks the pieces itself passes False)."""
        header = self.header
        stored = header.length
        end = stored if length == 0 else min(stored, offset + length)
        pos = offset - offset % BLOCK_SIZE
        while pos < end:
            size = min(PIECE_SIZE, stored - pos, -(-(end - pos) // BLOCK_SIZE) * BLOCK_SIZE)
            try:
                data = self._read(pos, size)
            except OSError as e:
                raise _unreadable(self.chunk_id, e) from None
            first = pos // BLOCK_SIZE
            piece_crcs = header.block_crcs[first : first + block_count(size)]
            if verify:
                view = memoryview(data)
                for i, expected in enumerate(piece_crcs):
                    if crc32c(view[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE]) != expected:
                        raise CorruptChunk(f"chunk {self.chunk_id}: block {first + i} fails its checksum")
            yield Piece(pos, data, piece_crcs)
            pos += size

    def stream(self, offset: int = 0, length: int = 0, verify: bool = True) -> Iterator[Piece]:
        """pieces(), closing the file when they are done (or dropped)."""
        with self:
            yield from self.pieces(offset, length, verify)

    def whole(self) -> bool:
        """The file, and a derived chunk's base, are as long as their headers say."""
        if os.fstat(self._file.fileno()).st_size != self.header.file_size():
            return False
        if self._base is None:
            return True
        base_length = self.header.base_length
        return os.fstat(self._base.fileno()).st_size == data_offset(base_length) + base_length

    def _read(self, pos: int, size: int) -> bytes:
        """size bytes at pos (block-aligned) of the chunk's data, from this file and its base."""
        header = self.header
        if header.sources is None:
            return self._pread(self._file, size, data_offset(header.length) + pos)
        assert self._base is not None
        parts = []
        first = pos // BLOCK_SIZE
        last = first + block_count(size)
        index = first
        while index < last:  # runs of blocks next to each other in one file: one read each
            source = header.sources[index]
            run = index + 1
            while run < last and (
                header.sources[run] == FROM_BASE if source == FROM_BASE else header.sources[run] == source + run - index
            ):
                run += 1
            want = (run - index - 1) * BLOCK_SIZE + block_length(header.length, run - 1)
            if source == FROM_BASE:
                at = data_offset(header.base_length) + index * BLOCK_SIZE
                parts.append(self._pread(self._base, want, at))
            else:
                at = delta_data_offset(len(header.sources)) + source * BLOCK_SIZE
                parts.append(self._pread(self._file, want, at))
            index = run
        return b"".join(parts)

    def _pread(self, f: BinaryIO, size: int, at: int) -> bytes:
        data = os.pread(f.fileno(), size, at)
        if len(data) != size:
            raise CorruptChunk(f"chunk {self.chunk_id}: file is shorter than its header says")
        return data


def is_whole(chunk_id: str, path: Path) -> bool:
    """The file at path has a valid header and every byte it promises, and so has a derived
    chunk's base (contents unchecked: the scrub and every read check those)."""
    try:
        with ChunkFile(chunk_id, path) as chunk:
            return chunk.whole()
    except (OSError, CorruptChunk):
        return False
