"""Piecing a lost chunk together from damaged copies: each block from a copy that holds it intact."""

from __future__ import annotations

import os

from fusedfs.chunks import BLOCK_SIZE, crc32c
from fusedfs.client.salvage import BlockMerger
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import master_pb2 as mp

DATA = os.urandom(5 * BLOCK_SIZE + 1000)  # (a short last block)
REF = mp.ChunkRef(chunk_id="00000000000000aa", length=len(DATA), stored_length=len(DATA), crc32c=crc32c(DATA))


def copy_with_damage(*blocks: int, length: int = len(DATA)) -> list[kp.ChunkPiece]:
    """A damaged copy as a keeper sends it: pieces of two blocks, each with the checksums the
    file holds (those of the bytes as written), the given blocks' bytes flipped."""
    data = bytearray(DATA)
    for block in blocks:
        data[block * BLOCK_SIZE + 7] ^= 0x10
    pieces = []
    for offset in range(0, len(DATA), 2 * BLOCK_SIZE):
        end = min(len(DATA), offset + 2 * BLOCK_SIZE)
        crcs = [crc32c(DATA[o : min(end, o + BLOCK_SIZE)]) for o in range(offset, end, BLOCK_SIZE)]
        piece = kp.ChunkPiece(offset=offset, data=bytes(data[offset:end]), block_crc32c=crcs, block_size=BLOCK_SIZE)
        pieces.append(piece)
    pieces[0].chunk_length, pieces[0].chunk_crc32c = length, REF.crc32c
    return pieces


def test_copies_damaged_in_other_blocks_make_the_chunk_whole() -> None:
    merger = BlockMerger(REF)
    for damaged in ((1,), (3, 5), (1, 5)):
        merger.add(copy_with_damage(*damaged))
    found = merger.result()
    assert found.whole and found.data == DATA and found.copies == 3 and found.missing == []


def test_a_block_damaged_in_every_copy_is_zeros_and_said() -> None:
    merger = BlockMerger(REF)
    merger.add(copy_with_damage(2, 3))
    merger.add(copy_with_damage(2, 3, 5))
    found = merger.result()
    assert not found.whole and found.missing == [(2 * BLOCK_SIZE, 2 * BLOCK_SIZE)]
    assert found.data == DATA[: 2 * BLOCK_SIZE] + bytes(2 * BLOCK_SIZE) + DATA[4 * BLOCK_SIZE :]


def test_a_copy_that_is_not_this_chunk_counts_for_nothing_and_a_cut_copy_for_what_it_sent() -> None:
    merger = BlockMerger(REF)
    merger.add(copy_with_damage(length=len(DATA) - 1))  # (another chunk's file, or its header damaged)
    assert merger.copies == 0 and merger.result().missing == [(0, len(DATA))]
    merger.add(copy_with_damage(0)[:2])  # its keeper failed after two pieces
    found = merger.result()
    assert found.copies == 1 and found.missing == [(0, BLOCK_SIZE), (4 * BLOCK_SIZE, BLOCK_SIZE + 1000)]
