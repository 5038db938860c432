"""A lost chunk pieced together from the copies its keepers set aside as damaged (`repair`).

A keeper that finds a copy damaged keeps it a week in damaged/ (keeper/chunkstore.py) and asks
the master for a good copy elsewhere; a chunk whose every copy was damaged is lost. Each copy's
file holds a CRC-32C per 64 KiB block, and rot seldom hits the same block of every copy, so a
block is taken from whichever copy holds it intact, and such a chunk usually comes back whole:
its checksum is then the one its writer computed. Blocks no copy holds intact can only be
zeros (MooseFS's mfsfilerepair zeroes whole chunks).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc

from fusedfs.chunks import BLOCK_SIZE, crc32c
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc
from fusedfs.rpc import master_pb2 as mp

READ_TIMEOUT = 60.0  # seconds for one keeper to send its damaged copy


@dataclass(frozen=True)
class Salvaged:
    data: bytes  # the chunk's stored bytes, zeros where no copy held a block intact
    copies: int  # damaged copies of the chunk the keepers had
    missing: list[tuple[int, int]]  # (offset, length) of the ranges that are zeros
    whole: bool  # every block intact, and the whole matches the chunk's checksum


class BlockMerger:
    """Takes the pieces of damaged copies of one chunk, and keeps each block from the first copy
    that holds it intact."""

    def __init__(self, ref: mp.ChunkRef) -> None:
        self.ref = ref
        self.copies = 0
        self._blocks: dict[int, bytes] = {}  # offset -> the block's bytes

    def add(self, pieces: Iterable[kp.ChunkPiece]) -> None:
        """One copy's pieces (a keeper's ReadDamagedChunk): those before a failure count. A copy
        whose first piece does not say the chunk's length and checksum is another chunk's, or
        its header is damaged (so are its block checksums): it is left out."""
        for i, piece in enumerate(pieces):
            if i == 0:
                if piece.chunk_length != self.ref.stored_length or piece.chunk_crc32c != self.ref.crc32c:
                    return
                self.copies += 1
            if piece.block_size != BLOCK_SIZE:
                return
            size = BLOCK_SIZE
            for n, expected in enumerate(piece.block_crc32c):
                block = piece.data[n * size : (n + 1) * size]
                offset = piece.offset + n * size
                if offset not in self._blocks and block and crc32c(block) == expected:
                    self._blocks[offset] = bytes(block)

    def result(self) -> Salvaged:
        length = self.ref.stored_length
        parts: list[bytes] = []
        missing: list[tuple[int, int]] = []
        for offset in range(0, length, BLOCK_SIZE):
            size = min(BLOCK_SIZE, length - offset)
            block = self._blocks.get(offset)
            if block is None or len(block) != size:
                if missing and sum(missing[-1]) == offset:
                    missing[-1] = (missing[-1][0], missing[-1][1] + size)
                else:
                    missing.append((offset, size))
                block = bytes(size)
            parts.append(block)
        data = b"".join(parts)
        return Salvaged(data, self.copies, missing, not missing and crc32c(data) == self.ref.crc32c)


def salvage(ref: mp.ChunkRef, keepers: Iterable[keeper_pb2_grpc.KeeperStub]) -> Salvaged:
    """Asks every keeper for its damaged copy of the chunk and merges what they hold intact."""
    merger = BlockMerger(ref)
    for keeper in keepers:
        request = kp.ReadChunkRequest(chunk_id=ref.chunk_id)
        merger.add(_until_failure(keeper.ReadDamagedChunk(request, timeout=READ_TIMEOUT)))
    return merger.result()


def _until_failure(pieces: Iterator[kp.ChunkPiece]) -> Iterator[kp.ChunkPiece]:
    """The pieces a keeper sent before its stream ended or failed (none there: NOT_FOUND)."""
    try:
        yield from pieces
    except grpc.RpcError:
        return
