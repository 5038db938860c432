"""A keeper's chunk files seen from outside the keeper: list, check, damage and plant them.

The chaos tests use this to do to a keeper's disk what a disk does (bit rot, files that vanish, a
disk that fills up, leftovers of interrupted writes), and to audit afterwards what is really on
the disks against what the master believes. Read-only with respect to the keeper's own state: it
never goes through the ChunkStore (whose constructor would clean the folder up).

Chunk file format (fusedfs/chunkfile.py): a header (magic, version, block size, length,
chunk CRC-32C, block count), a CRC-32C per 64 KiB block, padding to a 4 KiB boundary, the data.
(The damage done here is to whole chunk files, which the chaos workloads write; the check reads
derived ones too.)
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from fusedfs.chunkfile import HEADER, ChunkFile, CorruptChunk, data_offset
from fusedfs.chunks import crc32c, is_valid_chunk_id


def chunk_path(data_dir: Path, chunk_id: str) -> Path:
    return data_dir / "chunks" / chunk_id[-2:] / chunk_id


def chunk_files(data_dir: Path) -> dict[str, Path]:
    """Every chunk file (valid id) in a keeper's data folder, by chunk id."""
    found: dict[str, Path] = {}
    root = data_dir / "chunks"
    if not root.is_dir():
        return found
    for sub in root.iterdir():
        if sub.is_dir():
            for path in sub.iterdir():
                if is_valid_chunk_id(path.name):
                    found[path.name] = path
    return found


@dataclass(frozen=True)
class Check:
    ok: bool
    why: str = ""


def check_file(path: Path, expected_crc: int | None = None, expected_length: int | None = None) -> Check:
    """Whether a chunk file is whole: header, size, every block's CRC, the chunk CRC (and the
    master's); a derived chunk's with its base beside it."""
    try:
        with ChunkFile(path.name, path) as chunk:
            header = chunk.header
            size = path.stat().st_size
            if size != header.file_size():
                return Check(False, f"{size} bytes, the header says {header.file_size()}")
            crc = 0
            for piece in chunk.pieces():
                crc = crc32c(piece.data, crc)
    except FileNotFoundError as e:
        return Check(False, "missing" if e.filename == str(path) else "its base is missing")
    except CorruptChunk as e:
        return Check(False, str(e).split(": ", 1)[-1])
    if crc != header.crc:
        return Check(False, "chunk checksum mismatch")
    if expected_crc is not None and header.crc != expected_crc:
        return Check(False, "not the master's checksum")
    if expected_length is not None and header.length != expected_length:
        return Check(False, f"length {header.length}, the master says {expected_length}")
    return Check(True)


def flip_bytes(path: Path, rng: random.Random, count: int = 3) -> list[int]:
    """Flips `count` random bytes in the data region near the end of a chunk file (bit rot).

    Returns the offsets changed. The file keeps its size and its name (as rot does).
    """
    raw = path.read_bytes()
    _, _, _, length, _, _ = HEADER.unpack_from(raw)
    start = data_offset(length)
    low = max(start, len(raw) - 4096)
    offsets = sorted({rng.randrange(low, len(raw)) for _ in range(count)})
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ (1 << rng.randrange(8))]))
        f.flush()
        os.fsync(f.fileno())
    return offsets


def write_truncated(source: Path, target: Path, keep: float = 0.5) -> int:
    """Writes the first `keep` share of the data of a good chunk file (header included) to target:
    what a torn write would leave under the chunk's real name. Returns the bytes written."""
    raw = source.read_bytes()
    _, _, _, length, _, _ = HEADER.unpack_from(raw)
    size = data_offset(length) + int(length * keep)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(raw[:size])
    return size
