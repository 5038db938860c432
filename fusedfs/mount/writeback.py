"""The mount's write-back cache: written data waiting for upload, as files in the cache folder.

Each dirty slot (one chunk's range of one open file) is a sparse file `<inode>-<slot>` in the
mount's own folder (`--cache-dir`), so buffered writes cost page cache, not the mount's memory.
The total is bounded (`--writeback-mib`, and the free space of the folder's disk): a writer that
would go past the limit first gets the oldest idle slot of the mount uploaded and waits for room,
as S3QL's cache does.

Holes read as zeros: a slot file is extended sparsely, and truncated with ftruncate.

A slot that began as a copy of the chunk already committed (a partial write into it) remembers
that chunk and the ranges written since: while they are few, its upload sends just them, and the
keepers holding that chunk make the new one from their copy (`patches`, Keeper.DeriveChunk).
A slot of a big chunk starts *unfetched*: it holds only what was written; a read of it elsewhere
takes the chunk's bytes there from the cluster (`read`'s `fetched`), and they are fetched into
the slot (`fill`) only when it must go whole: a random writer, `rsync --inplace` or an overwrite
never fetches a chunk it only changes.

A slot starts in memory and moves to its file once it grows past `memory_slot_bytes` (or the
mount's slots in memory would pass `memory_bytes`): a small file is written, uploaded and
dropped without creating, reading and deleting a file of its own.

An uploaded slot of a file still open may be kept as *saved* (its file renamed
`<inode>-<slot>.saved`; the caller keeps those of small changes, and small ones): it holds
exactly the chunk just committed, so the file's next write there (a database's next commit, a
log's next line) starts from it and goes as changes to that chunk, where a new slot would first
fetch the whole chunk and copy it in again. Saved slots count towards the limit and are the
first to go when room is needed; they go with the file's close, and are never reported as left
behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from fusedfs.datadir import in_use
from fusedfs.errors import FsError
from fusedfs.fileio import disk_error, pwrite_all
from fusedfs.rpc import master_pb2 as mp

log = logging.getLogger(__name__)

LEFT_AFTER = 60.0  # seconds a folder no mount holds must be left alone before it counts as left behind

# The share of the cache folder's disk left to others (at most DISK_KEPT_MAX): a disk with less
# free than that is full to the write-back, whatever --writeback-mib says (JuiceFS keeps 10 %).
DISK_KEPT = 0.05
DISK_KEPT_MAX = 1 << 30
MEMORY_SLOT_BYTES = 256 << 10
MEMORY_BYTES = 32 << 20
MAX_PATCH_RANGES = 256  # written ranges a slot tracks for a derived upload, before it is uploaded whole
SAVED_SUFFIX = ".saved"  # a slot file that holds only what is on the cluster already


class DirtySlot:
    def __init__(self, owner: object, inode: int, index: int) -> None:
        self.owner = owner  # the OpenFile it belongs to
        self.inode = inode
        self.index = index
        self.memory: bytearray | None = bytearray()  # the data while small; None once in the file
        self.fd = -1  # the slot's file, once it has one
        self.length = 0  # bytes from the slot's start that hold data (zeros where never written)
        self.version = 0  # bumped by every change, so an upload of an older state is not taken as current
        self.uploading = False  # an upload is reading it: closing waits for that (see drop)
        self.dropped = False
        self.saved = False  # holds just the chunk `base`, as committed: nothing to upload
        # The committed chunk the slot began as a copy of (None: uploaded whole), how many of its
        # bytes still stand, and the ranges written since (sorted, apart).
        self.base: str | None = None
        self.base_kept = 0
        self.changed: list[tuple[int, int]] = []
        # The chunk whose bytes the slot does not hold yet: below base_kept and outside `changed`,
        # the slot's data is that chunk's (the file has zeros there until `fill`). None: it holds
        # all its data.
        self.unfetched: mp.ChunkRef | None = None
        # The chunk the slot held on the master when its copy was made ("": none), and every range
        # written since (None: too many to track): its commit stands only while the master still
        # has that chunk there, else what was written goes onto the chunk there now (`rebase`).
        self.origin = ""
        self.written: list[tuple[int, int]] | None = []


def merged(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Sorted, disjoint ranges with [start, end) added (touching ranges become one)."""
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if b < start or a > end:
            out.append((a, b))
        else:
            start, end = min(a, start), max(b, end)
    out.append((start, end))
    return sorted(out)


