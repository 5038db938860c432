"""pyfuse3 handlers: thin translations between kernel requests and the cluster.

Every handler runs inside `translate_errors`: an FsError becomes FUSEError(errno), anything
else is logged and becomes EIO. Nothing else may escape, or the whole mount stops answering.
Its calls to the cluster share one deadline (`one_deadline`): a cluster out of reach fails a
request after about --wait, however many calls it makes.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import os
import socket
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pyfuse3
import trio
from prometheus_client import Counter, Histogram

from fusedfs import __version__
from fusedfs.client.master import MasterClient, one_deadline
from fusedfs.client.transfer import ChunkTransfer
from fusedfs.errors import FsError
from fusedfs.metrics import LATENCY_BUCKETS, Gauge
from fusedfs.mount.blocking import call_master, read_parts, run, start_background
from fusedfs.mount.cache import ChunkCache, ChunkLoader
from fusedfs.mount.chunkmap import WINDOW
from fusedfs.mount.dircache import DirCache, WholeListing
from fusedfs.mount.openfile import MountShared, OpenFile
from fusedfs.mount.writeback import WriteBack
from fusedfs.names import RENAME_EXCHANGE, validate_name_length, validate_xattr_name, xattr_listed_to
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import master_pb2 as mp

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
BLOCK = 512
READDIR_PAGE = 500
OPENDIR_PAGE = 128  # entries opendir fetches for the first readdir (not too many: some only fsync)
LISTING_PAGES = 10  # a folder listed for the name cache: at most this many pages of READDIR_PAGE
SESSION_INTERVAL = 1.0  # seconds between the mount's heartbeats to the master
FETCH_AHEAD_FILES = 8  # small files fetched ahead of a reader going through a folder in order
RESERVE_AHEAD = 32  # at most this many chunk ids for small files reserved per master call
SEEN_MAX = 100_000  # files whose state at their last close is kept (for the kernel's page cache)
# Nodes whose attributes, as a reply gave them, are kept for the attribute timeout: files closed
# (or renamed) here lately, and folders listed or changed here lately.
FRESH_ATTRS_MAX = 10_000
GONE_FOLDER = 0  # opendir's handle for a folder removed while open (a program's cwd): it lists empty
GONE_AGAIN = 1.0  # seconds within which an opendir of a removed folder is the kernel's retry of one
GONE_KEPT = 60.0  # seconds a folder found removed while open is answered for as such
# Errors with which the master refuses a change before making any, that say nothing against the
# names this mount knows a folder has (git's rmdir of each folder of loose objects, ENOTEMPTY,
# ended its knowledge of .git/objects; EEXIST and ENOENT do say something, and EIO may come
# after the change was made).
REFUSALS = frozenset(
    {errno.ENOTEMPTY, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS, errno.EDQUOT}
    | {errno.ENOSPC, errno.ENAMETOOLONG, errno.EINVAL, errno.EXDEV, errno.EMLINK}
)


# The mount's metrics (served with `fusedfs mount --metrics HOST:PORT`).
REQUEST_SECONDS = Histogram(
    "fusedfs_mount_request_seconds", "requests from the kernel, by operation", ["op"], buckets=LATENCY_BUCKETS
)
REQUEST_ERRORS = Counter(
    "fusedfs_mount_errors", "requests answered with an error, by operation and errno", ["op", "errno"]
)
BYTES = Counter("fusedfs_mount_bytes", "bytes programs read and wrote through the mount", ["direction"])
READ_BYTES, WRITTEN_BYTES = BYTES.labels("read"), BYTES.labels("written")


@dataclass
class HeldPage:
    """A page of a folder's listing that the kernel has not taken whole yet: opendir's first
    page, or one whose rest did not fit the kernel's reply buffer (each readdir of a big folder
    fetched a page of its own: 258 pages for 100,000 entries, where 201 hold them). Handed out
    only while younger than the attribute timeout, for what is left of it."""

    offset: int  # the readdir offset that goes on with it
    reply: mp.ReadDirReply
    next: int  # its next entry
    fetched: float  # when it was asked for (its attributes are as old)
    whole: WholeListing | None  # the listing from the start that it is part of


@dataclass
class OpenFolder:
    """A folder open for listing (opendir's handle)."""

    inode: int
    end: int | None = None  # where its last listing ended: a readdir from there lists nothing
    held: HeldPage | None = None


def translate_errors(handler: F) -> F:
    name = handler.__name__
    observe = REQUEST_SECONDS.labels(name).observe

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        failed = ""
        try:
            with one_deadline(args[0].master.wait):  # (its calls to the cluster wait about --wait in all)
                return await handler(*args, **kwargs)
        except pyfuse3.FUSEError as e:
            failed = errno.errorcode.get(e.errno, str(e.errno))
            raise
        except FsError as e:
            failed = errno.errorcode.get(e.errno, str(e.errno))
            raise pyfuse3.FUSEError(e.errno) from None
        except Exception:
            log.exception("%s failed", name)
            failed = "EIO"
            raise pyfuse3.FUSEError(errno.EIO) from None
        finally:
            elapsed = time.perf_counter() - started
            observe(elapsed)
            if failed:
                REQUEST_ERRORS.labels(name, failed).inc()
            if log.isEnabledFor(logging.DEBUG):  # `fusedfs -v mount`: every request, its time and its error
                shown = ", ".join(repr(a) for a in args[1:3] if isinstance(a, int | bytes))  # (not objects)
                log.debug("%s(%s) %.2f ms%s", name, shown, elapsed * 1e3, f" {failed}" if failed else "")

    return wrapper  # type: ignore[return-value]


def keep_fresh(kept: dict[int, tuple[mp.Attr, float]], inode: int, attr: mp.Attr, at: float, timeout: float) -> None:
    """Keeps a node's attributes as a reply gave them at `at` (time.monotonic()) in `kept` for
    `timeout` seconds, the oldest let go first, and never more than FRESH_ATTRS_MAX (those still
    kept in the order they came, so nearly in time order)."""
    now = time.monotonic()
    kept.pop(inode, None)
    if now - at < timeout:
        kept[inode] = (attr, at)
    while kept:
        oldest = next(iter(kept))
        if len(kept) <= FRESH_ATTRS_MAX and now - kept[oldest][1] < timeout:
            break
        del kept[oldest]


def clamped_ns(ns: int) -> int:
    """A time as the master keeps it: nanoseconds in 64 bits (1677 to 2262). One outside is set
    to the nearest end, as ext4 clamps to its own range (`touch -d 2300-01-01` failed EIO)."""
    return min(max(ns, -(2**63)), 2**63 - 1)


class Operations(pyfuse3.Operations):  # type: ignore[misc]
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(
        self,
        master: MasterClient,
        session_id: str,
        writeback: WriteBack,
        attr_timeout: float = 1.0,
        cache_bytes: int = 80 << 20,
        negative_timeout: float = 0.0,
        short_circuit: bool = True,
        mount_point: str = "",
    ) -> None:
        super().__init__()
        self.master = master
        self.attr_timeout = attr_timeout
        self.negative_timeout = negative_timeout
        transfer = ChunkTransfer(master, reserve_ahead=RESERVE_AHEAD, short_circuit=short_circuit)
        chunks = ChunkLoader(
            ChunkCache(cache_bytes),
            lambda inode, ref: read_parts(transfer, inode, ref),
            trio.CapacityLimiter(4),
        )
        self.shared = MountShared(
            master, transfer, chunks, writeback, trio.CapacityLimiter(4), DirCache(ttl=attr_timeout)
        )
        self.dircache = self.shared.dircache
        # Folders' attributes as our own changes in them, or a listing, left them: the kernel
        # asks right after (keep_fresh: for the attribute timeout).
        self.folder_attrs: dict[int, tuple[mp.Attr, float]] = {}
        self.open_files: dict[int, OpenFile] = {}
        self.handles: dict[int, tuple[int, int]] = {}  # fh -> (inode, open flags)
        self.next_fh = 1
        self.seen: dict[int, tuple[int, int]] = {}  # inode -> (mtime, size) when last closed here
        # inode -> (attributes, when the master gave them) of files closed here lately: a program
        # that stats a file it has just written (rsync, pip) asked the master each time.
        self.closed_attrs: dict[int, tuple[mp.Attr, float]] = {}
        self.told_sizes: dict[int, int] = {}  # inode -> the size the kernel was last told (SEEN_MAX of them)
        # inode -> (when an opendir found it removed, whether it was open all the same)
        self.gone_folders: dict[int, tuple[float, bool]] = {}
        self.open_folders: dict[int, OpenFolder] = {}  # opendir's handles
        self.nursery: trio.Nursery | None = None
        self.session_id = session_id
        self.announced: frozenset[int] | None = None  # the open files the master last heard of
        self.host, self.mount_point, self.mounted_ns = socket.gethostname(), mount_point, time.time_ns()
        self.failed_saves = 0  # closes and fsyncs that failed
        # When a change of ours last began or ended (time.monotonic()): an open file's attributes
        # taken from the master before it may be out of date (a link count, a mode).
        self.last_change = 0.0
        self.initialized = trio.Event()  # the kernel's FUSE_INIT has been answered (or is being)

    def gauges(self) -> Iterator[Gauge]:
        """The mount's state, for its metrics."""
        writeback, cache = self.shared.writeback, self.shared.chunks.cache
        yield "fusedfs_mount_writeback_bytes", "written data waiting for upload", writeback.used, {}
        yield "fusedfs_mount_writeback_limit_bytes", "written data the mount holds at most", writeback.limit, {}
        yield "fusedfs_mount_cache_bytes", "chunk data in the read cache", cache.size, {}
        yield "fusedfs_mount_open_files", "files programs have open through the mount", len(self.open_files), {}
        yield "fusedfs_mount_failed_saves", "closes and fsyncs that failed since it was mounted", self.failed_saves, {}

    def init(self) -> None:
        self.initialized.set()

    @contextlib.contextmanager
    def _changing(
        self,
        names: Iterable[tuple[int, bytes]] = (),
        inodes: Iterable[int] = (),
        folders: Iterable[int] = (),
        added: tuple[int, bytes] | None = None,
        removed: tuple[int, bytes] | None = None,
    ) -> Iterator[dict[int, tuple[int, int]]]:
        """Around a change on the master: the names and inodes it touches leave the name cache,
        before (so no lookup is answered from them meanwhile) and after (a listing taken while
        the change was under way may predate it).

        A folder known whole (dircache) that the change touches (the parents of `names`, and
        `folders`) stays so if the caller puts in the dict yielded, for that folder, the proof
        from the master's reply: its ctime just before the change and after it. `added` and
        `removed`: the name the change added and removed, (folder, name)."""
        names, inodes = list(names), list(inodes)
        touched = list(dict.fromkeys([parent for parent, _ in names] + list(folders)))
        began = [self.dircache.begin_change(folder) for folder in touched]
        proofs: dict[int, tuple[int, int]] = {}
        refused = False
        try:
            self._forget(names, inodes)
            self.last_change = time.monotonic()
            try:
                yield proofs
            finally:
                self._forget(names, inodes)
                self.last_change = time.monotonic()
        except FsError as e:
            refused = e.errno in REFUSALS
            raise
        finally:
            for folder, folder_began in zip(touched, began, strict=True):
                self.dircache.end_change(
                    folder,
                    folder_began,
                    2 * sum(parent == folder for parent, _ in names),  # (_forget's forget_name calls there)
                    proofs.get(folder),
                    added=added[1] if added is not None and added[0] == folder else None,
                    removed=removed[1] if removed is not None and removed[0] == folder else None,
                    refused=refused,
                )

    def _forget(self, names: list[tuple[int, bytes]], inodes: list[int]) -> None:
        for parent, name in names:
            self.dircache.forget_name(parent, name)
            self.folder_attrs.pop(parent, None)
        for inode in inodes:
            self.dircache.forget_inode(inode)
            self.folder_attrs.pop(inode, None)

    async def call(self, method: str, request: Any) -> Any:
        return await call_master(self.master, method, request)

    # --- attributes ------------------------------------------------------------------------------

    def entry(self, attr: mp.Attr, timeout: float | None = None) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = attr.inode
        entry.generation = 0
        entry.entry_timeout = entry.attr_timeout = self.attr_timeout if timeout is None else timeout
        entry.st_mode = attr.mode
        entry.st_nlink = attr.nlink
        entry.st_uid = attr.uid
        entry.st_gid = attr.gid
        entry.st_rdev = attr.rdev
        open_file = self.open_files.get(attr.inode)
        size = open_file.size if open_file is not None else attr.size
        entry.st_size = size
        self.told_sizes.pop(attr.inode, None)  # (to the end: the oldest go first)
        self.told_sizes[attr.inode] = size
        if len(self.told_sizes) > SEEN_MAX:
            del self.told_sizes[next(iter(self.told_sizes))]
        entry.st_blksize = 128 * 1024
        entry.st_blocks = -(-self._stored(attr, open_file, size) // BLOCK)
        entry.st_atime_ns = attr.atime_ns
        entry.st_mtime_ns = attr.mtime_ns
        entry.st_ctime_ns = attr.ctime_ns
        if open_file is not None and open_file.written_ns is not None and open_file.written_ns > attr.mtime_ns:
            entry.st_mtime_ns = entry.st_ctime_ns = open_file.written_ns  # our writes, not yet committed
        self.dircache.xattrs.saw(attr, entry.attr_timeout)
        return entry

    @staticmethod
    def _stored(attr: mp.Attr, open_file: OpenFile | None, size: int) -> int:
        """Bytes of the file that take room: what its chunks hold, as the master says (holes take
        none), unless this mount has changes the master has not seen yet; then all of it, as a
        sparse file that is not really one costs a copier only a scan for zeros, while one that
        looks emptier than it is can be archived as holes (tar --sparse takes 0 blocks for
        all-hole)."""
        if not attr.HasField("stored_bytes"):
            return size
        if open_file is not None and (not open_file.clean() or open_file.size != attr.size):
            return size
        return min(attr.stored_bytes, size)

    @translate_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        validate_name_length(name)  # (as the master does: before a name known missing is answered here)
        cached = self.dircache.get(parent_inode, name)
        if cached is None and (left := await self._known_missing(parent_inode, name)):
            return self._missing(left)
        if cached is None and self.dircache.worth_listing(parent_inode):
            await self._list(parent_inode)
            cached = self.dircache.get(parent_inode, name)
            if cached is None and (left := self.dircache.known_missing(parent_inode, name, self.negative_timeout)):
                return self._missing(left)
        if cached is not None:
            attr, left = cached
            self._saw(attr)
            return self.entry(attr, timeout=left)  # never older than attr_timeout in all
        try:
            attr = await self.call("Lookup", mp.EntryRequest(parent=parent_inode, name=name))
            self._saw(attr)
            return self.entry(attr)
        except FsError as e:
            if e.errno != errno.ENOENT or not self.negative_timeout:
                raise
        self.dircache.found_missing(parent_inode, name)
        return self._missing(self.negative_timeout)

    async def _known_missing(self, parent: int, name: bytes) -> float:
        """For how long the kernel may remember that the folder has no such name, answered
        without a lookup: from its names known whole, proved again by the folder's attributes
        when the last proof is older than the negative timeout (0: ask the master)."""
        if not self.negative_timeout:
            return 0.0
        left = self.dircache.known_missing(parent, name, self.negative_timeout)
        if not left and self.dircache.unproved_missing(parent, name):
            await self._folder_attr(parent)
            left = self.dircache.known_missing(parent, name, self.negative_timeout)
        return left

    async def _folder_attr(self, inode: int) -> mp.Attr:
        """A GetAttr that also proves a folder's names known here (or ends that knowledge)."""
        fetched = self.dircache.clock()
        attr = await self.call("GetAttr", mp.InodeRequest(inode=inode))
        if stat.S_ISDIR(attr.mode):
            self.dircache.proved_unchanged(inode, attr.ctime_ns, fetched)
        return attr

    def _missing(self, timeout: float) -> pyfuse3.EntryAttributes:
        missing = pyfuse3.EntryAttributes()  # inode 0: the kernel remembers the name is missing
        missing.st_ino = 0
        missing.entry_timeout = timeout
        return missing

    async def _list(self, parent: int) -> None:
        """Fills the name cache with a folder's first pages (many lookups there are coming),
        and remembers their order with the small files' chunks (for reading ahead)."""
        after = 0
        order: list[tuple[bytes, int, mp.ChunkRef | None]] = []
        chunks = self.dircache.files_opened_lately()
        whole = WholeListing(self.dircache, parent)
        for _ in range(LISTING_PAGES):
            reply, _ = await self._read_dir_page(parent, after, READDIR_PAGE, whole, with_small_chunks=chunks)
            for e in reply.entries:
                order.append((e.name, e.attr.inode, e.small_chunk if e.HasField("small_chunk") else None))
            if not reply.more or not reply.entries:
                whole.complete()
                break
            after = reply.entries[-1].cursor
        else:
            self.dircache.listed_in_part(parent)
        self.dircache.remember_order(parent, order)

    @translate_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        known = self.folder_attrs.pop(inode, None)
        if known is not None:
            attr, when = known
            left = self.attr_timeout - (time.monotonic() - when)
            if left > 0:
                return self.entry(attr, timeout=left)
        # A file open here, or closed here lately, whose attributes came from the master within
        # the attribute timeout and no change of ours since: what the kernel would have cached,
        # but its writes made it ask again (`tar x` sets the owner of each file it has just
        # written: the kernel first asks for its mode; rsync stats each file it has written: a
        # master call per file). Size and mtime of a file open are ours (entry).
        open_file = self.open_files.get(inode)
        taken = (open_file.attr, open_file.attr_at) if open_file is not None else self.closed_attrs.pop(inode, None)
        if taken is not None and taken[1] > self.last_change:
            left = self.attr_timeout - (time.monotonic() - taken[1])
            if left > 0:
                return self.entry(taken[0], timeout=left)
        try:
            attr = await self._folder_attr(inode)
        except FsError as e:
            if e.errno == errno.ENOENT and self.gone_folders.get(inode, (0, False))[1]:
                # A removed folder still open (opendir's fstat): as Linux's, with no links left
                # (its other attributes are gone with it on the master).
                now = time.time_ns()
                return self.entry(
                    mp.Attr(
                        inode=inode,
                        mode=stat.S_IFDIR | 0o755,
                        nlink=0,
                        uid=ctx.uid,
                        gid=ctx.gid,
                        atime_ns=now,
                        mtime_ns=now,
                        ctime_ns=now,
                    )
                )
            raise
        self._saw(attr)
        return self.entry(attr)

    def _saw(self, attr: mp.Attr) -> None:
        """The master's attributes of a node, from a reply: of a file open here, what another
        mount changed in it is taken (its size, its chunks), unless we have changes of our own.
        (Else the size the open file had stood for every lookup and open here while a program
        kept it open: a fresh `wc -c` or `tail` of a log another mount appends to read the old
        length.)"""
        open_file = self.open_files.get(attr.inode)
        if open_file is not None:
            open_file.seen(attr)

    @translate_errors
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        request = mp.SetAttrRequest(inode=inode)
        if fields.update_mode:
            request.mode = stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            request.uid = attr.st_uid
        if fields.update_gid:
            request.gid = attr.st_gid
        if fields.update_atime:
            request.atime_ns = clamped_ns(attr.st_atime_ns)
        if fields.update_mtime:
            request.mtime_ns = clamped_ns(attr.st_mtime_ns)
        if fields.update_size:
            request.size = attr.st_size
        open_file = self.open_files.get(inode)
        if open_file is not None and (fields.update_size or fields.update_mtime):
            # Buffered data first: then it is cut, or its time is the one set (`cp -a` sets the
            # source's before it closes; committed after, the data would take the time it was written).
            await open_file.flush(self._nursery())
        # A folder known whole stays so (rsync sets each one's mode).
        with self._changing(inodes=[inode], folders=[inode]) as proofs:
            result = await self.call("SetAttr", request)
            proofs[inode] = (result.ctime_before_ns, result.ctime_ns)
        if open_file is not None:
            if fields.update_size:
                open_file.truncated(result)
            if fields.update_mtime:
                open_file.written_ns = None  # (all committed: the time set is the file's)
                open_file.took(result)
        return self.entry(result)

    @translate_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        reply = await self.call("StatFs", cp.Empty())
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_blocks = reply.capacity_bytes // 4096
        data.f_bfree = data.f_bavail = reply.free_bytes // 4096
        data.f_files = reply.files + 1_000_000
        data.f_ffree = data.f_favail = 1_000_000
        data.f_namemax = 255
        return data

    # --- directories -----------------------------------------------------------------------------

    @translate_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        # Its first page, for the first readdir (a listing is one master call, not two): the
        # master answers ENOENT for a folder gone, ENOTDIR for a file.
        whole = WholeListing(self.dircache, inode)
        try:
            first, fetched = await self._read_dir_page(inode, 0, OPENDIR_PAGE, whole)
        except FsError as e:
            if e.errno == errno.ENOENT:
                return self._gone_folder(inode)
            raise
        fh = self.next_fh
        self.next_fh += 1
        self.open_folders[fh] = OpenFolder(inode, held=HeldPage(0, first, 0, fetched, whole))
        return fh

    async def _read_dir_page(
        self, inode: int, after: int, limit: int, whole: WholeListing | None = None, with_small_chunks: bool = False
    ) -> tuple[mp.ReadDirReply, float]:
        """A page of a folder's entries into the name cache (and the listing `whole`), and when
        it was asked for; the folder's ctime it comes with proves the names known of it."""
        generation, fetched = self.dircache.generation, self.dircache.clock()
        request = mp.ReadDirRequest(inode=inode, after=after, limit=limit, with_small_chunks=with_small_chunks)
        reply: mp.ReadDirReply = await self.call("ReadDir", request)
        self.dircache.fill(inode, ((e.name, e.attr) for e in reply.entries), fetched, generation)
        folder = reply.folder if reply.HasField("folder") else None
        if whole is not None:
            whole.page((e.name for e in reply.entries), folder)
        if folder is not None:
            self.dircache.proved_unchanged(inode, folder.ctime_ns, fetched)
            if generation == self.dircache.generation:  # (else a change of ours may postdate them)
                # (`rm -r` and `find` fstat each folder they open)
                keep_fresh(self.folder_attrs, inode, folder, fetched, self.attr_timeout)
        return reply, fetched

    async def releasedir(self, fh: int) -> None:
        self.open_folders.pop(fh, None)

    def _gone_folder(self, inode: int) -> int:
        """An opendir of a folder removed since the kernel learnt it. First, ESTALE: the name
        that led here may have been removed (or made anew) on another mount, and the kernel looks
        it up again past its cache (LOOKUP_REVAL), and fails ENOENT or opens the folder it names
        now. Asked again at once for the same folder, the kernel had no name to look up: the
        folder is a program's current directory (or an open one), which lists empty, as on
        Linux (`cd gone && rmdir ../gone && ls` failed ENOENT)."""
        now = time.monotonic()
        self.gone_folders = {i: gone for i, gone in self.gone_folders.items() if now - gone[0] < GONE_KEPT}
        when, still_open = self.gone_folders.get(inode, (-math.inf, False))
        if still_open or now - when < GONE_AGAIN:
            self.gone_folders[inode] = (now, True)
            return GONE_FOLDER
        self.gone_folders[inode] = (now, False)
        self.dircache.forget_inode(inode)
        raise FsError(errno.ESTALE, f"folder {inode} is gone")

    @translate_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        folder = self.open_folders.get(fh)
        if folder is None or start_id == folder.end:  # (a folder gone while open lists empty)
            return
        inode = folder.inode
        held, folder.held = folder.held, None
        if held is not None and (held.offset != start_id or time.monotonic() - held.fetched >= self.attr_timeout):
            held = None  # (elsewhere, or too old to hand its attributes to the kernel)
        # Offsets: 1 after ".", 2 after "..", then the master's entry cursors shifted by 2.
        offset = start_id
        # (a listing from the start makes the folder known whole)
        whole = held.whole if held is not None else WholeListing(self.dircache, inode) if start_id == 0 else None
        while True:
            if held is None:
                reply, fetched = await self._read_dir_page(inode, max(0, offset - 2), READDIR_PAGE, whole)
                held = HeldPage(offset, reply, 0, fetched, whole)
            reply = held.reply
            left = max(0.0, self.attr_timeout - (time.monotonic() - held.fetched))  # (never older in all)
            if offset == 0:
                if not self._dot_entry(token, b".", inode, 1):
                    folder.held = held
                    return
                offset = 1
            if offset == 1:
                if not self._dot_entry(token, b"..", reply.parent, 2):
                    held.offset, folder.held = 1, held
                    return
                offset = 2
            for i in range(held.next, len(reply.entries)):
                entry = reply.entries[i]
                if not pyfuse3.readdir_reply(token, entry.name, self.entry(entry.attr, timeout=left), entry.cursor + 2):
                    held.offset, held.next, folder.held = offset, i, held
                    return
                offset = entry.cursor + 2
            if not reply.more:
                if whole is not None:
                    whole.complete()
                # The kernel asks once more, from past the last entry, to learn that none
                # follow: answered here, as the end of this listing (POSIX leaves names added
                # after opendir or rewinddir unspecified). One ReadDir less for each folder
                # listed (`ls`, `find`, `du`, `git status`).
                folder.end = offset
                return
            held = None

    def _dot_entry(self, token: pyfuse3.ReaddirToken, name: bytes, inode: int, next_id: int) -> bool:
        """ "." or "..": the kernel uses only the inode number and type of these."""
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.st_mode = stat.S_IFDIR | 0o755
        return bool(pyfuse3.readdir_reply(token, name, attr, next_id))

    @translate_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        request = mp.MakeNodeRequest(parent=parent_inode, name=name, mode=mode, uid=ctx.uid, gid=ctx.gid)
        attr = await self._add_name("MakeDir", request, parent_inode, name)
        self.dircache.made_folder(attr)
        return self.entry(attr)

    async def _add_name(
        self, method: str, request: Any, parent: int, name: bytes, inodes: Iterable[int] = ()
    ) -> mp.Attr:
        """A master call that adds a name to a folder; returns the node it names."""
        with self._changing(names=[(parent, name)], inodes=inodes, added=(parent, name)) as proofs:
            reply = await self.call(method, request)
            proofs[parent] = (reply.folder_ctime_before_ns, reply.folder.ctime_ns)
        self._folder_changed(parent, reply.folder)
        return reply.attr  # type: ignore[no-any-return]

    def _folder_changed(self, folder: int, attr: mp.Attr) -> None:
        """Keeps a folder's attributes after our change: the kernel asks for them right after."""
        keep_fresh(self.folder_attrs, folder, attr, time.monotonic(), self.attr_timeout)

    @translate_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self._remove_name("RemoveDir", parent_inode, name)

    @translate_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.announce_if_changed()  # so that a file we have open outlives its last name
        await self._remove_name("Unlink", parent_inode, name)

    async def _remove_name(self, method: str, parent: int, name: bytes) -> None:
        """A master call that removes a name from a folder (a folder known whole stays so if the
        reply proves ours the only change: an editor's probe file, a build's clean)."""
        with self._changing(names=[(parent, name)], removed=(parent, name)) as proofs:
            folder = await self.call(method, mp.EntryRequest(parent=parent, name=name))
            proofs[parent] = (folder.ctime_before_ns, folder.ctime_ns)
        self._folder_changed(parent, folder)

    @translate_errors
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        await self.announce_if_changed()  # a replaced file we have open stays readable
        request = mp.RenameRequest(
            parent=parent_inode_old, name=name_old, new_parent=parent_inode_new, new_name=name_new, flags=flags
        )
        # Each folder stays known whole (dircache) if the reply proves ours the only change. An
        # exchange leaves both names where they were.
        moved = not flags & RENAME_EXCHANGE
        old, new = (parent_inode_old, name_old), (parent_inode_new, name_new)
        with self._changing(names=[old, new], added=new if moved else None, removed=old if moved else None) as proofs:
            reply = await self.call("Rename", request)
            if reply.HasField("folder"):  # (a master before RenameReply answers Empty: no proof)
                # (One folder: both are the same, taken in one transaction.)
                proofs[parent_inode_old] = (reply.folder_ctime_before_ns, reply.folder.ctime_ns)
                proofs[parent_inode_new] = (reply.new_folder_ctime_before_ns, reply.new_folder.ctime_ns)
        if reply.HasField("folder"):
            self._folder_changed(parent_inode_old, reply.folder)
            self._folder_changed(parent_inode_new, reply.new_folder)
        if reply.HasField("node") and reply.node.inode not in self.open_files:
            # The kernel asks for the node's attributes again (its ctime moved): pip, editors
            # and rsync write a file under a temporary name, rename it into place, and stat it.
            keep_fresh(self.closed_attrs, reply.node.inode, reply.node, time.monotonic(), self.attr_timeout)

    @translate_errors
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        request = mp.LinkRequest(inode=inode, new_parent=new_parent_inode, new_name=new_name)
        return self.entry(await self._add_name("Link", request, new_parent_inode, new_name, inodes=[inode]))

    @translate_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        request = mp.SymlinkRequest(parent=parent_inode, name=name, target=target, uid=ctx.uid, gid=ctx.gid)
        return self.entry(await self._add_name("Symlink", request, parent_inode, name))

    @translate_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        request = mp.MakeNodeRequest(parent=parent_inode, name=name, mode=mode, uid=ctx.uid, gid=ctx.gid, rdev=rdev)
        return self.entry(await self._add_name("MakeSpecial", request, parent_inode, name))

    @translate_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return (await self.call("ReadLink", mp.InodeRequest(inode=inode))).target  # type: ignore[no-any-return]

    # --- files -----------------------------------------------------------------------------------

    def _nursery(self) -> trio.Nursery:
        assert self.nursery is not None, "the mount's background nursery is not running"
        return self.nursery

    def _register(self, attr: mp.Attr, flags: int) -> pyfuse3.FileInfo:
        open_file = self.open_files.get(attr.inode)
        if open_file is None:
            open_file = OpenFile.from_attr(attr, self.shared)
            self.open_files[attr.inode] = open_file
            self.closed_attrs.pop(attr.inode, None)  # (its next close, if it saves, says anew)
        open_file.handles += 1
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = (attr.inode, flags)
        # Keep the kernel's cached pages only if nothing changed since this mount last closed it.
        unchanged = self.seen.get(attr.inode) == (attr.mtime_ns, attr.size)
        return pyfuse3.FileInfo(fh=fh, keep_cache=unchanged and open_file.handles == 1)

    @translate_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        request = mp.MakeNodeRequest(
            parent=parent_inode, name=name, mode=mode, uid=ctx.uid, gid=ctx.gid, exclusive=bool(flags & os.O_EXCL)
        )
        attr = await self._add_name("CreateFile", request, parent_inode, name)
        if flags & os.O_TRUNC and attr.size:
            with self._changing(inodes=[attr.inode]):
                attr = await self.call("SetAttr", mp.SetAttrRequest(inode=attr.inode, size=0))
        return self._register(attr, flags), self.entry(attr)

    @translate_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        open_file = self.open_files.get(inode)
        if flags & os.O_TRUNC:
            if open_file is not None:
                await open_file.flush(self._nursery())
            with self._stale_name_checked(inode), self._changing(inodes=[inode]):
                # (its times change even when it is empty already, as Linux's do: `: > stamp` for make)
                request = mp.SetAttrRequest(inode=inode, size=0, mtime_now=True, named=open_file is None)
                attr = await self.call("SetAttr", request)
            if open_file is not None:
                open_file.truncated(attr)
            if stat.S_ISDIR(attr.mode):
                raise FsError(errno.EISDIR)
            return self._register(attr, flags)
        # The chunk list comes with the attributes: a read after open needs no second call.
        generation = self.dircache.generation  # bumped by every change this mount makes
        reply = await self.call("GetChunks", mp.GetChunksRequest(inode=inode, count=WINDOW))
        if reply.attr.nlink == 0 and open_file is None:
            with self._stale_name_checked(inode):
                raise FsError(errno.ESTALE, f"inode {inode} has no name any more")
        self._saw(reply.attr)  # (open here already: as it is now, close-to-open)
        size = open_file.size if open_file is not None else reply.attr.size
        if self.told_sizes.get(inode, size) != size:
            # Another mount changed its size since the kernel was told one, which it keeps for the
            # attribute timeout and reads stop at: appended lines did not show on a fresh open. It
            # asks again. (Attributes alone: nothing waits on that, so it is safe from a handler.)
            pyfuse3.invalidate_inode(inode, attr_only=True)
        # Usable only if no file of ours changed meanwhile (the reply might predate that change).
        fresh = inode not in self.open_files and generation == self.dircache.generation
        info = self._register(reply.attr, flags)
        if fresh:
            chunk_map = self.open_files[inode].chunk_map
            chunk_map.put(chunk_map.ask(0), list(reply.chunks))  # (a new map asks just that)
        self._fetch_ahead(inode)
        return info

    @contextlib.contextmanager
    def _stale_name_checked(self, inode: int) -> Iterator[None]:
        """Around an open that finds its file has no name left, though this mount does not have
        it open (an unlinked file it has open may be opened again, through /proc/PID/fd): the name
        that led there was removed or replaced on another mount since the kernel, or our name
        cache, learnt it (within the attribute timeout). ESTALE makes the kernel look the name up
        again (LOOKUP_REVAL: past its cache, and ours, which forgets the inode) and open what it
        names now, or fail ENOENT: git on one machine read the index another had just replaced,
        and wrote back a stale one."""
        try:
            yield
        except FsError as e:
            if e.errno == errno.ESTALE:
                self.dircache.forget_inode(inode)
            raise

    def _fetch_ahead(self, inode: int) -> None:
        """Opened in its folder's order after the file before it: the next few small files' chunks
        are fetched in the background, so that opening them finds their data here."""
        chunks = self.shared.chunks
        for ahead, ref in self.dircache.ahead(inode, FETCH_AHEAD_FILES):
            if chunks.wanted(ref.chunk_id):
                start_background(self._nursery(), chunks.prefetch, ahead, ref)

    def _file(self, fh: int) -> tuple[OpenFile, int]:
        inode, flags = self.handles[fh]
        return self.open_files[inode], flags

    @translate_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        open_file, _ = self._file(fh)
        data = await open_file.read(off, size, self._nursery())
        READ_BYTES.inc(len(data))
        return data

    @translate_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        open_file, flags = self._file(fh)
        append = bool(flags & os.O_APPEND)
        written = await open_file.write(off, buf, self._nursery(), append)
        WRITTEN_BYTES.inc(written)
        return written

    @translate_errors
    async def flush(self, fh: int) -> None:
        await self._save(fh)

    @translate_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self._save(fh)

    async def _save(self, fh: int) -> None:
        """What the file holds reaches the cluster (close, fsync); a failure is counted for status."""
        open_file, _ = self._file(fh)
        try:
            await open_file.flush(self._nursery())
        except FsError:
            self.failed_saves += 1
            raise

    @translate_errors
    async def release(self, fh: int) -> None:
        inode, _ = self.handles.pop(fh)
        open_file = self.open_files[inode]
        open_file.handles -= 1
        if open_file.handles:
            return
        saved = False
        try:
            await open_file.flush(self._nursery())  # normally a no-op: flush() came first
            saved = True
        finally:
            # Opened again while that flush waited (on a cluster out of reach: up to --wait), the
            # file stays as it is: forgetting it dropped the new handle's writes, and that
            # handle's close then committed the size they made without them (zeros).
            reopened = open_file.handles or self.open_files.get(inode) is not open_file
            if not reopened:
                del self.open_files[inode]
                open_file.forget()  # if the flush failed, close() has reported it
                if not saved:
                    # Its changes dropped unsaved, the kernel's cached pages of them must go too:
                    # an open that kept them read the lost changes where they were cached and the
                    # saved data elsewhere (SQLite: "database disk image is malformed", in a
                    # partition sweep). Not seen unchanged, the file's next open drops them.
                    self.seen.pop(inode, None)
                    # So must the size the kernel was told with them, which it keeps for the
                    # attribute timeout: a stat showed the lost bytes' size meanwhile.
                    with contextlib.suppress(OSError):  # (ENOENT: the kernel keeps nothing of it)
                        pyfuse3.invalidate_inode(inode, attr_only=True)
        if reopened:
            return
        self.seen.pop(inode, None)  # (to the end: the oldest go first)
        self.seen[inode] = (open_file.attr.mtime_ns, open_file.attr.size)
        if len(self.seen) > SEEN_MAX:
            del self.seen[next(iter(self.seen))]
        keep_fresh(self.closed_attrs, inode, open_file.attr, open_file.attr_at, self.attr_timeout)

    # --- extended attributes ---------------------------------------------------------------------

    @translate_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        validate_xattr_name(name)  # (`cp -a` sets system.posix_acl_access on every file: refused here)
        with self._changing(inodes=[inode]):  # (its ctime changes)
            await self.call("SetXattr", mp.SetXattrRequest(inode=inode, name=name, value=value))
        if inode in self.open_files:
            self.open_files[inode].attr.has_xattrs = True

    def _without_xattrs(self, inode: int) -> bool:
        """Known to have no extended attribute: the kernel asks for security.capability before
        every write, `ls -l` for every file's security.selinux; answered here, not by a call each."""
        open_file = self.open_files.get(inode)
        if open_file is not None and open_file.attr.HasField("has_xattrs") and not open_file.attr.has_xattrs:
            return True
        return self.dircache.xattrs.none(inode)

    @translate_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        validate_xattr_name(name)  # (the master's errors for a bad name, without asking it)
        if self._without_xattrs(inode):
            raise FsError(errno.ENODATA)
        return (await self.call("GetXattr", mp.XattrRequest(inode=inode, name=name))).value  # type: ignore[no-any-return]

    @translate_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        if self._without_xattrs(inode):
            return []
        names = (await self.call("ListXattr", mp.InodeRequest(inode=inode))).names
        return [name for name in names if xattr_listed_to(name, ctx.uid)]

    @translate_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        validate_xattr_name(name)
        with self._changing(inodes=[inode]):
            await self.call("RemoveXattr", mp.XattrRequest(inode=inode, name=name))

    # --- the mount's session with the master -------------------------------------------------------

    async def announce(self, ending: bool = False, wait: float | None = None) -> None:
        """Tells the master which files this mount has open (they outlive their last name)."""
        current = frozenset(self.open_files)
        info = mp.MountInfo(
            host=self.host,
            mount_point=self.mount_point,
            pid=os.getpid(),
            version=__version__,
            mounted_ns=self.mounted_ns,
            writeback_bytes=self.shared.writeback.used,
            failed_saves=self.failed_saves,
        )
        request = mp.MountSessionRequest(
            session_id=self.session_id, open_inodes=sorted(current), ending=ending, info=info
        )
        await call_master(self.master, "MountSession", request, wait)
        self.announced = current

    async def announce_if_changed(self) -> None:
        if frozenset(self.open_files) != self.announced:
            await self.announce()

    async def keep_session(self) -> None:
        """Runs for the life of the mount: the session's heartbeat, once a second; and chunk ids
        reserved for small files and left unused go back to the master."""
        while True:
            try:
                await self.announce(wait=SESSION_INTERVAL * 5)
                stale = self.shared.transfer.stale_reservations()
                if stale:
                    await run(self.shared.transfer.abandon, stale)
            except FsError as e:
                log.warning("cannot reach the master for the mount session: %s", e.message)
            await trio.sleep(SESSION_INTERVAL)

    async def flush_all(self) -> None:
        """Before unmounting: every open file's changes reach the cluster."""
        for open_file in list(self.open_files.values()):
            try:
                await open_file.flush(self._nursery())
            except FsError as e:
                log.error("could not save inode %d before unmounting: %s", open_file.inode, e.message)
