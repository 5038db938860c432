"""Chunks on a keeper's local disk: atomic writes, verified reads, and what the master hears of them.

Layout of the data folder:
    keeper-id            this keeper's identity (a UUID), made on first start
    layout               the layout's version (LAYOUT; none: 1, whole chunk files only)
    chunks/XY/<id>       one file per chunk; XY is the id's last two hex digits (256-way fan-out)
    chunks/XY/<id>.base  a further name of the file a derived chunk kept as changes needs (chunkfile.py)
    tmp/                 chunks being written; emptied at start, so an interrupted write leaves nothing
    damaged/<id>.<time>  copies found damaged (time: when, unix seconds), kept DAMAGED_KEPT: no
                         longer held or served, but what is left of a chunk whose every copy was
                         damaged can be pieced together from them (each block has its checksum);
                         they give way, oldest first, to new chunks that find the disk full
    disk-probe           rewritten every second to time the disk (diskwatch.py)

The file format is chunkfile.py's. A chunk is written to tmp/, fsynced, then renamed into chunks/
and the folder fsynced: a chunk file either is whole and durable, or does not exist. Every read
checks the blocks it returns. Every disk operation of a write is timed by the store's DiskWatch,
and while the disk does not answer (diskwatch.py) new writes are refused at once. A streamed
write runs its disk work in the store's disk threads (`answered`), so that a disk that stops
answering under it fails it within STALL_AFTER instead of holding it, and every keeper and
writer upstream of it, until their timeouts.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as StepTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import Counter

from fusedfs.chunkfile import (
    ALIGN,
    BASE_SUFFIX,
    FROM_BASE,
    KEEPER_ID_FILE,
    ChunkFile,
    CorruptChunk,
    Header,
    Piece,
    base_path,
    block_count,
    block_length,
    chunk_path,
    data_offset,
    delta_data_offset,
    is_whole,
)
from fusedfs.chunks import (
    BLOCK_SIZE,
    MAX_CHUNK_SIZE,
    PIECE_SIZE,
    crc32c,
    crc32c_combine,
    crc32c_replaced,
    is_valid_chunk_id,
)
from fusedfs.errors import FsError
from fusedfs.fileio import disk_error, pwrite_all
from fusedfs.keeper.diskwatch import DiskWatch

log = logging.getLogger(__name__)

PROBE_FILE = "disk-probe"
LAYOUT_FILE = "layout"
# 2: derived chunks kept as their changed blocks beside their base's file. A keeper refuses a
# folder of a newer layout than its own, as HDFS does: one that took files it does not know for
# torn chunk files would delete them. (Keepers before layout 2 do not look: never go back past it.)
LAYOUT = 2
# As many as the keeper's request threads (node.py), so that a step never waits for a thread and
# its STALL_AFTER is the disk's alone. (One held by a disk that stopped answering is free again
# when the disk answers; new writes are refused meanwhile.)
DISK_THREADS = 64
DAMAGED_KEPT = 7 * 24 * 3600.0  # seconds a copy found damaged stays in damaged/
# A derived chunk is kept as its changed blocks beside its base while they are at most this
# fraction of its blocks: every later derive from it copies them again, so past that a whole
# chunk costs less. (An 8 MiB chunk: up to 16 of its 128 blocks, 1 MiB.)
DELTA_SHARE = 8

DERIVED = Counter(
    "fusedfs_keeper_derived_chunks",
    "chunks this keeper derived from a chunk it holds (a small overwrite): kept as the blocks changed, or whole",
    ["kept"],
)
DERIVED_AS_CHANGES, DERIVED_WHOLE = DERIVED.labels("changes"), DERIVED.labels("whole")

T = TypeVar("T")


class DiskNotAnswering(FsError):
    """A step of a write that the disk has not finished within STALL_AFTER. The step goes on in
    its thread (`step`); whatever must follow it (an abort) is to wait for it there."""

    def __init__(self, step: Future[Any], seconds: float) -> None:
        super().__init__(errno.EIO, f"keeper disk has not answered for {seconds:.0f} s")
        self.step = step


def _check_id(chunk_id: str) -> None:
    if not is_valid_chunk_id(chunk_id):
        raise FsError(errno.EINVAL, f"invalid chunk id {chunk_id[:40]!r}: must be 16 lowercase hex digits")


def _check_length(length: int) -> None:
    if not 0 < length <= MAX_CHUNK_SIZE:
        raise FsError(errno.EINVAL, f"chunk length {length} is out of range (1..{MAX_CHUNK_SIZE})")


class ChunkWriter:
    """Receives one chunk's bytes in order, then commits it atomically (or aborts). The chunk's
    CRC-32C is the writer's, checked at the end, or (None) the one its bytes have."""

    def __init__(self, store: ChunkStore, chunk_id: str, length: int, crc: int | None) -> None:
        self._store = store
        self.chunk_id = chunk_id
        self.length = length
        self.crc = crc
        self._tmp = store.root / "tmp" / f"{chunk_id}.{uuid.uuid4().hex[:8]}"
        try:
            with store.watch.op():
                self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:  # out of inodes is ENOSPC too: "disk full", not an internal error
            raise _disk_error(e) from e
        self._data_offset = data_offset(length)
        self._written = 0
        self._running_crc = 0
        self._block_crcs: list[int] = []
        self._block_crc = 0
        self._block_fill = 0

    def write(self, data: bytes) -> None:
        if self._written + len(data) > self.length:
            raise FsError(errno.EINVAL, f"chunk {self.chunk_id}: more data than the announced {self.length} bytes")
        try:
            with self._store.watch.op():
                pwrite_all(self._fd, data, self._data_offset + self._written)
        except OSError as e:
            raise _disk_error(e) from e
        self._written += len(data)
        self._running_crc = crc32c(data, self._running_crc)
        view = memoryview(data)
        while view:
            take = min(BLOCK_SIZE - self._block_fill, len(view))
            self._block_crc = crc32c(view[:take], self._block_crc)
            self._block_fill += take
            view = view[take:]
            if self._block_fill == BLOCK_SIZE:
                self._block_crcs.append(self._block_crc)
                self._block_crc = self._block_fill = 0

    def commit(self) -> None:
        """Checks length and checksum, makes the chunk durable and visible; aborts on any failure."""
        try:
            if self._written != self.length:
                raise FsError(errno.EINVAL, f"chunk {self.chunk_id}: got {self._written} of {self.length} bytes")
            if self.crc is None:
                self.crc = self._running_crc
            if self._running_crc != self.crc:
                raise FsError(errno.EINVAL, f"chunk {self.chunk_id}: checksum mismatch, data damaged in transit")
            if self._block_fill:
                self._block_crcs.append(self._block_crc)
            header = Header(self.length, self.crc, self._block_crcs).pack()
            with self._store.watch.op():
                try:
                    pwrite_all(self._fd, header, 0)
                    os.fdatasync(self._fd)  # data and size; the name is made durable by _install
                except OSError as e:
                    raise _disk_error(e) from e
                os.close(self._fd)
                self._fd = -1
                self._store._install(self._tmp, self.chunk_id, self._data_offset + self.length)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Patch:
    """Bytes to write over a derived chunk (ChunkStore.derive), with the writer's CRC-32C."""

    offset: int
    data: bytes
    crc: int


