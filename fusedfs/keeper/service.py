"""The keeper's gRPC servicer: thin glue between the wire and the ChunkStore.

WriteChunk forwards each piece downstream as it arrives (a pipeline, as HDFS and GFS push data),
so a chunk crosses each link once and no keeper buffers it whole.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import grpc

from fusedfs.chunkfile import CorruptChunk, Header, Piece
from fusedfs.chunks import MAX_GOAL, MAX_LINKS, PIECE_SIZE, MiB
from fusedfs.errors import FsError, abort_with
from fusedfs.grpcutil import ChannelPool
from fusedfs.keeper.chunkstore import ChunkStore, ChunkWriter, DiskNotAnswering, Patch
from fusedfs.keeper.metacopies import MetadataCopies
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_WRITE_TIMEOUT = 120.0
_QUEUE_DEPTH = 4
JOURNAL_BATCH_BYTES = MiB  # metadata changes per message (each a row: a few hundred bytes, 64 KiB at most)
MAX_PIPELINE = MAX_GOAL - 1  # keepers a write may be forwarded through (after the first, of a goal's worth)
_END = object()

T = TypeVar("T")


def _at_once(step: Callable[[], T]) -> T:
    return step()


def _abort_made_writer(begun: Future[Any]) -> None:
    """Once a begin_write given up on ends after all: its writer's file is not wanted."""
    writer = None if begun.cancelled() or begun.exception() else begun.result()
    if isinstance(writer, ChunkWriter):
        writer.abort()


