"""The data of one file while this mount has it open: reads, write-back, uploads.

Writes land in the mount's write-back cache, one dirty slot per chunk's range of the file
(writeback.py). A slot that a write fills up to the chunk's end is uploaded in the background
right away; flush()/fsync() upload the rest and wait.
Each uploaded chunk is committed to the master at once (one CommitChunks per chunk), so only
chunks that a write touched are ever re-uploaded. A partial write into a chunk the file has
starts a slot of that chunk: a small chunk is read into it at once; a big one stays unfetched
(writeback.py): a read of the slot where it was not written fetches just those blocks, and the
whole chunk is fetched only if the slot must go whole (read-modify-write of one chunk at most,
never of the file).

Appends (O_APPEND) of up to a chunk at a time are committed on the condition that the file has
not grown meanwhile: when another mount appended first, the master refuses (EAGAIN) and ours
go again at the new end (`_append_again`), so two machines appending to one log lose no line.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from prometheus_client import Counter

from fusedfs.chunks import PIECE_SIZE, all_zeros, spans
from fusedfs.client.master import MasterClient, progressed
from fusedfs.client.transfer import ChunkTransfer
from fusedfs.errors import FsError
from fusedfs.logs import Repeating
from fusedfs.mount.blocking import call_master, read_parts, run, start_background
from fusedfs.mount.cache import EMPTY, ChunkData, ChunkLoader
from fusedfs.mount.chunkmap import ChunkMap
from fusedfs.mount.dircache import DirCache
from fusedfs.mount.writeback import DirtySlot, WriteBack, gaps
from fusedfs.rpc import master_pb2 as mp

log = logging.getLogger(__name__)
repeating = Repeating(log)  # (during an outage, every upload fails again and again)

READ_AHEAD_CHUNKS = 3  # a sequential reader has the next 3 chunks (24 MiB) fetched in the background
# A chunk longer than this, of which a few ranges were written, goes as those ranges: its keepers
# make the new chunk from their copy of the old (smaller ones go whole, in one message anyway).
DERIVE_ABOVE = 256 << 10
# Uploaded slots an open file keeps (writeback.py, saved slots): a database's commits go to its
# log's last chunk and a few hot pages; more would mostly hold chunks written once, on the cache
# disk (the kernel writes a slot file out once it has lived 30 s).
SAVED_PER_FILE = 4
APPEND_ATTEMPTS = 100  # appends overtaken by other mounts' this many times in a row: EIO
# A flush, or a writer waiting for write-back room, fails (EIO) when no upload it waits for has
# ended, and none moved bytes, for --wait and this long: an upload waits up to --wait for
# keepers itself, but uploads queue for their turn (a partition sweep saw closes take 60-120 s
# with --wait 30), and a flush must not wait for them all, each in turn. Moving bytes is seen
# as gRPC takes the pieces, ahead of the network by its buffers: over a slow link the last of
# them can be taken seconds before the chunk is stored (a writer given --wait 2 alone failed
# 1 run of 2 in the chaos test of slow links).
STALL_GRACE = 5.0

UPLOADS = Counter(
    "fusedfs_mount_uploads",
    "chunks this mount stored: sent whole, or derived by the keepers of the chunk they replace (its changes sent)",
    ["how"],
)
WHOLE_UPLOADS, DERIVED_UPLOADS = UPLOADS.labels("whole"), UPLOADS.labels("derived")


@dataclass
class MountShared:
    """What every open file of one mount shares: the cluster clients, the cache, the limits."""

    master: MasterClient
    transfer: ChunkTransfer
    chunks: ChunkLoader
    writeback: WriteBack
    upload_limiter: trio.CapacityLimiter  # uploads in flight
    dircache: DirCache  # names and attributes seen recently; our commits make them stale


@dataclass
class OpenFile:
    attr: mp.Attr  # as last seen from the master (at open, or in the reply to our last commit)
    size: int
    chunk_size: int
    shared: MountShared
    chunk_map: ChunkMap = field(default_factory=ChunkMap)  # slot -> chunk, asked a window at a time
    dirty: dict[int, DirtySlot] = field(default_factory=dict)
    saved: dict[int, DirtySlot] = field(default_factory=dict)  # uploaded slots kept as the chunk they made
    uploads: dict[int, trio.Event] = field(default_factory=dict)
    # Uploads that failed so far, and the last one's error: whoever waited for an upload that
    # failed (every flush at once, a write held for room) raises it. (One error that the first
    # to see it took for itself let a second close, waiting for the same upload, succeed.)
    failures: int = 0
    error: FsError | None = None
    writes: int = 0  # writes so far ...
    committed_writes: int = 0  # ... and how many of them the master has seen (size and mtime)
    written_ns: int | None = None  # when this mount last wrote to it: the mtime it will commit
    next_read: int = 0  # where a sequential reader's next read starts
    handles: int = 0
    # Where this mount's appends began (the file's size then), while every write since the last
    # commit was an append within one slot: the commit is refused if another mount appended first.
    append_at: int | None = None
    # Below this, the file may have chunks on the master (at open, or ours since): zeros written
    # at or past it are a hole, never stored.
    chunk_end: int = 0
    attr_at: float = field(default_factory=time.monotonic)  # when `attr` came from the master
    # Held by each write, and by a re-append of appends another mount overtook (_append_again),
    # which takes the dirty slots away and gives the file the master's size: a write of another
    # process here meanwhile would land in neither, or over the other mount's lines.
    writing: trio.Lock = field(default_factory=trio.Lock, repr=False)
    reappends: int = 0  # re-appends so far: of the flushes that saw one refusal, one re-appends

    @classmethod
    def from_attr(cls, attr: mp.Attr, shared: MountShared) -> OpenFile:
        return cls(attr, attr.size, attr.chunk_size, shared, chunk_end=attr.size)

    @property
    def inode(self) -> int:
        return self.attr.inode

    def seen(self, attr: mp.Attr) -> None:
        """The master's current attributes (a getattr): when another mount has changed the file
        (`tail -f` of a log another machine appends to), its new size and chunks are read from
        now on. While this mount has writes of its own not yet committed, its view stands."""
        if self.dirty or self.uploads or self.writes != self.committed_writes:
            return
        # Every change moves ctime on. Not newer: what this mount knows already, or a reply that
        # left the master before our last commit and arrived after it (taking its size would
        # shorten the file here, and our next commit would cut the master's copy to it).
        if attr.ctime_ns <= self.attr.ctime_ns:
            return
        if attr.size != self.size or attr.mtime_ns != self.attr.mtime_ns:
            self.size = attr.size
            self.chunk_end = max(self.chunk_end, attr.size)
            self.chunk_map.reset()  # (a chunk id names the same bytes for ever: cached data stays right)
            self._drop_saved()  # (they may hold chunks the other mount replaced)
        self.took(attr)

    def took(self, attr: mp.Attr) -> None:
        """The master's attributes of the file, as a reply just gave them."""
        self.attr, self.attr_at = attr, time.monotonic()

    def clean(self) -> bool:
        """Nothing written here that the master does not have yet."""
        return not self.dirty and not self.uploads and self.writes == self.committed_writes

    def _committed(self, attr: mp.Attr, writes: int) -> None:
        self.shared.dircache.forget_inode(self.inode)
        self.committed_writes = max(self.committed_writes, writes)
        # What comes next of this burst is ours to commit; appends written since the upload began
        # are still to be committed at the end this commit gave the file, as any append is.
        self.append_at = attr.size if self.append_at is not None and self.size > attr.size else None
        if attr.ctime_ns >= self.attr.ctime_ns:  # replies to concurrent commits may arrive out of order
            self.took(attr)

    # --- reading ---------------------------------------------------------------------------------

    async def _ref(self, index: int) -> mp.ChunkRef | None:
        """The chunk in slot index (None: a hole), asked from the master unless known."""
        chunk_map = self.chunk_map
        while not chunk_map.known(index):  # (an answer older than a commit of ours meanwhile: again)
            ask = chunk_map.ask(index)
            request = mp.GetChunksRequest(inode=self.inode, first_index=ask.first, count=ask.count)
            chunk_map.put(ask, list((await call_master(self.shared.master, "GetChunks", request)).chunks))
        return chunk_map.ref(index)

    async def _chunk(self, index: int) -> ChunkData:
        """The committed data of slot index (possibly shorter than the slot; empty for a hole)."""
        return (await self._chunk_and_id(index))[0]

    async def _chunk_and_id(self, index: int) -> tuple[ChunkData, str | None]:
        """_chunk, and the id of the chunk it is (None for a hole)."""
        ref = await self._ref(index)
        if ref is None:
            return EMPTY, None
        return (await self.shared.chunks.load(self.inode, ref)).limited(ref.length), ref.chunk_id

    async def _read_ahead(self, index: int, nursery: trio.Nursery) -> None:
        for ahead in range(index + 1, index + 1 + READ_AHEAD_CHUNKS):
            if ahead * self.chunk_size >= self.size:
                break
            ref = await self._ref(ahead)
            if ref is not None and self.shared.chunks.wanted(ref.chunk_id):
                start_background(nursery, self.shared.chunks.prefetch, self.inode, ref)

    async def _fill(self, slot: DirtySlot) -> None:
        """Fetches what an unfetched slot does not hold of its chunk, which must go whole."""
        chunk = slot.unfetched
        if chunk is None:
            return
        try:
            if self.shared.writeback.unfilled(slot, 0, slot.base_kept):
                data = (await self.shared.chunks.load(self.inode, chunk)).limited(chunk.length)
            else:
                data = EMPTY  # (written all over, as by an overwrite: nothing of it is needed)
        except FsError as e:
            if e.errno != errno.ESTALE:
                raise
            # Not the file's any more: another mount replaced it meanwhile. Where we did not
            # write, the file's chunk now holds; so the slot goes whole (derived, it would undo theirs).
            self.chunk_map.reset()
            data = await self._chunk(slot.index)
            if slot.unfetched is chunk:
                slot.base = None
        self.shared.writeback.fill(slot, chunk, data.slice)

    async def _fill_for_upload(self, slot: DirtySlot) -> list[tuple[int, int, bytes]]:
        """_fill, before an upload: if the cache's disk has no room for the chunk's bytes (it is
        full of slots being written), they go to the upload instead, as `fetched` for its read."""
        try:
            await self._fill(slot)
            return []
        except FsError as e:
            chunk = slot.unfetched
            if e.errno != errno.ENOSPC or chunk is None:
                raise
            data = (await self.shared.chunks.load(self.inode, chunk)).limited(chunk.length)
            return [(0, chunk.length, data.slice(0, chunk.length))]

    async def _written(self, index: int, start: int, end: int) -> bytes | None:
        """[start, end) of slot index as this mount wrote it (None: it holds no slot there),
        with its chunk's bytes where it was not written: just those blocks are fetched."""
        writeback = self.shared.writeback
        while True:
            slot = self.dirty.get(index) or self.saved.get(index)
            if slot is None:
                return None
            holes = writeback.unfilled(slot, start, end)
            if not holes:
                return writeback.read(slot, start, end)
            chunk = slot.unfetched
            assert chunk is not None
            try:
                fetched = [(a, b, await self._blocks(chunk, a, b - a)) for a, b in holes]
            except FsError as e:
                if e.errno != errno.ESTALE:
                    raise
                await self._fill(slot)  # (gone from the cluster: the file's chunk now fills it)
                continue
            if (self.dirty.get(index) or self.saved.get(index)) is slot and slot.unfetched is chunk:
                return writeback.read(slot, start, end, fetched)
            # (else it went, was filled or moved on to another chunk meanwhile: look again)

    async def _range(self, index: int, offset: int, length: int) -> bytes:
        """Just the blocks of slot index that hold [offset, offset + length): for random reads."""
        ref = await self._ref(index)
        return b"" if ref is None else await self._blocks(ref, offset, length)

    async def _blocks(self, ref: mp.ChunkRef, offset: int, length: int) -> bytes:
        """[offset, offset + length) of a chunk, fetching just the blocks that hold it. A range
        within one checksum block keeps that block in the chunk cache."""
        cache = self.shared.chunks.cache
        cached = cache.get(ref.chunk_id)
        if cached is not None:
            return cached.limited(ref.length).slice(offset, offset + length)

        async def fetch(start: int, size: int) -> list[memoryview]:
            return await read_parts(self.shared.transfer, self.inode, ref, start, size)

        piece = await cache.block_range(ref, offset, length, fetch)
        return piece if piece is not None else b"".join(await fetch(offset, length))

    async def read(self, offset: int, size: int, nursery: trio.Nursery) -> bytes:
        end = min(offset + size, self.size)
        # Sequential reads fetch (and cache) whole chunks; a jump elsewhere fetches only its blocks.
        sequential = offset == self.next_read or offset == 0
        self.next_read = end
        parts = []
        for span in spans(offset, max(0, end - offset), self.chunk_size):
            written = await self._written(span.index, span.offset, span.offset + span.length)
            if written is not None:
                piece = written
            elif sequential:
                await self._read_ahead(span.index, nursery)
                piece = (await self._chunk(span.index)).slice(span.offset, span.offset + span.length)
            else:
                piece = await self._range(span.index, span.offset, span.length)
            parts.append(piece + bytes(span.length - len(piece)))
        return b"".join(parts)

    # --- writing ---------------------------------------------------------------------------------

    async def _make_room(self, incoming: int, nursery: trio.Nursery, below: int | None = None) -> None:
        """Back-pressure: while the write-back cache is full (or holds `below` bytes or more),
        gets its oldest slot uploaded and waits, as long as the request's deadline or while
        uploads move bytes."""
        writeback = self.shared.writeback
        deadline = self.shared.master.deadline().at
        failures = self.failures
        while writeback.full(incoming) or (below is not None and writeback.used >= below):
            oldest = writeback.oldest_idle()
            if oldest is not None:
                owner = oldest.owner
                assert isinstance(owner, OpenFile)
                if oldest.saved:
                    del owner.saved[oldest.index]
                    writeback.drop(oldest)
                    continue
                owner._start_upload(oldest.index, nursery)
            if not await self._while_uploads_move(writeback.changed, deadline, self.shared.master.wait + STALL_GRACE):
                # Uploads keep failing, or hang: say so, rather than wait forever.
                raise FsError(errno.EIO, "the write-back cache is full and cannot be uploaded")
            if self.failures != failures and self.error is not None:
                raise self.error

    async def write(self, offset: int, data: bytes, nursery: trio.Nursery, append: bool = False) -> int:
        """Writes data at offset, or at the end for an append (O_APPEND: the offset is ignored)."""
        async with self.writing:
            return await self._write(self.size if append else offset, data, nursery, append)

    async def _write(self, offset: int, data: bytes, nursery: trio.Nursery, append: bool) -> int:
        if not append:
            self.append_at = None
        elif self.append_at is None and self.clean():
            self.append_at = self.size
        view = memoryview(data)
        writeback = self.shared.writeback
        done = 0
        for span in spans(offset, len(data), self.chunk_size):
            while True:
                slot = await self._slot(span.index, span.length, nursery)
                was_full = slot.length == self.chunk_size
                try:
                    writeback.write(slot, span.offset, view[done : done + span.length])
                    break
                except FsError as e:
                    # The cache's disk filled up (slots admitted together grew, other programs
                    # wrote): uploads make room, and the write goes again (into the slot there then).
                    if e.errno != errno.ENOSPC or not writeback.used:
                        raise
                    await self._make_room(span.length, nursery, below=writeback.used)
            self.writes += 1
            done += span.length
            self.size = max(self.size, offset + done)
            # A write that filled the slot, or reached the chunk's end (a sequential writer, of a
            # new file or over an old one), is done with it: it uploads while the next is written.
            # A write elsewhere in a full slot (a database's page) waits for the flush, with any
            # other writes there: each would otherwise upload the chunk again.
            ends_chunk = span.offset + span.length == self.chunk_size
            if slot.length == self.chunk_size and (ends_chunk or not was_full) and not slot.uploading:
                self._start_upload(span.index, nursery)
        self.written_ns = time.time_ns()
        return len(data)

    async def _slot(self, index: int, writing: int, nursery: trio.Nursery) -> DirtySlot:
        """The dirty slot of slot index, for a write of `writing` bytes into it: the one there
        is, the saved one of our last upload there, or a new one holding the chunk's data."""
        writeback = self.shared.writeback
        while True:
            slot = self.dirty.get(index)
            if slot is not None:
                return slot
            saved = self.saved.pop(index, None)
            if saved is not None:  # our last upload there: start from it
                if writeback.reuse(saved):
                    self.dirty[index] = saved
                    return saved
                writeback.drop(saved)
            await self._make_room(self.chunk_size, nursery)
            existing, base, big, origin = b"", None, None, ""
            if index * self.chunk_size < self.size:
                ref = await self._ref(index)
                origin = ref.chunk_id if ref is not None else ""  # (what our commit replaces)
            if writing < self.chunk_size and index * self.chunk_size < self.size:  # the rest is kept
                if ref is not None and min(ref.length, self.chunk_size) > DERIVE_ABOVE:
                    big = ref  # fetched only if it must be
                else:
                    chunk, base = await self._chunk_and_id(index)
                    existing, origin = chunk.slice(0, self.chunk_size), base or ""
            if index in self.dirty or index in self.saved:  # another write made one meanwhile: that one
                continue
            if big is not None:
                slot = writeback.create_unfetched(self, self.inode, index, big, min(big.length, self.chunk_size))
            else:
                slot = writeback.create(self, self.inode, index, existing, base, origin)
            self.dirty[index] = slot
            return slot

    def _start_upload(self, index: int, nursery: trio.Nursery, whole_burst: bool = False) -> None:
        """whole_burst: flush uploads the one slot this burst of appends wrote, so its commit may
        carry the append's condition (only flush appends again when it is refused)."""
        if not whole_burst:
            self.append_at = None
        done = trio.Event()
        self.uploads[index] = done
        self.dirty[index].uploading = True
        start_background(nursery, self._upload, index, done)

    def _commit_request(self, chunks: list[mp.NewChunk], end: int | None = None) -> mp.CommitChunksRequest:
        """end: the size the commit may give the file at most (a commit never shrinks one)."""
        size = self.size if end is None else min(self.size, end)
        request = mp.CommitChunksRequest(inode=self.inode, size=size, chunks=chunks)
        if self.written_ns is not None:
            request.mtime_ns = self.written_ns
        if self.append_at is not None and chunks:  # (a commit of the size alone overwrites nothing)
            request.appended_at = self.append_at
        return request

    async def _upload(self, index: int, done: trio.Event) -> None:
        writeback = self.shared.writeback
        slot = self.dirty[index]
        try:
            async with self.shared.upload_limiter:
                if self.dirty.get(index) is not slot:  # cut away by a truncate meanwhile
                    return
                version, length = slot.version, slot.length
                goal = self.attr.goal
                # Zeros where the file has no chunk stay a hole (posix_fallocate, zeroed ranges).
                hole = index * self.chunk_size >= self.chunk_end or self.chunk_map.hole(index)
                # A few ranges written into a big chunk the slot began as: they go alone (and the
                # file may well be changed there again).
                limit = min(PIECE_SIZE, length // 2)  # changed bytes a derive takes at most
                few_changes = length > DERIVE_ABOVE and writeback.derivable(slot, length, limit)
                # Where the chunk the slot began as is stored, if we know: derived there at once.
                known = self.chunk_map.last_known(index) if few_changes else None

                # Each reads the slot in the worker thread: a write meanwhile changes the version,
                # so the slot stays dirty and goes again; what was read is never taken for the
                # current state.
                def derive() -> mp.NewChunk | None:
                    """The slot as its changes to its base chunk; None if that cannot be done."""
                    derived = writeback.patches(slot, length, limit)
                    if derived is None:  # (written more meanwhile)
                        return None
                    base, kept, patches = derived
                    holders = list(known.replicas) if known is not None and known.chunk_id == base else []
                    try:
                        chunk = self.shared.transfer.derive(index, base, kept, length, patches, goal, holders)
                    except FsError as e:
                        log.info("slot %d of inode %d goes whole: %s", index, self.inode, e.message)
                        return None
                    DERIVED_UPLOADS.inc()
                    return chunk

                fetched: list[tuple[int, int, bytes]] = []

                def whole() -> mp.NewChunk | None:
                    """The slot sent whole; None for zeros where the file has a hole (nothing to store)."""
                    data = writeback.read(slot, 0, length, fetched)
                    if hole and all_zeros(data):
                        return None
                    chunk = self.shared.transfer.write(index, data, goal)
                    WHOLE_UPLOADS.inc()
                    return chunk

                chunk = await run(derive) if few_changes else None
                if chunk is None:
                    fetched = await self._fill_for_upload(slot)
                    if self.dirty.get(index) is not slot:  # cut away by a truncate meanwhile
                        return
                    chunk = await run(whole)
                if self.dirty.get(index) is not slot:
                    # Cut away by a truncate meanwhile, or dropped with the file after a close
                    # that failed: committed, it would give the file a size over other slots
                    # that were never saved (zeros there; a partition sweep).
                    if chunk:
                        await run(self.shared.transfer.abandon, [chunk.chunk_id])
                    return
                writes, size = self.writes, self.size
                if chunk and slot.written is not None:  # (else it replaces whatever is there)
                    chunk.replaces = slot.origin
                try:
                    # A file growing grows to the end of what this upload holds at most: if the
                    # slots after it are never saved (a close that fails), it ends where its data
                    # does, rather than reading zeros up to the size written; and what was written
                    # into this slot since the upload began is not shown as zeros elsewhere (it
                    # goes with the next upload; appends that were there lost their place to
                    # another mount's). (The flush's commit sets the size.)
                    end = max(index * self.chunk_size + length, self.attr.size)
                    request = self._commit_request([chunk] if chunk else [], end=end)
                    reply = await call_master(self.shared.master, "CommitChunks", request)
                except FsError as e:
                    if chunk and e.errno in (errno.EAGAIN, errno.ESTALE):  # (refused: it goes unused)
                        await run(self.shared.transfer.abandon, [chunk.chunk_id])
                    if chunk and e.errno == errno.ESTALE and chunk.HasField("replaces"):
                        await self._rebase(slot)  # (and it stays dirty: flush uploads it again)
                        return
                    raise
                self._committed(reply, writes if request.size == size else 0)
                if chunk:
                    self.chunk_end = max(self.chunk_end, (index + 1) * self.chunk_size)
                    slot.origin = chunk.chunk_id  # (what it holds on the master now, if it stays dirty)
                made = self.shared.transfer.stored_ref(chunk) if chunk else None
                used = reply.size - index * self.chunk_size  # (the master cuts a chunk past the size)
                if chunk and made and len(made.replicas) == len(chunk.stored_on) and chunk.length <= used:
                    self.chunk_map.committed(index, made)  # (read from where we stored it, without asking)
                else:
                    self.chunk_map.changed(index)  # (asked again before it is read)
                if self.dirty.get(index) is slot and slot.version == version:
                    del self.dirty[index]
                    # Small changes to a file still open are likely to go on there (a database, a
                    # log); a slot that was written whole (a copy) would only take cache disk.
                    keep = self.handles and (few_changes or slot.memory is not None)
                    if made is not None and keep and writeback.keep_saved(slot, made):
                        self.saved[index] = slot
                        if len(self.saved) > SAVED_PER_FILE:  # the oldest goes
                            writeback.drop(self.saved.pop(next(iter(self.saved))))
                    else:
                        writeback.drop(slot)
        except FsError as e:
            if e.errno != errno.EAGAIN:  # (see flush)
                repeating.warning(self.inode, "upload of slot %d of inode %d failed: %s", index, self.inode, e.message)
            self.error, self.failures = e, self.failures + 1
        except Exception as e:  # never let a background task take the mount down
            log.exception("upload of slot %d of inode %d failed", index, self.inode)
            self.error, self.failures = FsError(errno.EIO, str(e)), self.failures + 1
        finally:
            del self.uploads[index]
            done.set()
            writeback.upload_ended(slot)

    async def _rebase(self, slot: DirtySlot) -> None:
        """Another mount changed the slot's chunk since our copy of it was made (our commit was
        refused): what we wrote goes onto the chunk there now, to be uploaded again. So two
        machines' writes to different bytes of one chunk both stand, as on a local disk (where
        both wrote, the later commit's); the later commit replaced the whole chunk, and the
        other's bytes were lost."""
        self.chunk_map.reset()  # (the other mount changed the file: what we know of it may be old)
        self._drop_saved()
        ref = await self._ref(slot.index)
        length = min(ref.length, self.chunk_size) if ref is not None else 0
        data = EMPTY
        written = slot.written
        if ref is not None and slot.unfetched is None and written is not None and gaps(written, 0, length):
            data = (await self.shared.chunks.load(self.inode, ref)).limited(ref.length)
        if self.dirty.get(slot.index) is not slot or slot.written is None:  # (it went, or goes whole now)
            return
        self.shared.writeback.rebase(slot, ref, length, data.slice)
        end = slot.index * self.chunk_size + length
        self.size, self.chunk_end = max(self.size, end), max(self.chunk_end, end)
        log.info("slot %d of inode %d changed on another mount: our writes go onto it", slot.index, self.inode)

    async def flush(self, nursery: trio.Nursery) -> None:
        """Uploads and commits every change; raises the failure of an upload it waited for
        (what was not uploaded stays, for the next flush to try again)."""
        reappends = self.reappends
        failed = await self._upload_all(nursery)
        for _ in range(APPEND_ATTEMPTS):
            if failed is None or failed.errno != errno.EAGAIN or self.append_at is None:
                break
            async with self.writing:
                # (Other processes' flushes here saw the same refusal: the first re-appends.)
                if self.reappends == reappends and self.append_at is not None:
                    await self._append_again(nursery)
                reappends = self.reappends
            failed = await self._upload_all(nursery)
        if failed is not None and failed.errno == errno.EAGAIN:  # (a write meanwhile made it two commits)
            failed = FsError(errno.EIO, "could not append: other mounts kept appending to the file meanwhile")
        if failed is None and self.writes != self.committed_writes:
            # The final size and mtime, when the chunk commits did not carry them (e.g. a hole).
            writes, request = self.writes, self._commit_request([])
            self._committed(await call_master(self.shared.master, "CommitChunks", request), writes)
        if failed is not None:
            raise failed

    async def _upload_all(self, nursery: trio.Nursery) -> FsError | None:
        """Uploads every dirty slot; the error of the first upload waited for that failed."""
        failures = self.failures
        stall = self.shared.master.wait + STALL_GRACE
        while self.dirty or self.uploads:
            for index in list(self.dirty):
                if index not in self.uploads:
                    self._start_upload(index, nursery, whole_burst=len(self.dirty) == 1)
            for event in list(self.uploads.values()):
                # (From the end of the one before: while they go on ending, or moving bytes, it waits.)
                if not await self._while_uploads_move(event.wait, time.monotonic() + stall, stall):
                    # (It goes on; what is not uploaded stays, for a later flush.)
                    return FsError(
                        errno.EIO,
                        f"the file's changes could not be saved within {stall:g} s: the keepers do not answer",
                    )
                if self.failures != failures:  # (the others go on; what fails stays, for a later flush)
                    return self.error
                progressed()  # (the commit after the last upload gets the whole wait, too)
        return None

    async def _while_uploads_move(self, wait: Callable[[], Awaitable[object]], until: float, stall: float) -> bool:
        """Awaits wait(); False once past `until` (time.monotonic()) with no upload of the mount's
        having moved bytes for `stall` seconds: a network that is slow is waited for (a chunk's
        upload over a slow link outlasts --wait), one that is silent is not."""
        transfer = self.shared.transfer
        while (give_up := max(until, transfer.last_moved + stall)) > time.monotonic():
            with trio.move_on_at(trio.current_time() + give_up - time.monotonic()):
                await wait()
                return True
        return False

    async def _append_again(self, nursery: trio.Nursery) -> None:
        """Our appends were refused: another mount appended first. They go again at the end
        the file has now (as they would have, had that append come before ours). (With
        `writing` held.)"""
        self.reappends += 1
        start = self.append_at
        assert start is not None
        writeback = self.shared.writeback
        ours = b"".join(
            writeback.read(self.dirty[span.index], span.offset, span.offset + span.length)
            for span in spans(start, self.size - start, self.chunk_size)
        )
        for slot in self.dirty.values():
            writeback.drop(slot)
        self.dirty.clear()
        self._drop_saved()
        self.chunk_map.reset()
        self.took(await call_master(self.shared.master, "GetAttr", mp.InodeRequest(inode=self.inode)))
        self.size = self.attr.size
        self.chunk_end = max(self.chunk_end, self.size)
        self.append_at = self.size
        log.debug("inode %d: another mount appended first; appending %d bytes at %d", self.inode, len(ours), self.size)
        await self._write(self.size, ours, nursery, append=True)

    def truncated(self, attr: mp.Attr) -> None:
        """The file was truncated (on the master): drop buffered data past its new size."""
        size = self.size = attr.size
        self.chunk_end = min(self.chunk_end, size)
        self.took(attr)
        self.append_at = None
        self.shared.dircache.forget_inode(self.inode)
        self.chunk_map.reset()
        self._drop_saved()
        writeback = self.shared.writeback
        for index, slot in list(self.dirty.items()):
            start = index * self.chunk_size
            if start >= size:
                del self.dirty[index]
                writeback.drop(slot)
            else:
                writeback.truncate(slot, size - start)

    def _drop_saved(self) -> None:
        for slot in self.saved.values():
            self.shared.writeback.drop(slot)
        self.saved.clear()

    def forget(self) -> None:
        """The file is closed for good: nothing of it stays in the write-back cache."""
        for slot in self.dirty.values():
            self.shared.writeback.drop(slot)
        self._drop_saved()
        self.dirty.clear()