def gaps(ranges: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of [start, end) that the sorted, disjoint ranges leave uncovered."""
    out = []
    for a, b in ranges:
        if b <= start:
            continue
        if a >= end:
            break
        if a > start:
            out.append((start, a))
        start = max(start, b)
    if start < end:
        out.append((start, end))
    return out


class WriteBack:
    def __init__(
        self,
        folder: Path,
        limit_bytes: int,
        memory_slot_bytes: int = MEMORY_SLOT_BYTES,
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        self.folder = folder
        self.limit = limit_bytes
        self.memory_slot_bytes = memory_slot_bytes
        self.memory_bytes = memory_bytes
        self.used = 0
        self.in_memory = 0  # bytes of slots still in memory
        self._slots: OrderedDict[tuple[int, int], DirtySlot] = OrderedDict()  # oldest first
        self._changed = trio.Event()
        folder.mkdir(parents=True, exist_ok=True)

    def create(
        self, owner: object, inode: int, index: int, initial: bytes, base: str | None = None, origin: str = ""
    ) -> DirtySlot:
        """A slot holding `initial`: the data of chunk `base` (None: no chunk, or not to be derived
        from); origin: the chunk the slot holds on the master now ("": none)."""
        assert (inode, index) not in self._slots, "one slot per chunk's range"
        slot = DirtySlot(owner, inode, index)
        self._slots[(inode, index)] = slot
        if initial:
            self._put(slot, 0, initial)
        if base is not None:
            slot.base, slot.base_kept = base, len(initial)
        slot.origin = origin
        return slot

    def create_unfetched(self, owner: object, inode: int, index: int, chunk: mp.ChunkRef, length: int) -> DirtySlot:
        """A slot holding the first `length` bytes of a committed chunk, none of them fetched yet."""
        assert (inode, index) not in self._slots, "one slot per chunk's range"
        slot = DirtySlot(owner, inode, index)
        slot.fd = self._new_file(slot, lambda fd: os.ftruncate(fd, length))  # (sparse: no disk until written)
        slot.memory = None
        slot.length = slot.base_kept = length
        slot.base, slot.unfetched, slot.origin = chunk.chunk_id, chunk, chunk.chunk_id
        self._slots[(inode, index)] = slot
        self.used += length
        return slot

    def unfilled(self, slot: DirtySlot, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) whose data the slot does not hold yet (see fill)."""
        if slot.unfetched is None:
            return []
        return gaps(slot.changed, start, min(end, slot.base_kept))

    def fill(self, slot: DirtySlot, chunk: mp.ChunkRef, data: Callable[[int, int], bytes]) -> None:
        """Writes the bytes of `chunk` (data(start, end) gives them) where the slot has not been
        written since it began as that chunk, which it then holds whole. Nothing changes that a
        reader could see: the version stays. (Left alone if the slot went, or moved on to
        another chunk, while they were fetched.)"""
        if slot.dropped or slot.unfetched is not chunk:
            return
        for start, end in self.unfilled(slot, 0, slot.base_kept):
            try:
                pwrite_all(slot.fd, data(start, end), start)
            except OSError as e:
                raise self._error(e) from e
        slot.unfetched = None
        if slot.base is None:
            slot.changed = []  # (kept while unfetched only)

    def derivable(self, slot: DirtySlot, length: int, limit: int) -> bool:
        """The slot's first `length` bytes can go as changes to its base chunk: it has one, and
        the bytes written since come to `limit` at most."""
        changed = sum(min(end, length) - start for start, end in slot.changed if start < length)
        return slot.base is not None and changed <= limit

    def patches(self, slot: DirtySlot, length: int, limit: int) -> tuple[str, int, list[tuple[int, bytes]]] | None:
        """(base chunk, its bytes kept, [(offset, bytes)]) that make the slot's first `length`
        bytes from its base chunk, if they are derivable."""
        if slot.base is None or not self.derivable(slot, length, limit):
            return None
        return (
            slot.base,
            slot.base_kept,
            [(start, self.read(slot, start, min(end, length))) for start, end in slot.changed if start < length],
        )

    def _path(self, slot: DirtySlot, saved: bool | None = None) -> Path:
        """The slot's file (as it is named while saved or not; by default, as the slot is now)."""
        saved = slot.saved if saved is None else saved
        return self.folder / f"{slot.inode}-{slot.index}{SAVED_SUFFIX if saved else ''}"

    def _set_saved(self, slot: DirtySlot, saved: bool) -> bool:
        """Marks the slot saved or not (renaming its file, if it has one); False if it cannot be."""
        if slot.memory is None:
            try:
                os.rename(self._path(slot), self._path(slot, saved))
            except OSError as e:
                log.warning("cannot rename %s in the write cache: %s", self._path(slot), e)
                return False
        slot.saved = saved
        return True

    def keep_saved(self, slot: DirtySlot, chunk: mp.ChunkRef) -> bool:
        """The slot was uploaded and committed as `chunk`: it stays, as that chunk's data (and
        what it has not fetched of it, it will fetch from there). False if it cannot (then drop
        it)."""
        if not self._set_saved(slot, True):
            return False
        slot.base, slot.base_kept, slot.changed = chunk.chunk_id, slot.length, []
        slot.origin, slot.written = chunk.chunk_id, []
        if slot.unfetched is not None:
            slot.unfetched = chunk
        return True

    def rebase(
        self, slot: DirtySlot, chunk: mp.ChunkRef | None, length: int, data: Callable[[int, int], bytes]
    ) -> None:
        """The slot's chunk on the master is `chunk` now (None: none), `length` bytes of it the
        slot's: where the slot was not written, it takes that chunk's bytes (data(start, end)
        gives them; zeros past its end), as if its copy had been made from that chunk. Only for a
        slot that knows what was written to it."""
        written = slot.written
        assert written is not None and not slot.saved
        if slot.unfetched is not None and chunk is not None:  # (its bytes stay unfetched: of the new chunk now)
            slot.unfetched = chunk
            if length > slot.length:
                try:
                    os.ftruncate(slot.fd, length)  # (sparse)
                except OSError as e:
                    raise self._error(e) from e
                self.used += length - slot.length
                slot.length = length
        else:
            slot.unfetched = None  # (the new state is a hole: zeros where it was not written)
            for start, end in gaps(written, 0, max(length, slot.length)):
                piece = data(start, min(end, length)) if start < length else b""
                self._put(slot, start, piece + bytes(end - start - len(piece)))
        slot.base = chunk.chunk_id if chunk is not None else None
        slot.base_kept, slot.changed = length, list(written)
        slot.origin = chunk.chunk_id if chunk is not None else ""
        slot.version += 1

    def reuse(self, slot: DirtySlot) -> bool:
        """A saved slot is to be written again: it becomes dirty. False if it cannot (then drop it)."""
        return self._set_saved(slot, False)

    def _new_file(self, slot: DirtySlot, prepare: Callable[[int], object]) -> int:
        """The slot's file, made and given its data by prepare(fd); on a failure, none is left."""
        path = self._path(slot)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            raise self._error(e) from e
        try:
            prepare(fd)
        except OSError as e:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise self._error(e) from e
        return fd

    def _to_file(self, slot: DirtySlot) -> None:
        memory = slot.memory
        assert memory is not None and not slot.saved
        slot.fd = self._new_file(slot, lambda fd: pwrite_all(fd, memory, 0))  # (failing, it stays in memory)
        self.in_memory -= len(memory)
        slot.memory = None

    def write(self, slot: DirtySlot, offset: int, data: bytes | memoryview) -> None:
        assert not slot.saved, "reuse() a saved slot before writing to it"
        self._put(slot, offset, data)
        end = offset + len(data)
        if (slot.base is not None or slot.unfetched is not None) and end > offset:
            slot.changed = merged(slot.changed, offset, end)
            if len(slot.changed) > MAX_PATCH_RANGES:
                slot.base = None  # (an unfetched slot keeps the ranges: they tell what to fill)
                if slot.unfetched is None:
                    slot.changed = []
        if slot.written is not None and end > offset:
            slot.written = merged(slot.written, offset, end)
            if len(slot.written) > MAX_PATCH_RANGES:
                slot.written = None

    def _put(self, slot: DirtySlot, offset: int, data: bytes | memoryview) -> None:
        """Puts data in the slot at offset (a new version of it), whatever it is."""
        end = offset + len(data)
        memory = slot.memory
        if memory is not None:
            growth = max(0, end - len(memory))
            fits = self.in_memory + growth <= self.memory_bytes
            # (On a disk without room for it, which other programs filled, the slot stays in
            # memory while the mount's memory for slots lasts, and the write goes on.)
            if not fits or (end > self.memory_slot_bytes and self.disk_room() >= end):
                self._to_file(slot)
            if slot.memory is not None:
                if offset > len(memory):
                    memory.extend(bytes(offset - len(memory)))  # a hole reads as zeros
                memory[offset:end] = data
                self.in_memory += growth
        if slot.memory is None:
            try:
                pwrite_all(slot.fd, data, offset)
            except OSError as e:
                raise self._error(e) from e
        if end > slot.length:
            self.used += end - slot.length
            slot.length = end
        slot.version += 1

    def _error(self, e: OSError) -> FsError:
        return disk_error(e, f"the write cache's disk ({self.folder})")

    def read(self, slot: DirtySlot, start: int, end: int, fetched: Sequence[tuple[int, int, bytes]] = ()) -> bytes:
        """Bytes [start, end) of the slot, as far as it holds data. Where it is unfilled, the
        chunk's bytes must be among `fetched`: (start, end, bytes) read from it (short past its end)."""
        end = min(end, slot.length)
        if end <= start:
            return b""
        memory = slot.memory
        data = bytes(memory[start:end]) if memory is not None else os.pread(slot.fd, end - start, start)
        holes = self.unfilled(slot, start, end)
        if not holes:
            return data
        out = bytearray(data)
        for a, b in holes:
            # Zeros in place of the chunk's data would be stored as the file's: never let one through.
            offset, piece = next(((f, p) for f, t, p in fetched if f <= a and b <= t), (-1, b""))
            assert offset >= 0, f"slot {slot.inode}-{slot.index}: [{a}, {b}) is neither filled nor fetched"
            part = piece[a - offset : b - offset]
            out[a - start : b - start] = part + bytes(b - a - len(part))  # (past the chunk's end: zeros)
        return bytes(out)

    def truncate(self, slot: DirtySlot, length: int) -> None:
        if length < slot.length:
            if slot.memory is not None:
                self.in_memory -= max(0, len(slot.memory) - length)
                del slot.memory[length:]
            else:
                os.ftruncate(slot.fd, length)
            self.used -= slot.length - length
            slot.length = length
            slot.version += 1
            slot.base_kept = min(slot.base_kept, length)
            slot.changed = [(a, min(b, length)) for a, b in slot.changed if a < length]
            if slot.written is not None:
                slot.written = [(a, min(b, length)) for a, b in slot.written if a < length]

    def drop(self, slot: DirtySlot) -> None:
        """The slot is on the cluster (or cut away): its file goes."""
        if slot.dropped:
            return
        slot.dropped = True
        del self._slots[(slot.inode, slot.index)]
        self.used -= slot.length
        if slot.memory is not None:
            self.in_memory -= len(slot.memory)  # (an upload reading it keeps its own reference)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(slot))
            if not slot.uploading:
                os.close(slot.fd)
        self.wake()

    def upload_ended(self, slot: DirtySlot) -> None:
        slot.uploading = False
        if slot.dropped and slot.fd >= 0:
            os.close(slot.fd)  # dropped while an upload was reading it
        self.wake()

    def wake(self) -> None:
        """Something changed (an upload ended, a slot went): writers waiting for room look again."""
        self._changed.set()
        self._changed = trio.Event()

    def full(self, incoming: int) -> bool:
        """No room for `incoming` more bytes: past the limit, or on the folder's disk. (With
        nothing held, never: there is nothing to upload to make room.)"""
        return self.used > 0 and (self.used + incoming > self.limit or self.disk_room() < incoming)

    def disk_room(self) -> int:
        """Bytes the cache may still take on its disk: what is free, less a share kept for others."""
        try:
            disk = os.statvfs(self.folder)
        except OSError:
            return self.limit
        kept = min(int(disk.f_blocks * disk.f_frsize * DISK_KEPT), DISK_KEPT_MAX)
        return disk.f_bavail * disk.f_frsize - kept

    def oldest_idle(self) -> DirtySlot | None:
        """The slot to make room with: a saved one (dropping it costs nothing), else the oldest
        not being uploaded."""
        slots = self._slots.values()
        return next((s for s in slots if s.saved), None) or next((s for s in slots if not s.uploading), None)

    async def changed(self) -> None:
        await self._changed.wait()

    def close(self) -> bool:
        """Removes the folder if nothing is left to upload; False (keeping it) otherwise."""
        if any(not slot.saved for slot in self._slots.values()):
            return False
        shutil.rmtree(self.folder, ignore_errors=True)
        return True


def left_behind(cache_dir: Path, own: Path) -> list[tuple[Path, int, int]]:
    """The write-back folders in cache_dir of mounts that ended without unmounting (no process
    holds their lock): (folder, files, bytes on disk) of each that still holds data, written and
    never closed or fsynced, so never uploaded. Those that hold nothing are removed. (A folder
    changed within LEFT_AFTER is left alone: a mount starting now may not hold its lock yet.)"""
    found: list[tuple[Path, int, int]] = []
    for folder in sorted(cache_dir.glob("mount-*")) if cache_dir.is_dir() else []:
        try:
            if folder == own or not folder.is_dir() or time.time() - folder.stat().st_mtime < LEFT_AFTER:
                continue
            if in_use(folder):
                continue
            slots = [path for path in folder.iterdir() if path.name != "lock" and not path.name.endswith(SAVED_SUFFIX)]
            if not slots:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            found.append((folder, len(slots), sum(path.stat().st_blocks * 512 for path in slots)))
        except OSError:
            continue
    return found