class LoadGauge:
    """How many requests are in progress: the load a keeper reports to the master."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def __enter__(self) -> None:
        with self._lock:
            self.value += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.value -= 1


class Forwarder:
    """Streams one chunk to the next keeper of a pipeline while the local copy is written."""

    def __init__(self, pool: ChannelPool, header: kp.WriteChunkHeader, timeout: float) -> None:
        self.target = header.downstream[0]
        first = kp.WriteChunkHeader(
            chunk_id=header.chunk_id, length=header.length, crc32c=header.crc32c, downstream=header.downstream[1:]
        )
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._queue.put(kp.WriteChunkMessage(header=first))
        stub = pool.stub(self.target.address, keeper_pb2_grpc.KeeperStub)
        self._future = stub.WriteChunk.future(self._messages(), timeout=timeout)

    def _messages(self) -> Iterator[kp.WriteChunkMessage]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            assert isinstance(item, kp.WriteChunkMessage)
            yield item

    def send(self, message: kp.WriteChunkMessage) -> None:
        while not self._future.done():  # once downstream failed, drop the rest
            try:
                self._queue.put(message, timeout=0.5)
                return
            except queue.Full:
                continue

    def abandon(self) -> None:
        """This keeper gave up the write: the next one must not store it. Cancelling alone is not
        enough (a gRPC server may see a cancelled stream as one that ended, and store a copy whose
        every byte had arrived), so the stream ends with a second header, which a keeper takes
        as the writer giving up. If that cannot be queued at once, the next keeper still lacks
        bytes of the chunk, and cancelling is enough."""
        try:
            self._queue.put_nowait(kp.WriteChunkMessage(header=kp.WriteChunkHeader()))
            self._queue.put_nowait(_END)
        except queue.Full:
            self._future.cancel()

    def end(self) -> None:
        """No more data: the next keeper can check and store its copy (while we store ours)."""
        self.send(_END)  # type: ignore[arg-type]

    def finish(self) -> kp.WriteChunkReply:
        """Waits for downstream (after end()); a failure of the next keeper is reported, not raised."""
        try:
            return self._future.result()
        except grpc.RpcError as e:
            code = e.code().name if isinstance(e, grpc.Call) else "UNKNOWN"
            details = e.details() if isinstance(e, grpc.Call) else str(e)
            failure = kp.PipelineFailure(keeper=self.target, code=code, message=details or "")
            return kp.WriteChunkReply(failures=[failure])


class KeeperService(keeper_pb2_grpc.KeeperServicer):
    def __init__(
        self, store: ChunkStore, keeper_id: str, pool: ChannelPool, load: LoadGauge, copies: MetadataCopies
    ) -> None:
        self.store = store
        self.keeper_id = keeper_id
        self.pool = pool
        self.load = load
        self.copies = copies

    def WriteChunk(
        self, request_iterator: Iterator[kp.WriteChunkMessage], context: grpc.ServicerContext
    ) -> kp.WriteChunkReply:
        with self.load:
            first = next(request_iterator, None)
            if first is None or not first.HasField("header"):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must carry the chunk header")
            assert first is not None
            header = first.header
            # A streamed write (a pipeline's, or one of several pieces) has its disk work bounded,
            # so that this keeper's disk hanging under it fails it naming this keeper, within
            # seconds. A small chunk's one message is written here at once (a thread hop would
            # cost every small file; its writer gives up a laggard among its keepers itself).
            streamed = bool(header.downstream) or header.length > len(first.data)
            disk = self.store.answered if streamed else _at_once
            forward = None
            try:
                self._check_pipeline(header)
                writer = disk(functools.partial(self.store.begin_write, header.chunk_id, header.length, header.crc32c))
            except DiskNotAnswering as e:
                e.step.add_done_callback(_abort_made_writer)
                abort_with(context, e)
            except FsError as e:
                abort_with(context, e)
            try:
                if header.downstream:
                    remaining = context.time_remaining()
                    forward = Forwarder(self.pool, header, remaining if remaining else DEFAULT_WRITE_TIMEOUT)
                if first.data:
                    disk(functools.partial(writer.write, first.data))
                    if forward:
                        forward.send(kp.WriteChunkMessage(data=first.data))
                for message in request_iterator:
                    if message.HasField("header"):  # see Forwarder.abandon
                        raise FsError(errno.EINVAL, "a second header: the writer gave the write up")
                    disk(functools.partial(writer.write, message.data))
                    if forward:
                        forward.send(message)
                if forward:
                    forward.end()  # the keepers of a pipeline sync their copies to disk in parallel
                if not context.is_active():  # the writer gave up (cancelled): nobody waits for this copy
                    raise FsError(errno.ECANCELED, "the write was cancelled")
                disk(writer.commit)
            except BaseException as e:
                if isinstance(e, DiskNotAnswering):  # (the writer is busy in that step until the disk answers)
                    e.step.add_done_callback(lambda _: writer.abort())
                else:
                    writer.abort()
                if forward:
                    forward.abandon()
                if isinstance(e, FsError):
                    abort_with(context, e)
                raise
            reply = kp.WriteChunkReply(stored_on=[self.keeper_id])
            if forward:
                reply.MergeFrom(forward.finish())
            return reply

    def _check_pipeline(self, header: kp.WriteChunkHeader) -> None:
        ids = [k.keeper_id for k in header.downstream]
        if len(ids) > MAX_PIPELINE:
            raise FsError(errno.EINVAL, f"a pipeline of {len(ids)} keepers is longer than {MAX_PIPELINE}")
        if self.keeper_id in ids or len(set(ids)) != len(ids):
            raise FsError(errno.EINVAL, "a pipeline names the same keeper twice")

    def WriteSmallChunk(self, request: kp.WriteChunkMessage, context: grpc.ServicerContext) -> kp.WriteChunkReply:
        return self.WriteChunk(iter([request]), context)

    def DeriveChunk(self, request: kp.DeriveChunkRequest, context: grpc.ServicerContext) -> kp.WriteChunkReply:
        # In the request's thread: the writer's timeout bounds it on a disk that hangs (the
        # writer then writes the chunk whole elsewhere); reads of the base check its blocks.
        patches = [Patch(p.offset, p.data, p.crc32c) for p in request.patches]
        with self.load:
            try:
                crc = self.store.derive(
                    request.chunk_id, request.length, request.base_chunk_id, request.base_kept, patches
                )
            except FsError as e:
                abort_with(context, e)
            except CorruptChunk as e:
                abort_with(context, self._bad_replica(request.base_chunk_id, e))
        return kp.WriteChunkReply(stored_on=[self.keeper_id], crc32c=crc)

    def LinkChunks(self, request: kp.LinkChunksRequest, context: grpc.ServicerContext) -> kp.LinkChunksReply:
        if len(request.links) > MAX_LINKS:
            abort_with(context, FsError(errno.EINVAL, f"at most {MAX_LINKS} links at once, not {len(request.links)}"))
        with self.load:
            try:
                linked = self.store.link([(link.chunk_id, link.source_id) for link in request.links])
            except FsError as e:
                abort_with(context, e)
        return kp.LinkChunksReply(linked=linked)

    def ReadChunk(self, request: kp.ReadChunkRequest, context: grpc.ServicerContext) -> Iterator[kp.ChunkPiece]:
        with self.load:
            yield from self._pieces(request, context)

    def ReadSmallRange(self, request: kp.ReadChunkRequest, context: grpc.ServicerContext) -> kp.ChunkPiece:
        if not 0 < request.length <= PIECE_SIZE:
            abort_with(context, FsError(errno.EINVAL, f"a small range is 1 to {PIECE_SIZE} bytes"))
        with self.load:
            pieces = self._pieces(request, context)
            first = next(pieces, None)
            if first is None:
                abort_with(context, FsError(errno.EINVAL, "the range is empty"))
            if next(pieces, None) is not None:
                abort_with(context, FsError(errno.EINVAL, "the range spans more than one piece"))
            return first

    def PutMetadataCopy(
        self, request_iterator: Iterator[kp.MetadataCopyPiece], context: grpc.ServicerContext
    ) -> cp.Empty:
        first = next(request_iterator, None)
        if first is None or not first.HasField("header"):
            abort_with(context, FsError(errno.EINVAL, "the first message must carry the copy's header"))
        try:
            self.store.check_disk_answers()
            self.copies.put(first.header, itertools.chain([first.data], (m.data for m in request_iterator)))
        except FsError as e:
            abort_with(context, e)
        return cp.Empty()

    def GetMetadataCopy(self, request: cp.Empty, context: grpc.ServicerContext) -> Iterator[kp.MetadataCopyPiece]:
        newest = self.copies.newest()
        if newest is None:
            abort_with(context, FsError(errno.ENOENT, "this keeper holds no copy of the metadata"))
        header, pieces, journal = newest
        yield kp.MetadataCopyPiece(header=header)
        for piece in pieces:
            yield kp.MetadataCopyPiece(data=piece)
        batch: list[kp.JournalEntry] = []
        size = 0
        for entry in journal:
            batch.append(entry)
            size += entry.ByteSize()
            if size >= JOURNAL_BATCH_BYTES:
                yield kp.MetadataCopyPiece(journal=_changes(header, batch))
                batch, size = [], 0
        if batch:
            yield kp.MetadataCopyPiece(journal=_changes(header, batch))

    def AppendMetadataJournal(self, request: kp.MetadataJournal, context: grpc.ServicerContext) -> kp.JournalAck:
        try:
            self.store.check_disk_answers()  # (the master's shipping round waits for every keeper)
            return kp.JournalAck(last_seq=self.copies.append_journal(request))
        except FsError as e:
            abort_with(context, e)

    def GetDataFolder(self, request: cp.Empty, context: grpc.ServicerContext) -> kp.DataFolder:
        return kp.DataFolder(keeper_id=self.keeper_id, path=str(self.store.root.resolve()))

    def ReadDamagedChunk(self, request: kp.ReadChunkRequest, context: grpc.ServicerContext) -> Iterator[kp.ChunkPiece]:
        with self.load:
            try:
                yield from _messages(*self.store.open_damaged(request.chunk_id))
            except FsError as e:
                abort_with(context, e)
            except CorruptChunk as e:
                abort_with(context, FsError(errno.EBADMSG, str(e)))

    def _pieces(self, request: kp.ReadChunkRequest, context: grpc.ServicerContext) -> Iterator[kp.ChunkPiece]:
        try:
            yield from _messages(*self.store.open_chunk(request.chunk_id, request.offset, request.length))
        except FsError as e:
            abort_with(context, e)
        except CorruptChunk as e:
            abort_with(context, self._bad_replica(request.chunk_id, e))

    def _bad_replica(self, chunk_id: str, e: CorruptChunk) -> FsError:
        """Never served again: the master sees it removed and re-replicates from a good copy."""
        self.store.set_aside(chunk_id, str(e))
        return FsError(errno.EBADMSG, str(e))


def _messages(header: Header, pieces: Iterator[Piece]) -> Iterator[kp.ChunkPiece]:
    """A chunk's pieces as a reply streams them: the first also says the chunk's length and checksum."""
    first = True
    for piece in pieces:
        message = kp.ChunkPiece(
            offset=piece.offset, data=piece.data, block_crc32c=piece.block_crc32c, block_size=piece.block_size
        )
        if first:
            message.chunk_length = header.length
            message.chunk_crc32c = header.crc
            first = False
        yield message


def _changes(header: kp.MetadataCopyHeader, entries: list[kp.JournalEntry]) -> kp.MetadataJournal:
    return kp.MetadataJournal(cluster_id=header.cluster_id, copy_taken_ns=header.taken_ns, entries=entries)
