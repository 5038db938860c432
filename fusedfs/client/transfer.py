"""Moving single chunks between a client and the keepers.

Writes: the client asks the master for a chunk id and a pipeline of keepers, sends the chunk
once to the first, and the keepers forward it down the pipeline (a chunk of one piece, 1 MiB or
less, goes to all of them at once instead: small files wait for one hop, not three). If any keeper fails, the chunk
is written again to a fresh set that leaves the failed one out; a write with fewer copies than
the pipeline is accepted only after that, and only with at least min_copies (the master tops up
the rest later).

Reads: a byte range of a chunk is fetched from one replica, every block checked against its
CRC-32C (and the whole chunk against the master's checksum when it is read whole). A replica
that fails or returns bad data is reported to the master and the next one is tried; when all
fail, the locations are refreshed from the master until the wait runs out.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from fusedfs.chunks import BLOCK_SIZE, PIECE_SIZE, aligned_range, crc32c
from fusedfs.client.master import MasterClient
from fusedfs.errors import FsError
from fusedfs.grpcutil import ChannelPool
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc
from fusedfs.rpc import master_pb2 as mp

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 4
KEEPER_TIMEOUT = 60.0  # one chunk transfer; generous for a slow disk, bounded for a dead keeper


@dataclass
class _Attempt:
    chunk_id: str
    stored_on: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    full: bool = False  # a keeper answered RESOURCE_EXHAUSTED


class ChunkTransfer:
    def __init__(self, master: MasterClient, pool: ChannelPool | None = None) -> None:
        self.master = master
        self.pool = pool or master.pool

    def _keeper(self, address: str) -> keeper_pb2_grpc.KeeperStub:
        return keeper_pb2_grpc.KeeperStub(self.pool.get(address))

    # --- writing ---------------------------------------------------------------------------------

    def write(self, index: int, data: bytes) -> mp.NewChunk:
        """Stores data as a new chunk for slot `index`; returns what to commit to the master."""
        crc = crc32c(data)
        exclude: set[str] = set()
        attempts: list[_Attempt] = []
        deadline = time.monotonic() + self.master.wait
        try:
            while True:
                try:
                    request = mp.AllocateChunkRequest(exclude_keepers=sorted(exclude), length=len(data))
                    alloc = self.master.call("AllocateChunk", request)
                except FsError as e:
                    if e.errno == errno.EIO and exclude and time.monotonic() < deadline:
                        exclude.clear()  # the master may not have noticed the failure yet: let it choose again
                        time.sleep(0.5)
                        continue
                    raise
                attempt = self._push(alloc, data, crc)
                attempts.append(attempt)
                if len(attempt.stored_on) == len(alloc.pipeline):
                    return self._accept(attempt, attempts, index, data, crc)
                exclude.update(attempt.failed)
                if len(attempts) >= WRITE_ATTEMPTS or time.monotonic() >= deadline:
                    break
            best = max(attempts, key=lambda a: len(a.stored_on))
            if len(best.stored_on) >= max(alloc.min_copies, 1):
                return self._accept(best, attempts, index, data, crc)
            if all(a.full for a in attempts):
                raise FsError(errno.ENOSPC, "no space left on enough keepers for another chunk")
            raise FsError(
                errno.EIO, f"could not store a chunk on {alloc.min_copies} keepers after {len(attempts)} attempts"
            )
        except BaseException:
            self.abandon([a.chunk_id for a in attempts])
            raise

    def _accept(self, chosen: _Attempt, attempts: list[_Attempt], index: int, data: bytes, crc: int) -> mp.NewChunk:
        self.abandon([a.chunk_id for a in attempts if a is not chosen])
        return mp.NewChunk(
            index=index, chunk_id=chosen.chunk_id, length=len(data), crc32c=crc, stored_on=chosen.stored_on
        )

    def abandon(self, chunk_ids: list[str]) -> None:
        """Gives back reserved chunks that will not be committed (best effort; leases expire anyway)."""
        if chunk_ids:
            with contextlib.suppress(FsError):  # the upload lease expires on its own
                self.master.call("AbandonChunks", mp.AbandonChunksRequest(chunk_ids=chunk_ids), wait=5)

    def _push(self, alloc: mp.AllocateChunkReply, data: bytes, crc: int) -> _Attempt:
        """Sends the chunk: small ones to every keeper at once, others down the pipeline."""
        attempt = _Attempt(alloc.chunk_id)
        header = kp.WriteChunkHeader(chunk_id=alloc.chunk_id, length=len(data), crc32c=crc)
        if len(data) <= PIECE_SIZE:
            # One message each: the latency of one hop instead of len(pipeline), for little bandwidth.
            message = kp.WriteChunkMessage(header=header, data=data)
            calls = [
                (keeper, self._keeper(keeper.address).WriteSmallChunk.future(message, timeout=KEEPER_TIMEOUT))
                for keeper in alloc.pipeline
            ]
        else:
            first = alloc.pipeline[0]
            header.downstream.extend(alloc.pipeline[1:])

            def messages() -> Iterator[kp.WriteChunkMessage]:
                view = memoryview(data)
                yield kp.WriteChunkMessage(header=header, data=bytes(view[:PIECE_SIZE]))
                for start in range(PIECE_SIZE, len(data), PIECE_SIZE):
                    yield kp.WriteChunkMessage(data=bytes(view[start : start + PIECE_SIZE]))

            calls = [(first, self._keeper(first.address).WriteChunk.future(messages(), timeout=KEEPER_TIMEOUT))]
        for keeper, call in calls:
            try:
                reply = call.result()
            except grpc.RpcError as e:
                # Whatever went wrong (dead, full, data damaged on the way), try another set of keepers.
                code = e.code() if isinstance(e, grpc.Call) else None
                log.info("write to %s failed: %s", keeper.address, code)
                attempt.failed.append(keeper.keeper_id)
                attempt.full = attempt.full or code == grpc.StatusCode.RESOURCE_EXHAUSTED
                continue
            attempt.stored_on.extend(reply.stored_on)
            for failure in reply.failures:
                log.info("pipeline keeper %s failed: %s %s", failure.keeper.address, failure.code, failure.message)
                attempt.failed.append(failure.keeper.keeper_id)
                attempt.full = attempt.full or failure.code == "RESOURCE_EXHAUSTED"
        return attempt

    # --- reading ---------------------------------------------------------------------------------

    def read(self, inode: int, ref: mp.ChunkRef, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes [offset, offset + length) of a chunk (its logical length bounds them), verified."""
        return b"".join(self.read_parts(inode, ref, offset, length))

    def read_parts(self, inode: int, ref: mp.ChunkRef, offset: int = 0, length: int | None = None) -> list[memoryview]:
        """Like read(), as the pieces received, sparing a copy for callers that write them out."""
        end = ref.length if length is None else min(ref.length, offset + length)
        if offset >= end:
            return []
        deadline = time.monotonic() + self.master.wait
        errors: list[str] = []
        while True:
            replicas = list(ref.replicas)
            for i in range(len(replicas)):
                replica = replicas[(ref.index + i) % len(replicas)]  # spread a file's chunks over keepers
                try:
                    return self._read_from(replica, ref, offset, end)
                except FsError as e:
                    errors.append(f"{replica.address}: {e.message}")
                    if e.errno == errno.EBADMSG:
                        self._report_bad(ref.chunk_id, replica.keeper_id, e.message)
            if time.monotonic() >= deadline:
                raise FsError(
                    errno.EIO,
                    f"chunk {ref.chunk_id}: no replica could be read ({'; '.join(errors[-3:]) or 'none known'})",
                )
            time.sleep(0.5)
            ref = self._refresh(inode, ref)

    def _refresh(self, inode: int, ref: mp.ChunkRef) -> mp.ChunkRef:
        reply = self.master.call("GetChunks", mp.GetChunksRequest(inode=inode, first_index=ref.index, count=1))
        for fresh in reply.chunks:
            if fresh.index == ref.index and fresh.chunk_id == ref.chunk_id:
                return fresh
        raise FsError(errno.ESTALE, f"chunk {ref.chunk_id} is no longer part of the file")

    def _report_bad(self, chunk_id: str, keeper_id: str, reason: str) -> None:
        try:
            request = mp.BadReplicaRequest(chunk_id=chunk_id, keeper_id=keeper_id, reason=reason)
            self.master.call("ReportBadReplica", request, wait=5)
        except FsError:
            pass

    def _read_from(self, replica: cp.KeeperRef, ref: mp.ChunkRef, offset: int, end: int) -> list[memoryview]:
        whole = offset == 0 and end == ref.stored_length
        start, size = aligned_range(offset, end - offset, ref.stored_length)
        request = kp.ReadChunkRequest(chunk_id=ref.chunk_id, offset=start, length=size)
        parts: list[memoryview] = []
        running_crc = 0
        expected = start
        try:
            keeper = self._keeper(replica.address)
            # Within one piece a plain call does (random reads); longer ranges stream.
            pieces = (
                [keeper.ReadSmallRange(request, timeout=KEEPER_TIMEOUT)]
                if size <= PIECE_SIZE
                else keeper.ReadChunk(request, timeout=KEEPER_TIMEOUT)
            )
            for piece in pieces:
                if piece.offset != expected or piece.block_size != BLOCK_SIZE:
                    raise FsError(errno.EBADMSG, "keeper sent an unexpected piece")
                view = memoryview(piece.data)
                crcs = piece.block_crc32c
                if len(crcs) != -(-len(view) // BLOCK_SIZE):
                    raise FsError(errno.EBADMSG, "piece and checksums disagree")
                for i, expected_crc in enumerate(crcs):
                    if crc32c(view[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE]) != expected_crc:
                        raise FsError(errno.EBADMSG, f"block at {piece.offset + i * BLOCK_SIZE} damaged in transit")
                parts.append(view)
                running_crc = crc32c(view, running_crc) if whole else 0
                expected += len(view)
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            details = e.details() if isinstance(e, grpc.Call) else str(e)
            raise FsError(
                errno.EBADMSG if code == grpc.StatusCode.DATA_LOSS else errno.EIO, f"{code}: {details}"
            ) from None
        if expected != start + size:
            raise FsError(errno.EBADMSG, f"keeper sent {expected - start} of {size} bytes")
        if whole and running_crc != ref.crc32c:
            raise FsError(errno.EBADMSG, "chunk does not match the master's checksum")
        # Trim the block alignment off both ends.
        parts[0] = parts[0][offset - start :]
        parts[-1] = parts[-1][: len(parts[-1]) - (start + size - end)]
        return parts
