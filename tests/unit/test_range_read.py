"""What a reader takes from a keeper for a range of a chunk: checked blocks of that very chunk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fusedfs.chunkfile import chunk_path
from fusedfs.chunks import BLOCK_SIZE, crc32c
from fusedfs.client.transfer import RangeRead
from fusedfs.errors import FsError
from fusedfs.keeper.chunkstore import ChunkStore
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import master_pb2 as mp


def served(store: ChunkStore, read: RangeRead) -> list[kp.ChunkPiece]:
    """The pieces a keeper's ReadChunk sends for the read (its first says what its file holds)."""
    header, pieces = store.open_chunk(read.ref.chunk_id, read.start, read.size)
    messages = [
        kp.ChunkPiece(offset=p.offset, data=p.data, block_crc32c=p.block_crc32c, block_size=p.block_size)
        for p in pieces
    ]
    messages[0].chunk_length, messages[0].chunk_crc32c = header.length, header.crc
    return messages


def test_a_file_holding_another_chunk_s_bytes_is_not_read_as_this_chunk(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    ours, theirs = os.urandom(3 * BLOCK_SIZE), os.urandom(3 * BLOCK_SIZE)  # (the same length)
    for chunk_id, data in (("00000000000000a1", ours), ("00000000000000b2", theirs)):
        writer = store.begin_write(chunk_id, len(data), crc32c(data))
        writer.write(data)
        writer.commit()
    ref = mp.ChunkRef(chunk_id="00000000000000a1", length=len(ours), stored_length=len(ours), crc32c=crc32c(ours))
    read = RangeRead(ref, BLOCK_SIZE + 10, BLOCK_SIZE + 110)
    assert b"".join(read.check(served(store, read))) == ours[BLOCK_SIZE + 10 : BLOCK_SIZE + 110]
    # The other chunk's file under this chunk's name: its blocks agree with their checksums.
    os.replace(chunk_path(tmp_path, "00000000000000b2"), chunk_path(tmp_path, "00000000000000a1"))
    with pytest.raises(FsError) as misplaced:
        read.check(served(store, read))
    assert misplaced.value.errno == errno.EBADMSG