def patched(offset: int, data: bytes, patches: Sequence[Patch]) -> bytes:
    """data (the bytes at `offset` of a chunk) with the patches that overlap it written over."""
    end = offset + len(data)
    touching = [p for p in patches if p.offset < end and p.offset + len(p.data) > offset]
    if not touching:
        return data
    out = bytearray(data)
    for p in touching:
        start = max(p.offset, offset)
        stop = min(p.offset + len(p.data), end)
        out[start - offset : stop - offset] = p.data[start - p.offset : stop - p.offset]
    return bytes(out)


def blocks_in_base(length: int, base: Header, kept: int, patches: Sequence[Patch]) -> list[bool]:
    """Per block of a chunk derived from base (ChunkStore.derive): whether it is the block of
    the same index in the base's own file, unchanged (within what is kept, as long, no patch
    on it, and not a block a derived base holds a copy of)."""
    touched: set[int] = set()
    for p in patches:
        if p.data:
            touched.update(range(p.offset // BLOCK_SIZE, (p.offset + len(p.data) - 1) // BLOCK_SIZE + 1))
    blocks = block_count(length)
    whole_in_both = min(kept, base.length, length) // BLOCK_SIZE  # (every block before: full in both)
    in_base = [index < whole_in_both for index in range(blocks)]
    last = blocks - 1  # (the chunk's last block may be short, and be the base's last block too)
    size = block_length(length, last)
    in_base[last] = last * BLOCK_SIZE + size <= kept and block_length(base.length, last) == size
    for index in touched:
        if index < blocks:
            in_base[index] = False
    if base.sources is not None:
        for index, source in enumerate(base.sources[:blocks]):
            if source != FROM_BASE:
                in_base[index] = False
    return in_base


def _bytes_held(path: Path) -> int:
    """Bytes a chunk file takes, with a derived chunk's base."""
    size = path.stat().st_size
    with contextlib.suppress(FileNotFoundError):
        size += base_path(path).stat().st_size
    return size


def fsync_dir(path: Path) -> None:
    """Makes the names in a folder durable."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _disk_error(e: OSError) -> FsError:
    return disk_error(e, "keeper disk")


def prune_damaged(folder: Path, now: float) -> None:
    """Deletes the damaged copies set aside in folder more than DAMAGED_KEPT ago."""
    try:
        names = list(folder.iterdir())
    except FileNotFoundError:
        return
    for path in names:
        since = _set_aside_at(path.name)
        if since is not None and now - since > DAMAGED_KEPT:
            path.unlink(missing_ok=True)


def _set_aside_at(name: str) -> int | None:
    """When the copy named `name` in damaged/ was set aside (unix seconds): `<id>.<time>`, and
    `<id>.<time>.base` for a derived chunk's base."""
    _, _, since = name.removesuffix(BASE_SUFFIX).rpartition(".")
    return int(since) if since.isdigit() else None


class ChunkStore:
    """The chunks in one data folder, with a log of what changed since the master last heard."""

    def __init__(self, root: Path, reserve_bytes: int = 0) -> None:
        self.root = root
        self.reserve_bytes = reserve_bytes
        self.watch = DiskWatch()
        self._disk_threads = ThreadPoolExecutor(DISK_THREADS, thread_name_prefix="chunk-disk")
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}
        self._added: set[str] = set()
        self._removed: set[str] = set()
        self._check_layout()
        chunks = root / "chunks"
        chunks.mkdir(parents=True, exist_ok=True)
        made = False
        for fan in range(256):  # all made up front, so a write never makes (and fsyncs) a folder
            sub = chunks / f"{fan:02x}"
            if not sub.is_dir():
                sub.mkdir()
                made = True
        if made:
            fsync_dir(chunks)
        prune_damaged(root / "damaged", time.time())
        tmp = root / "tmp"
        tmp.mkdir(exist_ok=True)
        for leftover in tmp.iterdir():  # interrupted writes: never acknowledged, so never needed
            leftover.unlink()
        for sub in (root / "chunks").iterdir():
            if not sub.is_dir():
                log.warning("ignoring %s: not a chunk folder", sub)
                continue
            for path in sub.iterdir():
                if path.name.endswith(BASE_SUFFIX) and is_valid_chunk_id(path.name.removesuffix(BASE_SUFFIX)):
                    if not path.with_suffix("").exists():  # (a derive cut short, a delete midway)
                        path.unlink()
                elif not is_valid_chunk_id(path.name):
                    path.unlink()
                elif is_whole(path.name, path):
                    self._sizes[path.name] = _bytes_held(path)
                else:  # torn by a crash or a failing disk: never report it as a replica
                    log.warning("chunk file %s is shorter than its header says; deleting it", path)
                    path.unlink()
                    base_path(path).unlink(missing_ok=True)

    def _check_layout(self) -> None:
        """Refuses a data folder of a newer layout than this keeper's; marks it as of LAYOUT."""
        path = self.root / LAYOUT_FILE
        try:
            found = int(path.read_text().strip()) if path.exists() else 1
        except ValueError:
            raise FsError(errno.EINVAL, f"{path} does not hold a layout version") from None
        if found > LAYOUT:
            raise FsError(
                errno.EINVAL,
                f"{self.root} holds chunks of layout {found}, newer than this keeper's ({LAYOUT}): "
                "run the fusedfs that wrote them, or a newer one",
            )
        if found < LAYOUT:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w") as f:
                f.write(f"{LAYOUT}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fsync_dir(self.root)

    def keeper_id(self) -> str:
        """This keeper's identity, created on first use and kept across restarts."""
        path = self.root / KEEPER_ID_FILE
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(uuid.uuid4().hex + "\n")
            os.replace(tmp, path)
        return path.read_text().strip()

    def cluster_id(self) -> str:
        """The cluster whose chunks these are: "" until the keeper first registers."""
        path = self.root / "cluster-id"
        return path.read_text().strip() if path.exists() else ""

    def join_cluster(self, cluster_id: str) -> None:
        """Remembers, durably, the cluster the master says these chunks belong to."""
        path = self.root / "cluster-id"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(cluster_id + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(self.root)

    def _path(self, chunk_id: str) -> Path:
        return chunk_path(self.root, chunk_id)

    # --- writing -------------------------------------------------------------------------------

    def begin_write(self, chunk_id: str, length: int, crc: int | None) -> ChunkWriter:
        _check_id(chunk_id)
        _check_length(length)
        self._admit(chunk_id, length + ALIGN)
        return ChunkWriter(self, chunk_id, length, crc)

    def _admit(self, chunk_id: str, size: int) -> None:
        """Before a new chunk file of `size` bytes: EEXIST for a chunk stored already, ENOSPC
        when it does not fit, EIO while the disk does not answer."""
        if self.has(chunk_id):  # chunks are immutable: a second write is a bug or an attack
            raise FsError(errno.EEXIST, f"chunk {chunk_id} is already stored here")
        if not self._make_room(size):
            raise FsError(errno.ENOSPC, "keeper disk is full")
        self.check_disk_answers()

    def derive(self, chunk_id: str, length: int, base_id: str, base_kept: int, patches: Sequence[Patch]) -> int:
        """Stores chunk_id: the first base_kept bytes of chunk base_id (checked as they are read),
        zeros from there to `length`, the patches written over them; returns its CRC-32C.
        Kept as its changed blocks beside its base (chunkfile.py) when they are few, else written
        whole, streamed a piece at a time. ENOENT without the base here; CorruptChunk when the
        base fails its checksums; EINVAL for a patch that fails its own or lies outside the chunk."""
        _check_id(chunk_id)
        _check_id(base_id)
        _check_length(length)
        if sum(len(p.data) for p in patches) > PIECE_SIZE:
            raise FsError(errno.EINVAL, f"patches of more than {PIECE_SIZE} bytes: write the chunk whole")
        for patch in patches:
            if patch.offset + len(patch.data) > length:
                raise FsError(errno.EINVAL, f"a patch at {patch.offset} ends past the chunk's length {length}")
            if crc32c(patch.data) != patch.crc:
                raise FsError(errno.EINVAL, f"chunk {chunk_id}: a patch fails its checksum, damaged in transit")
        kept = min(base_kept, length)
        with self._open(base_id) as base:
            if base.header.length < kept:
                raise FsError(errno.EINVAL, f"chunk {base_id} holds {base.header.length} bytes, not {kept}")
            in_base = blocks_in_base(length, base.header, kept, patches)
            if len(in_base) - sum(in_base) <= len(in_base) // DELTA_SHARE:
                crc = self._derive_changes(chunk_id, length, base, kept, patches, in_base)
                if crc is not None:
                    DERIVED_AS_CHANGES.inc()
                    return crc
            writer = self.begin_write(chunk_id, length, None)
            try:
                pos = 0
                for piece in base.pieces(0, kept) if kept else ():  # (a length of 0 reads to the end)
                    data = piece.data[: kept - pos]
                    writer.write(patched(pos, data, patches))
                    pos += len(data)
                while pos < length:
                    size = min(PIECE_SIZE, length - pos)
                    writer.write(patched(pos, bytes(size), patches))
                    pos += size
                writer.commit()
            except BaseException:
                writer.abort()
                raise
        DERIVED_WHOLE.inc()
        assert writer.crc is not None
        return writer.crc

    def _derive_changes(
        self, chunk_id: str, length: int, base: ChunkFile, kept: int, patches: Sequence[Patch], in_base: list[bool]
    ) -> int | None:
        """derive(), kept as the blocks not in_base, beside a further name of the base's file;
        None when the base's file has all the names it can have (written whole instead)."""
        self._admit(chunk_id, (len(in_base) - sum(in_base)) * BLOCK_SIZE + ALIGN)
        sources: list[int] = []
        crcs: list[int] = []
        copied = 0
        # The base's CRC with each copied block's change made (no cost per unchanged block) when
        # the chunk is the base changed in places; else combined block by block.
        in_place = length == kept == base.header.length
        crc = base.header.crc if in_place else 0
        start = delta_data_offset(len(in_base))
        tmp = self.root / "tmp" / f"{chunk_id}.{uuid.uuid4().hex[:8]}"
        final = self._path(chunk_id)
        linked = False
        try:
            with self.watch.op():
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                for index, unchanged in enumerate(in_base):
                    size = block_length(length, index)
                    if unchanged:
                        sources.append(FROM_BASE)
                        crcs.append(base.header.block_crcs[index])
                        if not in_place:
                            crc = crc32c_combine(crc, crcs[-1], size)
                        continue
                    offset = index * BLOCK_SIZE
                    have = max(0, min(kept, offset + size) - offset)
                    data = b"".join(p.data for p in base.pieces(offset, have))[:have] if have else b""
                    data = patched(offset, data + bytes(size - len(data)), patches)
                    sources.append(copied)
                    crcs.append(crc32c(data))
                    if in_place:
                        crc = crc32c_replaced(crc, length, offset + size, base.header.block_crcs[index], crcs[-1])
                    else:
                        crc = crc32c(data, crc)
                    with self.watch.op():
                        pwrite_all(fd, data, start + copied * BLOCK_SIZE)
                    copied += 1
                base_length = base.header.base_length if base.header.sources is not None else base.header.length
                header = Header(length, crc, crcs, sources, copied, base_length)
                with self.watch.op():
                    pwrite_all(fd, header.pack(), 0)
                    os.ftruncate(fd, header.file_size())
                    os.fdatasync(fd)
            finally:
                os.close(fd)
            with self.watch.op():
                base_path(final).unlink(missing_ok=True)  # (left by a derive of this id cut short)
                os.link(base.base_file, base_path(final))
                linked = True
                self._install(tmp, chunk_id, header.file_size() + data_offset(base_length) + base_length)
        except BaseException as e:
            if linked and not self.has(chunk_id):
                base_path(final).unlink(missing_ok=True)
            if not isinstance(e, OSError):
                raise
            if isinstance(e, FileNotFoundError) and not linked:  # (the base deleted meanwhile)
                raise FsError(errno.ENOENT, f"chunk {base.chunk_id} is not on this keeper") from None
            if e.errno == errno.EMLINK and not linked:  # (ext4: 65,000 names; a long chain, snapshots)
                return None
            raise _disk_error(e) from e
        finally:
            tmp.unlink(missing_ok=True)
        return crc

    def link(self, links: Sequence[tuple[str, str]]) -> list[str]:
        """Stores each (chunk_id, source_id) as a further name of the source's file: the same
        bytes at no cost of space, since a chunk file never changes once written (a snapshot's
        chunks). Returns the chunk ids stored, durably; a source not held here is skipped. The
        new chunks' blocks are checked as any chunk's are, when read and by the scrub."""
        for chunk_id, source_id in links:
            _check_id(chunk_id)
            _check_id(source_id)
        self.check_disk_answers()
        made: dict[str, int] = {}
        try:
            for chunk_id, source_id in links:
                with self._lock:
                    size = self._sizes.get(source_id)
                if size is None or chunk_id in made or self.has(chunk_id):
                    continue
                source, path = self._path(source_id), self._path(chunk_id)
                with self.watch.op():  # (each one timed: a long batch is not a disk that hangs)
                    try:  # a derived chunk's base first (a delete takes it after the chunk)
                        base_path(path).unlink(missing_ok=True)  # (left by a derive cut short)
                        os.link(base_path(source), base_path(path))
                    except FileNotFoundError:  # (a whole chunk: no base)
                        pass
                    try:
                        os.link(source, path)
                    except (FileNotFoundError, FileExistsError):  # (deleted, or that id written, meanwhile)
                        if not self.has(chunk_id):
                            base_path(path).unlink(missing_ok=True)
                        continue
                made[chunk_id] = size
            for folder in {self._path(c).parent for c in made}:
                with self.watch.op():
                    fsync_dir(folder)
        except OSError as e:  # (a name not made durable is taken back: the caller hears of none)
            for chunk_id in made:
                self._path(chunk_id).unlink(missing_ok=True)
                base_path(self._path(chunk_id)).unlink(missing_ok=True)
            raise _disk_error(e) from e
        with self._lock:
            self._sizes.update(made)
            self._added.update(made)
            self._removed.difference_update(made)
        return list(made)

    def answered(self, step: Callable[[], T]) -> T:
        """step() (disk work of a write) in one of the store's disk threads, waited for at most
        the watch's stall_after; DiskNotAnswering after that."""
        future = self._disk_threads.submit(step)
        try:
            return future.result(timeout=self.watch.stall_after)
        except StepTimeout:
            raise DiskNotAnswering(future, self.watch.stall_after) from None

    def check_disk_answers(self) -> None:
        """EIO while the disk leaves an operation unanswered (diskwatch.py): a write now would
        hang with it, and its writer had better go to another keeper at once."""
        stalled = self.watch.stalled_for()
        if stalled:
            raise FsError(errno.EIO, f"keeper disk has not answered for {stalled:.0f} s")

    def _install(self, tmp: Path, chunk_id: str, size: int) -> None:
        final = self._path(chunk_id)
        try:
            os.link(tmp, final)  # never replaces: of two writes of one id, the first to finish stays
        except FileExistsError:
            raise FsError(errno.EEXIST, f"chunk {chunk_id} is already stored here") from None
        except OSError as e:  # tmpfs counts a link as an inode: out of inodes is ENOSPC here too
            raise _disk_error(e) from e
        finally:
            tmp.unlink()
        try:
            fsync_dir(final.parent)
        except OSError as e:
            final.unlink(missing_ok=True)
            base_path(final).unlink(missing_ok=True)
            raise _disk_error(e) from e
        with self._lock:
            self._sizes[chunk_id] = size
            self._added.add(chunk_id)
            self._removed.discard(chunk_id)

    def delete(self, chunk_id: str) -> None:
        _check_id(chunk_id)
        path = self._path(chunk_id)
        with self.watch.op():
            path.unlink(missing_ok=True)
            base_path(path).unlink(missing_ok=True)  # (after it: a reader that opened it finds its base)
        self._forget(chunk_id)

    def set_aside(self, chunk_id: str, reason: str) -> None:
        """A copy found damaged is no longer held or served (the master sees it go, and copies a
        good one), but it is not deleted: the last copies of a chunk may all be damaged, each
        elsewhere. It moves to damaged/ for DAMAGED_KEPT."""
        _check_id(chunk_id)
        damaged = self.root / "damaged"
        try:
            with self.watch.op():
                damaged.mkdir(exist_ok=True)
                aside = damaged / f"{chunk_id}.{int(time.time())}"
                with contextlib.suppress(FileNotFoundError):  # (gone already; a whole chunk's base)
                    os.rename(self._path(chunk_id), aside)
                    os.rename(base_path(self._path(chunk_id)), base_path(aside))
            log.warning("%s; this copy is set aside in %s", reason, damaged)
            prune_damaged(damaged, time.time())
        except OSError as e:  # (a failing disk: still no longer held, so it is copied elsewhere)
            log.warning("%s; this copy is no longer held (it could not be set aside: %s)", reason, e)
        self._forget(chunk_id)

    def damaged_copies(self) -> int:
        """How many copies damaged/ holds."""
        return len(self._damaged())

    def _damaged(self) -> list[tuple[int, Path, int]]:
        """The copies damaged/ holds, oldest first: (when set aside, path, bytes)."""
        found = []
        try:
            for entry in os.scandir(self.root / "damaged"):
                with contextlib.suppress(FileNotFoundError):
                    found.append((_set_aside_at(entry.name) or 0, Path(entry.path), entry.stat().st_blocks * 512))
        except OSError:  # (none set aside yet; or the disk fails, which the keeper says otherwise)
            return []
        return sorted(found)

    def _make_room(self, needed: int) -> bool:
        """Whether `needed` bytes fit on the disk, deleting damaged copies (oldest first) as far
        as that makes room: kept only in case every copy of a chunk is damaged, they give way to
        new chunks."""
        free = self._disk_free()
        if free >= needed:
            return True
        damaged = self._damaged()
        if free + sum(size for _, _, size in damaged) < needed:  # (no use deleting them)
            return False
        for since, path, _ in damaged:
            path.unlink(missing_ok=True)
            log.warning("deleted the damaged copy %s (set aside at %d) to make room for new chunks", path.name, since)
            if self._disk_free() >= needed:
                return True
        return False

    def open_damaged(self, chunk_id: str) -> tuple[Header, Iterator[Piece]]:
        """The newest copy of chunk_id set aside as damaged: its header, and its pieces unchecked
        (each with the checksums its file holds). ENOENT when there is none; CorruptChunk when
        even its header cannot be read."""
        _check_id(chunk_id)
        copies = [p for p in (self.root / "damaged").glob(f"{chunk_id}.*") if p.suffix[1:].isdigit()]
        if not copies:
            raise FsError(errno.ENOENT, f"no damaged copy of chunk {chunk_id} here")
        newest = max(copies, key=lambda p: int(p.suffix[1:]))
        try:
            chunk = ChunkFile(chunk_id, newest)
        except FileNotFoundError:  # (a derived chunk's base deleted to make room)
            raise FsError(errno.ENOENT, f"no damaged copy of chunk {chunk_id} here") from None
        return chunk.header, chunk.stream(verify=False)

    def _forget(self, chunk_id: str) -> None:
        with self._lock:
            if self._sizes.pop(chunk_id, None) is not None:
                self._removed.add(chunk_id)
                self._added.discard(chunk_id)

    # --- reading -------------------------------------------------------------------------------

    def _open(self, chunk_id: str) -> ChunkFile:
        _check_id(chunk_id)
        try:
            return ChunkFile(chunk_id, self._path(chunk_id))
        except FileNotFoundError:
            with self._lock:
                if self._sizes.pop(chunk_id, None) is not None:  # deleted behind our back
                    self._removed.add(chunk_id)
            raise FsError(errno.ENOENT, f"chunk {chunk_id} is not on this keeper") from None
        except OSError as e:
            if e.errno == errno.EIO:  # (its disk cannot read its inode: as damaged as a bad block)
                raise CorruptChunk(f"chunk {chunk_id}: its disk cannot open it ({e.strerror})") from None
            raise

    def open_chunk(self, chunk_id: str, offset: int = 0, length: int = 0) -> tuple[Header, Iterator[Piece]]:
        """The chunk's header, and its verified, block-aligned pieces covering [offset, offset +
        length) (length 0: to the end), from one open of the file.

        The pieces raise CorruptChunk on the first block that fails its checksum (the caller
        reports it); a bad header raises it here.
        """
        chunk = self._open(chunk_id)
        if offset > chunk.header.length:
            chunk.close()
            raise FsError(errno.EINVAL, f"offset {offset} is past the chunk's end ({chunk.header.length})")
        return chunk.header, chunk.stream(offset, length)

    def read(self, chunk_id: str, offset: int = 0, length: int = 0) -> Iterator[Piece]:
        """open_chunk's pieces alone."""
        return self.open_chunk(chunk_id, offset, length)[1]

    def verify(self, chunk_id: str, expected: tuple[int, int] | None = None) -> bool:
        """Reads the whole chunk and checks every block and the chunk checksum; and, given the
        (length, crc) the master knows the chunk by, that its header says those."""
        try:
            info, pieces = self.open_chunk(chunk_id)
            if expected is not None and (info.length, info.crc) != expected:
                return False  # (the pieces unread, their file is closed as they go)
            running = 0
            for piece in pieces:
                running = crc32c(piece.data, running)
            if running != info.crc:
                raise CorruptChunk(f"chunk {chunk_id}: chunk checksum mismatch")
            return True
        except CorruptChunk:
            return False

    # --- bookkeeping ---------------------------------------------------------------------------

    def has(self, chunk_id: str) -> bool:
        with self._lock:
            return chunk_id in self._sizes

    def chunk_ids(self) -> list[str]:
        with self._lock:
            return list(self._sizes)

    def full_report(self) -> list[str]:
        """Every chunk held, and a fresh start for the change log (the report supersedes it)."""
        with self._lock:
            self._added.clear()
            self._removed.clear()
            return list(self._sizes)

    def drain_changes(self) -> tuple[list[str], list[str]]:
        with self._lock:
            added, removed = list(self._added), list(self._removed)
            self._added.clear()
            self._removed.clear()
            return added, removed

    def restore_changes(self, added: list[str], removed: list[str]) -> None:
        """Puts back changes a heartbeat failed to deliver (newer changes win)."""
        with self._lock:
            for c in added:
                if c in self._sizes and c not in self._removed:
                    self._added.add(c)
            for c in removed:
                if c not in self._sizes and c not in self._added:
                    self._removed.add(c)

    def used_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def capacity_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize

    def free_bytes(self) -> int:
        """Room for new chunks: the disk's free space less the reserve, and what damaged copies
        take (_make_room)."""
        return self._disk_free() + sum(size for _, _, size in self._damaged())

    def _disk_free(self) -> int:
        st = os.statvfs(self.root)
        return max(0, st.f_bavail * st.f_frsize - self.reserve_bytes)

    def probe(self) -> None:
        """Writes and fsyncs a few bytes in the data folder, timed by the watch: a disk that
        stops answering is noticed while no chunk is written. (Overwritten in place: no space
        is taken, so a full disk answers the probe too.)"""
        with self.watch.op():
            fd = os.open(self.root / PROBE_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                pwrite_all(fd, struct.pack("<d", time.time()), 0)
                os.fdatasync(fd)
            finally:
                os.close(fd)
