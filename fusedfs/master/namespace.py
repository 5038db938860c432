"""Namespace rules: what each file-system operation means, as Linux local file systems behave.

Works only through the MetadataStore interface, one transaction per operation (changes over a
whole tree: one per TREE_BATCH nodes), and has no network or cluster knowledge. Chunk life-cycle
changes (a chunk becoming part of a file, or garbage) are returned in `ChunkChanges` so the
caller can update its in-memory chunk index.
"""

from __future__ import annotations

import copy
import errno
import stat
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import astuple, dataclass, field, replace
from typing import TypeVar

from fusedfs.chunks import MAX_CHUNK_SIZE, MAX_GOAL, PIECE_SIZE, MiB, chunk_count
from fusedfs.errors import FsError
from fusedfs.master.sessions import SESSION_TIMEOUT
from fusedfs.master.store import ROOT_INODE, ChunkRow, ChunkState, Inode, MetadataStore, Quota, TrashRow, Usage
from fusedfs.names import PATH_MAX, RENAME_EXCHANGE, RENAME_NOREPLACE, split_path, validate_name, validate_xattr_name

T = TypeVar("T")

XATTR_CREATE = 1  # setxattr flags, as in <sys/xattr.h>
XATTR_REPLACE = 2
XATTR_SIZE_MAX = 64 * 1024
MAX_DEPTH = 4096  # folders a path is followed up through at most (PATH_MAX allows 2,048)
SMALL_FILE = PIECE_SIZE  # a file read with one unary call: worth fetching ahead
# A file whose last name goes is kept this long even when no mount says it has it open: a mount
# that opened it just before says so at its next announcement (every second), if that reaches
# the master. So that an open is kept as long as a mount's announced ones (held until the mount
# has been silent for SESSION_TIMEOUT), the grace is that long too.
ORPHAN_GRACE_NS = int(SESSION_TIMEOUT * 10**9)
# Nodes a change over a whole tree (goal -r, chunksize -r, a restore from the trash) changes per
# transaction: every other call waits for one batch, not the tree (200,000 files held them all
# 3 s; a restore of 100,000, 12 s). Each node's change stands alone, so a batch is whole or not
# made at all, and a tree changed halfway (a master killed meanwhile) is finished by asking again.
TREE_BATCH = 1_000
# Nodes of a tree a snapshot reads, links the chunks of and puts at a time (Namespace.read_tree):
# what it holds in memory (~1 KiB a node) whatever the tree's size.
SNAPSHOT_BATCH = 10_000
# Between two batches the store is left free this long: its lock is not fair, and taken again at
# once it kept other calls waiting to the end anyway (chunksize -r over 100,000 names: 0.67 s).
BATCH_PAUSE = 0.002
# Chunk ids are reserved (PENDING rows) ahead of the uploads that ask for them, this many a
# transaction: each is a fsync of the metadata, and a small overwrite (a database's commit)
# asked for one id of its own each time (1.6 ms of a 4 KiB write + fsync's 11-15).
ID_BATCH = 64
# Ids reserved longer ago are not handed out but let go: their row's time is the lease a
# restarted master gives the upload that has one (cluster.expired_pending).
ID_MAX_AGE_NS = 600 * 10**9


@dataclass
class ChunkChanges:
    """Chunk ids whose state an operation changed."""

    live: list[int] = field(default_factory=list)
    garbage: list[int] = field(default_factory=list)
    goals: dict[int, int] = field(default_factory=dict)  # live chunk -> its file's own goal, where it has one


@dataclass(frozen=True)
class GoalChange:
    """What setting a goal changed: how many files and folders, and each of their chunks' new
    goal (0: the cluster's)."""

    files: int
    folders: int
    chunks: dict[int, int]


@dataclass(frozen=True)
class Added:
    """What an operation that adds a name returns: the node it names and its folder, after the
    change, with the folder's ctime just before it. ctime grows with every change of an inode, so
    a client that last saw the folder at exactly that ctime knows nobody else changed it since
    (NFSv4's change_info does the same)."""

    node: Inode
    folder: Inode
    folder_ctime_before_ns: int


@dataclass(frozen=True)
class Listing:
    """A page of a folder's names: (cursor, name, node) each, whether more follow, the folder's
    parent, and the folder as it was when the page was read (its ctime: see Added)."""

    entries: list[tuple[int, bytes, Inode]]
    more: bool
    parent: int
    folder: Inode


@dataclass
class Renamed:
    """What a rename returns: the chunks it lets go (a file it replaced), and the folders the
    name left and went to (one folder, or two) after the change, each with its ctime just before
    it (see Added). A rename that changes nothing (two names of one file) leaves them as they were."""

    changes: ChunkChanges
    folder: Inode
    folder_ctime_before_ns: int
    new_folder: Inode
    new_folder_ctime_before_ns: int
    node: Inode | None = None  # the node renamed, after the change


@dataclass(frozen=True)
class TreeNode:
    """A name in a tree read for a snapshot (Namespace.read_tree): the node it names, as it
    was, its xattrs, and the live chunks of a file (of one with several names in the tree,
    with the first of them only)."""

    parent: int  # index of its folder among the tree's nodes (-1: the tree's top)
    name: bytes
    inode: Inode
    xattrs: list[tuple[bytes, bytes]]
    chunks: list[ChunkRow] = field(default_factory=list)


@dataclass(frozen=True)
class CommittedChunk:
    """A freshly written chunk going into slot `index` of a file."""

    index: int
    chunk_id: int
    length: int
    crc: int
    replaces: int | None = None  # commit only while the slot holds this chunk (0: none)


class Namespace:
    def __init__(
        self,
        store: MetadataStore,
        default_chunk_size: int,
        clock: Callable[[], int] = time.time_ns,
        is_open: Callable[[int], bool] = lambda ino: False,
        orphan_grace_ns: int = ORPHAN_GRACE_NS,
        trash_ns: int = 0,
    ) -> None:
        self.store = store
        self.default_chunk_size = default_chunk_size
        self.clock = clock
        self.is_open = is_open  # does some mount have this inode open (then its last unlink keeps it)
        self.orphan_grace_ns = orphan_grace_ns
        self.trash_ns = trash_ns  # how long a file whose last name went is kept (0: no trash)
        self._ids_lock = threading.Lock()
        self._ids: list[int] = []  # chunk ids reserved ahead (new_chunks), oldest first
        self._ids_made = 0  # when they were reserved

    # --- helpers ---------------------------------------------------------------------------------

    def _inode(self, ino: int) -> Inode:
        inode = self.store.get_inode(ino)
        if inode is None:
            raise FsError(errno.ENOENT, f"no inode {ino}")
        return inode

    def _dir(self, ino: int) -> Inode:
        inode = self._inode(ino)
        if not stat.S_ISDIR(inode.mode):
            raise FsError(errno.ENOTDIR, f"inode {ino} is not a directory")
        return inode

    def _touch(self, inode: Inode, now: int, mtime: bool = True) -> None:
        if mtime:
            inode.mtime_ns = now
        # Strictly growing, even if the clock stands still or steps back: see Added.
        inode.ctime_ns = max(now, inode.ctime_ns + 1)
        self.store.update_inode(inode)

    def _new_inode(self, mode: int, uid: int, gid: int, nlink: int, now: int, **extra: object) -> Inode:
        inode = Inode(0, mode, uid, gid, nlink, 0, now, now, now, **extra)  # type: ignore[arg-type]
        self.store.insert_inode(inode)
        inode.has_xattrs = False
        return inode

    def _drop_link(self, inode: Inode, now: int, changes: ChunkChanges, parent: int, name: bytes) -> None:
        """Name `name` in folder `parent` of inode is gone; when it was the last, a file stays as
        an orphan, freed with its chunks once no mount has it open (POSIX: an unlinked file lives
        on while it is open), ORPHAN_GRACE_NS has passed and it has been in the trash for
        trash_ns (free_closed_orphans); anything else goes at once.
        """
        inode.nlink -= 1
        if inode.nlink > 0 or stat.S_ISREG(inode.mode):
            self._touch(inode, now, mtime=False)
            if inode.nlink == 0:
                self.store.add_orphan(inode.id, now)
                folder = self._path_of(parent) if self.trash_ns > 0 else None
                if folder is not None:
                    self.store.put_in_trash(inode.id, folder.rstrip(b"/") + b"/" + name, now)
            return
        self._free(inode, now, changes)

    def _inherit_goal(self, folder: Inode, inode: Inode) -> None:
        """A new node takes its folder's own goal, if it has one (MooseFS does the same)."""
        if folder.goal:
            self.store.set_goal(inode.id, folder.goal)
            inode.goal = folder.goal

    def _free(self, inode: Inode, now: int, changes: ChunkChanges) -> None:
        if stat.S_ISREG(inode.mode):
            dead = [c.id for c in self.store.file_chunks(inode.id)]
            self.store.make_garbage(dead, now)
            changes.garbage.extend(dead)
        self.store.delete_inode(inode.id)

    def free_closed_orphans(self) -> ChunkChanges:
        """Frees the unlinked files that no mount has open any more (past their grace)."""
        changes = ChunkChanges()
        with self.store.transaction():
            now = self.clock()
            for ino in self.store.orphans(now - self.orphan_grace_ns, now - self.trash_ns):
                if not self.is_open(ino):
                    inode = self.store.get_inode(ino)
                    if inode is None or inode.nlink > 0:  # linked again meanwhile (impossible today)
                        self.store.remove_orphan(ino)
                    else:
                        self._free(inode, now, changes)
        return changes

    def _free_name(self, parent: int, name: bytes) -> None:
        validate_name(name)
        if self.store.lookup(parent, name) is not None:
            raise FsError(errno.EEXIST, f"{name.decode(errors='replace')!r} already exists")

    # --- lookups ---------------------------------------------------------------------------------

    def getattr(self, ino: int) -> Inode:
        with self.store.transaction():
            return self._inode(ino)

    def lookup(self, parent: int, name: bytes) -> Inode:
        with self.store.transaction():
            self._dir(parent)
            validate_name(name)
            entry = self.store.lookup(parent, name)
            if entry is None:
                raise FsError(errno.ENOENT, f"{name.decode(errors='replace')!r} not found")
            return self._inode(entry.inode)

    def resolve(self, path: str) -> Inode:
        parts = split_path(path)
        with self.store.transaction():
            inode = self._inode(ROOT_INODE)
            for i, part in enumerate(parts):
                if not stat.S_ISDIR(inode.mode):
                    raise FsError(errno.ENOTDIR, f"{'/' + '/'.join(p.decode() for p in parts[:i])} is not a directory")
                entry = self.store.lookup(inode.id, part)
                if entry is None:
                    raise FsError(errno.ENOENT, f"{path} not found")
                inode = self._inode(entry.inode)
            return inode

    def readdir(self, ino: int, after: int, limit: int) -> Listing:
        """Up to limit entries after cursor `after`, whether more follow, the parent directory,
        and the directory itself as it was when they were read."""
        with self.store.transaction():
            folder = self._dir(ino)
            rows = self.store.list_dentries(ino, after, limit + 1)
            named = None if ino == ROOT_INODE else self.store.name_of(ino)
            parent = named[0] if named else ino
        return Listing([(d.cursor, d.name, i) for d, i in rows[:limit]], len(rows) > limit, parent, folder)

    def readlink(self, ino: int) -> bytes:
        with self.store.transaction():
            inode = self._inode(ino)
            if not stat.S_ISLNK(inode.mode) or inode.target is None:
                raise FsError(errno.EINVAL, f"inode {ino} is not a symlink")
            return inode.target

    # --- creating --------------------------------------------------------------------------------

    def mkdir(self, parent: int, name: bytes, mode: int, uid: int, gid: int) -> Added:
        with self.store.transaction():
            now = self.clock()
            parent_inode = self._dir(parent)
            before = parent_inode.ctime_ns
            self._free_name(parent, name)
            mode, gid = _owned_in(parent_inode, stat.S_IFDIR | (mode & 0o7777), gid)
            # (a folder's chunk size: of the files made in it; it passes on, as a goal does)
            inode = self._new_inode(mode, uid, gid, 2, now, chunk_size=parent_inode.chunk_size)
            self._inherit_goal(parent_inode, inode)
            self.store.insert_dentry(parent, name, inode.id)
            parent_inode.nlink += 1
            self._touch(parent_inode, now)
            return Added(inode, parent_inode, before)

    def create(self, parent: int, name: bytes, mode: int, uid: int, gid: int, exclusive: bool) -> Added:
        """Creates an empty file, or returns the existing one at that name (unless exclusive)."""
        with self.store.transaction():
            now = self.clock()
            parent_inode = self._dir(parent)
            before = parent_inode.ctime_ns
            validate_name(name)
            entry = self.store.lookup(parent, name)
            if entry is not None:
                if exclusive:
                    raise FsError(errno.EEXIST, f"{name.decode(errors='replace')!r} already exists")
                existing = self._inode(entry.inode)
                if stat.S_ISDIR(existing.mode):
                    raise FsError(errno.EISDIR, f"{name.decode(errors='replace')!r} is a directory")
                return Added(existing, parent_inode, before)
            mode, gid = _owned_in(parent_inode, stat.S_IFREG | (mode & 0o7777), gid)
            chunk_size = parent_inode.chunk_size or self.default_chunk_size
            inode = self._new_inode(mode, uid, gid, 1, now, chunk_size=chunk_size)
            self._inherit_goal(parent_inode, inode)
            self.store.insert_dentry(parent, name, inode.id)
            self._touch(parent_inode, now)
            return Added(inode, parent_inode, before)

    def symlink(self, parent: int, name: bytes, target: bytes, uid: int, gid: int) -> Added:
        if not target or len(target) > PATH_MAX or b"\0" in target:
            raise FsError(errno.EINVAL if len(target) <= PATH_MAX else errno.ENAMETOOLONG, "invalid symlink target")
        with self.store.transaction():
            now = self.clock()
            parent_inode = self._dir(parent)
            before = parent_inode.ctime_ns
            self._free_name(parent, name)
            mode, gid = _owned_in(parent_inode, stat.S_IFLNK | 0o777, gid)
            inode = self._new_inode(mode, uid, gid, 1, now, target=target)
            inode.size = len(target)
            self.store.update_inode(inode)
            self.store.insert_dentry(parent, name, inode.id)
            self._touch(parent_inode, now)
            return Added(inode, parent_inode, before)

    def mknod(self, parent: int, name: bytes, mode: int, uid: int, gid: int, rdev: int) -> Added:
        """A FIFO, socket, or character or block device (its number kept as the node's target);
        a regular file (mknod can make those too) is an exclusive create."""
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFREG:
            return self.create(parent, name, mode, uid, gid, exclusive=True)
        if kind not in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK):
            raise FsError(errno.EINVAL, f"mknod makes no node of type {kind:o}")
        device = stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        if not 0 <= rdev < 2**63 or (rdev and not device):
            raise FsError(errno.EINVAL, f"device number {rdev} is out of range or not for this type")
        with self.store.transaction():
            now = self.clock()
            parent_inode = self._dir(parent)
            before = parent_inode.ctime_ns
            self._free_name(parent, name)
            mode, gid = _owned_in(parent_inode, kind | (mode & 0o7777), gid)
            inode = self._new_inode(mode, uid, gid, 1, now, target=str(rdev).encode() if device else None)
            self.store.insert_dentry(parent, name, inode.id)
            self._touch(parent_inode, now)
            return Added(inode, parent_inode, before)

    def link(self, ino: int, new_parent: int, new_name: bytes) -> Added:
        with self.store.transaction():
            now = self.clock()
            inode = self._inode(ino)
            if stat.S_ISDIR(inode.mode):
                raise FsError(errno.EPERM, "hard links to directories are not allowed")
            parent_inode = self._dir(new_parent)
            before = parent_inode.ctime_ns
            self._free_name(new_parent, new_name)
            self.store.insert_dentry(new_parent, new_name, ino)
            inode.nlink += 1
            self._touch(inode, now, mtime=False)
            self._touch(parent_inode, now)
            return Added(inode, parent_inode, before)

    # --- removing --------------------------------------------------------------------------------

    def unlink(self, parent: int, name: bytes) -> tuple[ChunkChanges, Inode, int]:
        """The chunks it lets go, and the folder after the change with its ctime just before it
        (see Added)."""
        changes = ChunkChanges()
        with self.store.transaction():
            now = self.clock()
            parent_inode = self._dir(parent)
            ctime_before = parent_inode.ctime_ns
            inode = self._inode(self._entry(parent, name))
            if stat.S_ISDIR(inode.mode):
                raise FsError(errno.EISDIR, f"{name.decode(errors='replace')!r} is a directory")
            self.store.delete_dentry(parent, name)
            self._drop_link(inode, now, changes, parent, name)
            self._touch(parent_inode, now)
        return changes, parent_inode, ctime_before

    def rmdir(self, parent: int, name: bytes) -> tuple[Inode, int]:
        """The folder after the change, and its ctime just before it (see Added)."""
        with self.store.transaction():
            now = self.clock()
            parent_inode = self._dir(parent)
            ctime_before = parent_inode.ctime_ns
            inode = self._inode(self._entry(parent, name))
            if not stat.S_ISDIR(inode.mode):
                raise FsError(errno.ENOTDIR, f"{name.decode(errors='replace')!r} is not a directory")
            if self.store.has_children(inode.id):
                raise FsError(errno.ENOTEMPTY, f"{name.decode(errors='replace')!r} is not empty")
            self.store.delete_dentry(parent, name)
            self.store.delete_inode(inode.id)
            parent_inode.nlink -= 1
            self._touch(parent_inode, now)
        return parent_inode, ctime_before

    def _entry(self, parent: int, name: bytes) -> int:
        validate_name(name)
        entry = self.store.lookup(parent, name)
        if entry is None:
            raise FsError(errno.ENOENT, f"{name.decode(errors='replace')!r} not found")
        return entry.inode

    # --- rename ----------------------------------------------------------------------------------

    def rename(self, parent: int, name: bytes, new_parent: int, new_name: bytes, flags: int) -> Renamed:
        changes = ChunkChanges()
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
            raise FsError(errno.EINVAL, f"unsupported rename flags {flags}")
        with self.store.transaction():
            now = self.clock()
            src_parent = self._dir(parent)
            dst_parent = src_parent if new_parent == parent else self._dir(new_parent)
            renamed = Renamed(changes, src_parent, src_parent.ctime_ns, dst_parent, dst_parent.ctime_ns)
            inode = self._inode(self._entry(parent, name))
            renamed.node = inode
            validate_name(new_name)
            target_entry = self.store.lookup(new_parent, new_name)
            target = self._inode(target_entry.inode) if target_entry else None
            if target is not None and target.id == inode.id:
                return renamed  # same file (or hard links of one file): POSIX says do nothing
            if stat.S_ISDIR(inode.mode):
                self._refuse_move_into_itself(inode.id, new_parent)
            if flags & RENAME_EXCHANGE:
                if target is None:
                    raise FsError(errno.ENOENT, f"{new_name.decode(errors='replace')!r} not found")
                if stat.S_ISDIR(target.mode):
                    self._refuse_move_into_itself(target.id, parent)
                self.store.delete_dentry(parent, name)
                self.store.delete_dentry(new_parent, new_name)
                self.store.insert_dentry(parent, name, target.id)
                self.store.insert_dentry(new_parent, new_name, inode.id)
                if parent != new_parent:
                    moved = int(stat.S_ISDIR(inode.mode)) - int(stat.S_ISDIR(target.mode))
                    src_parent.nlink -= moved
                    dst_parent.nlink += moved
                for changed in (inode, target):
                    self._touch(changed, now, mtime=False)
            else:
                if target is not None:
                    if flags & RENAME_NOREPLACE:
                        raise FsError(errno.EEXIST, f"{new_name.decode(errors='replace')!r} already exists")
                    if stat.S_ISDIR(inode.mode):
                        if not stat.S_ISDIR(target.mode):
                            raise FsError(errno.ENOTDIR, f"{new_name.decode(errors='replace')!r} is not a directory")
                        if self.store.has_children(target.id):
                            raise FsError(errno.ENOTEMPTY, f"{new_name.decode(errors='replace')!r} is not empty")
                    elif stat.S_ISDIR(target.mode):
                        raise FsError(errno.EISDIR, f"{new_name.decode(errors='replace')!r} is a directory")
                    self.store.delete_dentry(new_parent, new_name)
                    if stat.S_ISDIR(target.mode):
                        self.store.delete_inode(target.id)
                        dst_parent.nlink -= 1
                    else:
                        self._drop_link(target, now, changes, new_parent, new_name)
                self.store.delete_dentry(parent, name)
                self.store.insert_dentry(new_parent, new_name, inode.id)
                if stat.S_ISDIR(inode.mode) and parent != new_parent:
                    src_parent.nlink -= 1
                    dst_parent.nlink += 1
                self._touch(inode, now, mtime=False)
            if parent == new_parent:
                self._touch(dst_parent, now)
            else:
                self._touch(src_parent, now)
                self._touch(dst_parent, now)
        return renamed

    def _refuse_move_into_itself(self, dir_ino: int, new_parent: int, verb: str = "move") -> None:
        ino: int | None = new_parent
        while ino is not None and ino != ROOT_INODE:
            if ino == dir_ino:
                raise FsError(errno.EINVAL, f"cannot {verb} a directory into itself")
            named = self.store.name_of(ino)
            ino = named[0] if named else None
        if dir_ino == ROOT_INODE:
            raise FsError(errno.EBUSY, f"cannot {verb} the root")

    # --- attributes ------------------------------------------------------------------------------

    def setattr(
        self,
        ino: int,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
        named: bool = False,
    ) -> tuple[Inode, ChunkChanges, int]:
        """The inode after the change, the chunks it lets go, and its ctime just before it (see
        Added). named: only while the file has a name (ESTALE once its last one went)."""
        changes = ChunkChanges()
        with self.store.transaction():
            now = self.clock()
            inode = self._inode(ino)
            ctime_before = inode.ctime_ns
            if named and inode.nlink == 0:
                raise FsError(errno.ESTALE, f"inode {ino} has no name any more")
            if mode is not None:
                inode.mode = stat.S_IFMT(inode.mode) | (mode & 0o7777)
            if uid is not None:
                inode.uid = uid
            if gid is not None:
                inode.gid = gid
            if size is not None:
                if stat.S_ISDIR(inode.mode):
                    raise FsError(errno.EISDIR, "cannot truncate a directory")
                if not stat.S_ISREG(inode.mode):
                    raise FsError(errno.EINVAL, "can only truncate regular files")
                if size != inode.size:
                    self._resize(inode, size, now, changes)
                inode.mtime_ns = now  # (to its own size too, as ext4's and tmpfs's truncate do)
            if atime_ns is not None:
                inode.atime_ns = atime_ns
            if mtime_ns is not None:
                inode.mtime_ns = mtime_ns
            self._touch(inode, now, mtime=False)
            return inode, changes, ctime_before

    # --- extended attributes ---------------------------------------------------------------------

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        validate_xattr_name(name)
        if len(value) > XATTR_SIZE_MAX:
            raise FsError(errno.E2BIG, f"attribute value longer than {XATTR_SIZE_MAX} bytes")
        with self.store.transaction():
            now = self.clock()
            inode = self._inode(ino)
            exists = self.store.get_xattr(ino, name) is not None
            if flags & XATTR_CREATE and exists:
                raise FsError(errno.EEXIST, f"attribute {name.decode(errors='replace')} exists")
            if flags & XATTR_REPLACE and not exists:
                raise FsError(errno.ENODATA, f"no attribute {name.decode(errors='replace')}")
            self.store.set_xattr(ino, name, value)
            self._touch(inode, now, mtime=False)

    def getxattr(self, ino: int, name: bytes) -> bytes:
        validate_xattr_name(name)
        with self.store.transaction():
            self._inode(ino)
            value = self.store.get_xattr(ino, name)
        if value is None:
            raise FsError(errno.ENODATA, f"no attribute {name.decode(errors='replace')}")
        return value

    def listxattr(self, ino: int) -> list[bytes]:
        with self.store.transaction():
            self._inode(ino)
            return self.store.list_xattrs(ino)

    def removexattr(self, ino: int, name: bytes) -> None:
        validate_xattr_name(name)
        with self.store.transaction():
            now = self.clock()
            inode = self._inode(ino)
            if not self.store.delete_xattr(ino, name):
                raise FsError(errno.ENODATA, f"no attribute {name.decode(errors='replace')}")
            self._touch(inode, now, mtime=False)

    def _resize(self, inode: Inode, size: int, now: int, changes: ChunkChanges) -> None:
        """Sets a file's size; chunk data past the new end is dropped, so it reads as zeros later."""
        if size < inode.size:
            slots = chunk_count(size, inode.chunk_size)
            for chunk in self.store.file_chunks(inode.id, max(0, slots - 1)):
                keep = size - chunk.idx * inode.chunk_size  # type: ignore[operator]
                if keep <= 0:
                    self.store.make_garbage([chunk.id], now)
                    changes.garbage.append(chunk.id)
                elif keep < chunk.length:
                    self.store.set_chunk_length(chunk.id, keep)
            inode.stored = self.store.stored_bytes(inode.id)
        inode.size = size

    # --- file contents ---------------------------------------------------------------------------

    def _check_new_chunks(self, chunks: list[CommittedChunk], chunk_size: int, size: int) -> None:
        slots, ids = set(), set()
        for chunk in chunks:
            row = self.store.get_chunk(chunk.chunk_id)
            if row is None or row.state != ChunkState.PENDING:
                raise FsError(errno.EINVAL, f"chunk {chunk.chunk_id:016x} is not an upload in progress")
            if not 0 < chunk.length <= chunk_size:
                raise FsError(errno.EINVAL, f"chunk length {chunk.length} is out of range for chunk size {chunk_size}")
            if chunk.index * chunk_size >= size:
                raise FsError(errno.EINVAL, f"chunk slot {chunk.index} lies past the file size {size}")
            if chunk.index in slots:
                raise FsError(errno.EINVAL, f"chunk slot {chunk.index} given twice")
            if chunk.chunk_id in ids:
                raise FsError(errno.EINVAL, f"chunk {chunk.chunk_id:016x} given for two slots")
            slots.add(chunk.index)
            ids.add(chunk.chunk_id)

    def _install_chunks(self, inode: Inode, chunks: list[CommittedChunk], now: int, changes: ChunkChanges) -> None:
        # The chunks now in those slots, each looked up alone: reading the file's every chunk made
        # a close that commits a file's N chunks one by one take N^2 (4,000: 51 s).
        holds = {}  # slot -> the chunk there now (0: none)
        for index in {c.index for c in chunks}:
            row = next(iter(self.store.file_chunks(inode.id, index, 1)), None)
            holds[index] = row.id if row is not None and row.idx == index else 0
        for chunk in chunks:
            if chunk.replaces is not None and holds[chunk.index] != chunk.replaces:
                raise FsError(errno.ESTALE, f"slot {chunk.index} was changed meanwhile")
        replaced = [chunk for chunk in holds.values() if chunk]
        self.store.make_garbage(replaced, now)
        changes.garbage.extend(replaced)
        for chunk in chunks:
            used = min(chunk.length, inode.size - chunk.index * inode.chunk_size)
            self.store.make_live(chunk.chunk_id, inode.id, chunk.index, chunk.length, chunk.crc, now)
            if used < chunk.length:
                self.store.set_chunk_length(chunk.chunk_id, used)
            changes.live.append(chunk.chunk_id)
            if inode.goal:
                changes.goals[chunk.chunk_id] = inode.goal
        inode.stored = self.store.stored_bytes(inode.id)

    def commit_chunks(
        self, ino: int, size: int, chunks: list[CommittedChunk], mtime_ns: int | None, appended_at: int | None = None
    ) -> tuple[Inode, ChunkChanges]:
        """Points slots of an existing file at new chunks and sets its size, atomically. With
        appended_at (data appended at that size), EAGAIN unless the file still has that size:
        appends from two mounts at once must not overwrite each other."""
        changes = ChunkChanges()
        with self.store.transaction():
            now = self.clock()
            inode = self._inode(ino)
            if not stat.S_ISREG(inode.mode):
                raise FsError(errno.EISDIR if stat.S_ISDIR(inode.mode) else errno.EINVAL, "not a regular file")
            if appended_at is not None and inode.size != appended_at:
                raise FsError(errno.EAGAIN, f"appended at {appended_at}, but the file has {inode.size} bytes by now")
            size = max(size, inode.size)  # (shrinking is SetAttr's: another mount may have grown it)
            self._check_new_chunks(chunks, inode.chunk_size, size)
            self._resize(inode, size, now, changes)
            self._install_chunks(inode, chunks, now, changes)
            inode.mtime_ns = mtime_ns if mtime_ns is not None else now
            self._touch(inode, now, mtime=False)
            return inode, changes

    def put_file(
        self,
        parent: int,
        name: bytes,
        mode: int,
        uid: int,
        gid: int,
        size: int,
        chunk_size: int,
        chunks: list[CommittedChunk],
        mtime_ns: int | None,
    ) -> tuple[Inode, ChunkChanges]:
        """Creates or replaces the file at (parent, name) with new contents, atomically."""
        changes = ChunkChanges()
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise FsError(errno.EINVAL, f"chunk size {chunk_size} is out of range")
        with self.store.transaction():
            now = self.clock()
            parent_inode = self._dir(parent)
            validate_name(name)
            self._check_new_chunks(chunks, chunk_size, size)
            entry = self.store.lookup(parent, name)
            if entry is not None:
                old = self._inode(entry.inode)
                if stat.S_ISDIR(old.mode):
                    raise FsError(errno.EISDIR, f"{name.decode(errors='replace')!r} is a directory")
                self.store.delete_dentry(parent, name)
                self._drop_link(old, now, changes, parent, name)
            inode = self._new_inode(stat.S_IFREG | (mode & 0o7777), uid, gid, 1, now, chunk_size=chunk_size)
            self._inherit_goal(parent_inode, inode)
            inode.size = size
            self._install_chunks(inode, chunks, now, changes)
            inode.mtime_ns = mtime_ns if mtime_ns is not None else now
            self.store.update_inode(inode)
            self.store.insert_dentry(parent, name, inode.id)
            self._touch(parent_inode, now)
            return inode, changes

    def abandon(self, chunk_ids: list[int]) -> ChunkChanges:
        """Reserved chunks that will never be committed (a failed or expired upload) become garbage."""
        changes = ChunkChanges()
        with self.store.transaction():
            for chunk_id in chunk_ids:
                row = self.store.get_chunk(chunk_id)
                if row is not None and row.state == ChunkState.PENDING:
                    changes.garbage.append(chunk_id)
            self.store.make_garbage(changes.garbage, self.clock())
        return changes

    def small_chunks(self, inodes: list[Inode]) -> dict[int, ChunkRow]:
        """inode -> its only chunk, for the regular files among these of 1 to SMALL_FILE bytes."""
        small = [i.id for i in inodes if stat.S_ISREG(i.mode) and 0 < i.size <= min(SMALL_FILE, i.chunk_size)]
        if not small:
            return {}
        with self.store.transaction():
            return {row.inode: row for row in self.store.first_chunks(small) if row.inode is not None}

    def path_of(self, ino: int) -> bytes | None:
        """A path of the inode from the root (one of a file's names); None if it has none (an
        open file whose names are gone)."""
        with self.store.transaction():
            return self._path_of(ino)

    def _path_of(self, ino: int) -> bytes | None:
        parts: list[bytes] = []
        while ino != ROOT_INODE:
            named = self.store.name_of(ino)
            if named is None or len(parts) > MAX_DEPTH:
                return None
            ino, name = named
            parts.append(name)
        return b"/" + b"/".join(reversed(parts))

    # --- usage -----------------------------------------------------------------------------------

    def usage(self, path: str, goal: int) -> tuple[Usage, list[tuple[bytes, Usage]], Usage]:
        """What path holds all the way down, itself included (as MooseFS's mfsdirinfo): in all,
        for each folder in it, and for the other entries in it together. goal: the cluster's,
        for the files without their own."""
        node = self.resolve(path)
        if not stat.S_ISDIR(node.mode):
            with self.store.transaction():
                chunks = self.store.file_chunks(node.id)
            stored = sum(c.stored_length for c in chunks)
            size = node.size if stat.S_ISREG(node.mode) else 0
            alone = Usage(1, 0, size, len(chunks), stored, stored * (node.goal or goal))
            return alone, [], alone
        by_entry = self.store.usage(node.id, goal)
        inside = by_entry.pop(node.id, Usage())
        total = replace(inside, folders=inside.folders + 1)
        folders, others = [], Usage()
        with self.store.transaction():
            for top, usage in by_entry.items():
                named = self.store.name_of(top) if usage.folders else None  # (a folder counts itself)
                if named is not None:
                    folders.append((named[1], usage))
                else:
                    others = Usage(*(a + b for a, b in zip(astuple(others), astuple(usage), strict=True)))
        return total, sorted(folders, key=lambda f: (-f[1].bytes, f[0])), others

    # --- the trash -------------------------------------------------------------------------------

    def list_trash(self, path: str) -> list[TrashRow]:
        """What the trash holds that was at path or under it, newest first (read through a view
        of the store of its own: a big trash takes long to list)."""
        with self.store.reading() as moment:
            return moment.trash(_normal(path))

    def restore_trash(self, path: str, ino: int = 0) -> tuple[list[TrashRow], list[TrashRow]]:
        """Puts back the newest file deleted at path and the newest deleted at each path under it
        (or, given ino, that file, at path if given), making the folders they were in if gone.
        Returns (restored, at the path each is at now) and (skipped: the path is taken)."""
        with self.store.reading() as moment:  # (as list_trash)
            if ino:
                found = [row for row in moment.trash(b"/") if row.inode == ino]
                if not found:
                    raise FsError(errno.ENOENT, f"inode {ino} is not in the trash")
                wanted = [(found[0], _normal(path) if path else found[0].path)]
            else:
                newest: dict[bytes, TrashRow] = {}
                for row in moment.trash(_normal(path)):
                    newest.setdefault(row.path, row)
                wanted = [(row, row.path) for row in newest.values()]
        restored, skipped = [], []

        def restore(row: TrashRow, where: bytes) -> None:
            try:
                self._relink(row.inode, where, self.clock())
            except FsError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTDIR, errno.ENOENT):
                    raise
                skipped.append(row)  # (its place is taken; or ENOENT: purged, freed or restored meanwhile)
            else:
                restored.append(TrashRow(row.inode, where, row.size, row.deleted_ns))

        self._in_batches(wanted, lambda item: restore(*item))
        return restored, skipped

    def _in_batches(self, items: Sequence[T], change: Callable[[T], None]) -> None:
        """change(item) for each item, TREE_BATCH items a transaction (see TREE_BATCH)."""
        for start in range(0, len(items), TREE_BATCH):
            if start:
                time.sleep(BATCH_PAUSE)
            with self.store.transaction():
                for item in items[start : start + TREE_BATCH]:
                    change(item)

    def _relink(self, ino: int, path: bytes, now: int) -> None:
        """Names the trashed file `ino` `path` again, making missing folders on the way."""
        inode = self._inode(ino)
        if inode.nlink:
            raise FsError(errno.ENOENT, f"inode {ino} is not in the trash (restored meanwhile)")
        parts = split_path(path.decode(errors="surrogateescape"))
        if not parts:
            raise FsError(errno.EINVAL, "a file cannot be restored as /")
        *folders, name = parts
        folder = ROOT_INODE
        for part in folders:
            entry = self.store.lookup(folder, part)
            if entry is None:
                folder = self.mkdir(folder, part, 0o755, inode.uid, inode.gid).node.id
            elif stat.S_ISDIR(self._inode(entry.inode).mode):
                folder = entry.inode
            else:
                raise FsError(errno.ENOTDIR, f"{part.decode(errors='replace')!r} is not a directory")
        self._free_name(folder, name)
        self.store.insert_dentry(folder, name, ino)
        inode.nlink = 1
        self.store.remove_orphan(ino)
        self.store.take_from_trash(ino)
        self._touch(inode, now, mtime=False)
        self._touch(self._dir(folder), now)

    def purge_trash(self, path: str, ino: int = 0) -> list[TrashRow]:
        """Takes what was at path or under it (or the file ino) out of the trash: it is freed
        with its chunks at the next look at orphans (once no mount has it open)."""
        with self.store.transaction():
            rows = [row for row in self.store.trash(_normal(path)) if not ino or row.inode == ino]
            if ino and not rows:
                raise FsError(errno.ENOENT, f"inode {ino} is not in the trash")
            for row in rows:
                self.store.take_from_trash(row.inode)
            return rows

    # --- goals ------------------------------------------------------------------------------------

    def set_goal(self, path: str, goal: int, recursive: bool) -> GoalChange:
        """Gives the node at path (and with recursive, everything below it) its own goal, 1 to
        MAX_GOAL copies; 0 takes it away (the cluster's applies again). A folder's goal is what
        files and folders made in it from then on start with."""
        if not 0 <= goal <= MAX_GOAL:
            raise FsError(errno.EINVAL, f"goal {goal} is out of range (1..{MAX_GOAL}, or 0 for the cluster's)")
        with self.store.transaction():
            top = self.resolve(path)
            inodes = [top.id] + (self.store.subtree(top.id) if recursive and stat.S_ISDIR(top.mode) else [])
        kinds: Counter[int] = Counter()
        chunks: dict[int, int] = {}

        def set_goal(ino: int) -> None:
            inode = self.store.get_inode(ino)
            if inode is not None:  # (else gone meanwhile)
                self.store.set_goal(ino, goal)
                kinds[stat.S_IFMT(inode.mode)] += 1
                chunks.update((c.id, goal) for c in self.store.file_chunks(ino))

        self._in_batches(inodes, set_goal)
        return GoalChange(kinds[stat.S_IFREG], kinds[stat.S_IFDIR], chunks)

    # --- chunk sizes ------------------------------------------------------------------------------

    def set_chunk_size(self, path: str, chunk_size: int, recursive: bool) -> int:
        """Gives the folder at path (and with recursive, every folder below it) the chunk size
        of files made in it from then on, in whole MiB; 0: the cluster's again. Returns how
        many folders. (Small chunks suit a database: each change copies less; HDFS sets its
        block size per file the same way, when the file is made.)"""
        if chunk_size % MiB or not 0 <= chunk_size <= MAX_CHUNK_SIZE:
            raise FsError(
                errno.EINVAL,
                f"chunk size {chunk_size} is not 1 to {MAX_CHUNK_SIZE // MiB} whole MiB (or 0: the cluster's)",
            )
        with self.store.transaction():
            top = self.resolve(path)
            if not stat.S_ISDIR(top.mode):
                raise FsError(errno.ENOTDIR, f"{path}: a file's chunk size is fixed when it is made; set its folder's")
            inodes = [top.id] + (self.store.subtree(top.id) if recursive else [])
        folders = []

        def set_chunk_size(ino: int) -> None:
            folder = self.store.get_inode(ino)
            if folder is not None and stat.S_ISDIR(folder.mode):  # (else a file, or gone meanwhile)
                folder.chunk_size = chunk_size
                self.store.update_inode(folder)
                folders.append(ino)

        self._in_batches(inodes, set_chunk_size)
        return len(folders)

    # --- quotas ----------------------------------------------------------------------------------

    def quota(self, path: str, limits: tuple[int, int] | None = None) -> Quota:
        """The quota of the folder at path (limits 0: none) and what it holds now; with limits
        (entries, bytes), sets them first (both 0: the folder has no quota any more). What it
        holds is counted as every change is made (SqliteStore._charge): a change that would
        take a folder past a limit is EDQUOT, as on a local file system with quotas."""
        if limits is not None and (min(limits) < 0 or max(limits) >= 2**63):
            raise FsError(errno.EINVAL, f"quota limits {limits} are out of range")
        with self.store.transaction():
            folder = self.resolve(path)
            if not stat.S_ISDIR(folder.mode):
                raise FsError(errno.ENOTDIR, f"{path} is not a folder: quotas are set on folders")
            quota = self.store.quota(folder.id) if limits is None else self.store.set_quota(folder.id, *limits)
            if quota is None:
                return Quota(folder.id, 0, 0, *self.store.subtree_size(folder.id))
            return quota

    # --- snapshots -------------------------------------------------------------------------------

    def read_tree(self, path: str, batch: int = SNAPSHOT_BATCH) -> Generator[list[TreeNode], None, None]:
        """The node at path and, for a folder, everything below it, as they are now, `batch`
        nodes at a time (breadth first: each folder before the names in it): read at one moment
        through a view of the store of its own (store.reading()), held until the last batch is
        taken (or the iterator closed), so that reading a big tree holds up no other call."""
        with self.store.reading() as moment:
            reader = copy.copy(self)
            reader.store = moment
            top = reader.resolve(path)
            parts = split_path(path)
            linked: set[int] = set()  # files of several names whose chunks were given

            def node(parent: int, name: bytes, inode: Inode) -> TreeNode:
                chunks = []
                if stat.S_ISREG(inode.mode) and inode.id not in linked:
                    chunks = moment.file_chunks(inode.id)
                    if inode.nlink > 1:
                        linked.add(inode.id)
                return TreeNode(parent, name, inode, reader._xattrs(inode), chunks)

            nodes = [node(-1, parts[-1] if parts else b"", top)]
            folders = deque([(0, top.id)] if stat.S_ISDIR(top.mode) else [])  # (index, id), to list
            count = 1
            while folders:
                index, folder = folders.popleft()
                after = 0
                while page := moment.list_dentries(folder, after, 1000):
                    for dentry, child in page:
                        if stat.S_ISDIR(child.mode):
                            folders.append((count, child.id))
                        nodes.append(node(index, dentry.name, child))
                        count += 1
                        if len(nodes) >= batch:
                            yield nodes
                            nodes = []
                    after = page[-1][0].cursor
            if nodes:
                yield nodes

    def _xattrs(self, inode: Inode) -> list[tuple[bytes, bytes]]:
        if inode.has_xattrs is False:
            return []
        return [(name, self.store.get_xattr(inode.id, name) or b"") for name in self.store.list_xattrs(inode.id)]

    def new_chunks(self, count: int) -> tuple[list[int], ChunkChanges]:
        """count new chunk ids for uploads (PENDING), taken from those reserved ahead (ID_BATCH a
        transaction), and the changes made on the way: ids reserved too long ago became garbage."""
        changes = ChunkChanges()
        with self._ids_lock:
            now = self.clock()
            if self._ids and now - self._ids_made > ID_MAX_AGE_NS:
                changes.garbage, self._ids = self._ids, []
            if len(self._ids) < count:
                with self.store.transaction():
                    self.store.make_garbage(changes.garbage, now)
                    self._ids += [self.store.new_chunk(now) for _ in range(count - len(self._ids) + ID_BATCH)]
                self._ids_made = now
            taken, self._ids = self._ids[:count], self._ids[count:]
        return taken, changes

    def give_back_chunks(self) -> None:
        """The ids reserved ahead and not handed out become garbage (the master is stopping: a
        restarted one would take them for uploads in flight, and keep them until their lease ends)."""
        with self._ids_lock:
            ids, self._ids = self._ids, []
        self.abandon(ids)

    def reserve_chunks(self, count: int) -> list[int]:
        """count new chunk ids, reserved for uploads (PENDING), TREE_BATCH a transaction."""
        reserved: list[int] = []
        now = self.clock()
        self._in_batches(range(count), lambda _: reserved.append(self.store.new_chunk(now)))
        return reserved

    def copy_tree(self, path: str) -> TreeCopy:
        """A copy of a tree read by read_tree, to be put at path (see TreeCopy)."""
        parts = split_path(path)
        if not parts:
            raise FsError(errno.EEXIST, "/ already exists")
        return TreeCopy(self, path, parts)

    def _refuse_taken(self, folder: int, name: bytes, path: str) -> None:
        if self.store.lookup(folder, name) is not None:
            raise FsError(errno.EEXIST, f"{path} already exists")

    def _copy_node(
        self, node: TreeNode, nlink: int, folder: Inode, now: int, changes: ChunkChanges, new_chunks: dict[int, int]
    ) -> Inode:
        old = node.inode
        twin = replace(old, id=0, nlink=nlink, ctime_ns=now, goal=0)  # (its own id from the insert)
        self.store.insert_inode(twin)
        if old.goal:
            self.store.set_goal(twin.id, old.goal)
            twin.goal = old.goal
        else:
            self._inherit_goal(folder, twin)
        for name, value in node.xattrs:
            self.store.set_xattr(twin.id, name, value)
        for row in node.chunks:
            chunk = new_chunks.get(row.id, 0)
            reserved = self.store.get_chunk(chunk)
            if reserved is None or reserved.state != ChunkState.PENDING:
                raise FsError(errno.EIO, f"chunk {row.id:016x} of the snapshot has no reserved copy")
            self.store.make_live(chunk, twin.id, row.idx or 0, row.stored_length, row.crc, now)
            if row.length < row.stored_length:
                self.store.set_chunk_length(chunk, row.length)
            changes.live.append(chunk)
            if twin.goal:
                changes.goals[chunk] = twin.goal
        return twin

    def remove_unfinished_snapshots(self) -> int:
        """Removes the copies that snapshots left unnamed when their master stopped midway (run
        as it starts: their chunks become garbage in the store, which the cluster reads next);
        returns how many."""
        with self.store.transaction():
            tops = self.store.building()
        for top in tops:
            self._remove_unnamed(top, ChunkChanges())
        return len(tops)

    def _remove_unnamed(self, top: int, changes: ChunkChanges) -> None:
        """Removes a snapshot's unnamed copy and all below it, TREE_BATCH names a transaction,
        each folder after what it holds: stopped midway, what is left is still below the top, to
        be removed again. Its chunks go to changes.garbage."""
        below: list[tuple[int, bytes, int]] = []  # (folder, name, inode) of every name, breadth first
        with self.store.reading() as moment:
            folders = [top] if moment.get_inode(top) is not None else []
            for folder in folders:  # (grows as it goes)
                after = 0
                while page := moment.list_dentries(folder, after, 1000):
                    for dentry, child in page:
                        below.append((folder, dentry.name, child.id))
                        if stat.S_ISDIR(child.mode):
                            folders.append(child.id)
                    after = page[-1][0].cursor
        names_left = Counter(ino for _, _, ino in below)
        now = self.clock()

        def remove(entry: tuple[int, bytes, int]) -> None:
            folder, name, ino = entry
            self.store.delete_dentry(folder, name)
            names_left[ino] -= 1
            if not names_left[ino] and (inode := self.store.get_inode(ino)) is not None:
                self._free(inode, now, changes)

        self._in_batches(below[::-1], remove)
        with self.store.transaction():
            if (inode := self.store.get_inode(top)) is not None:
                self._free(inode, now, changes)
            self.store.set_building(top, False, 0)

    def file_chunks(self, ino: int, first: int, count: int):  # type: ignore[no-untyped-def]
        with self.store.transaction():
            inode = self._inode(ino)
            if not stat.S_ISREG(inode.mode):
                raise FsError(errno.EISDIR if stat.S_ISDIR(inode.mode) else errno.EINVAL, "not a regular file")
            return inode, self.store.file_chunks(ino, first, count)


def _normal(path: str) -> bytes:
    """An absolute path as the trash keeps them: b"/a/b" (b"/" for the root)."""
    return b"/" + b"/".join(split_path(path))


def _owned_in(folder: Inode, mode: int, gid: int) -> tuple[int, int]:
    """A new node's mode and group in `folder`: a setgid folder gives it its group, and a new
    folder its setgid bit too, as on Linux (shared team folders rely on it). (The kernel has
    already dropped a setgid bit the caller may not set.)"""
    if not folder.mode & stat.S_ISGID:
        return mode, gid
    return (mode | stat.S_ISGID if stat.S_ISDIR(mode) else mode), folder.gid


def device_number(inode: Inode) -> int:
    """st_rdev: a device node's number, 0 for anything else."""
    if (stat.S_ISCHR(inode.mode) or stat.S_ISBLK(inode.mode)) and inode.target:
        return int(inode.target)
    return 0


class TreeCopy:
    """A snapshot's copy being put (Namespace.copy_tree): the nodes of a tree read by
    read_tree, a batch at a time, TREE_BATCH nodes a transaction (as changes over a tree are),
    below a top that is named only at the end (and recorded as building until then), so that
    it appears whole or not at all.

    The copy has the same modes, owners, times (but ctime), targets, xattrs, own goals and chunk
    sizes; a file named several times in the tree is one file named as many times in the copy;
    each chunk of its files is replaced by a reserved chunk holding the same bytes. Should it
    fail, `remove` takes away what was made; a master stopped midway removes it when it starts
    again (Namespace.remove_unfinished_snapshots)."""

    def __init__(self, ns: Namespace, path: str, parts: list[bytes]) -> None:
        self.ns, self.path, self.top_name = ns, path, parts[-1]
        self.folder_path = "/" + "/".join(p.decode(errors="surrogateescape") for p in parts[:-1])
        self.top: Inode | None = None  # the copy of the tree's top, once put
        self.folders: dict[int, Inode] = {}  # a folder's index among the tree's nodes -> its copy
        self.linked: dict[int, Inode] = {}  # a file of several names -> its copy, as named so far
        self.nodes = 0  # the tree's nodes put so far
        self.files = self.folders_made = 0

    def put(self, nodes: Sequence[TreeNode], new_chunks: dict[int, int], changes: ChunkChanges) -> None:
        """Puts the tree's next nodes (the first of the first: its top), each chunk of theirs
        replaced by new_chunks[chunk]; changes.live gets the chunks that went live."""
        nodes = list(nodes)
        if self.top is None and nodes:
            self._put_top(nodes.pop(0), new_chunks, changes)
        self.ns._in_batches(nodes, lambda node: self._put(node, new_chunks, changes))

    def name(self) -> None:
        """Names the copy's top: the copy appears, whole. (EDQUOT here: the whole copy counts.)"""
        ns, top = self.ns, self.top
        assert top is not None
        with ns.store.transaction():
            parent = ns._dir(ns.resolve(self.folder_path).id)
            ns._refuse_taken(parent.id, self.top_name, self.path)
            ns.store.insert_dentry(parent.id, self.top_name, top.id)
            if stat.S_ISDIR(top.mode):
                parent.nlink += 1
            ns._touch(parent, ns.clock())
            ns.store.set_building(top.id, False, 0)

    def remove(self, changes: ChunkChanges) -> None:
        """Takes away what was put (its chunks go to changes.garbage)."""
        if self.top is not None:
            self.ns._remove_unnamed(self.top.id, changes)
            self.top = None

    def _put_top(self, node: TreeNode, new_chunks: dict[int, int], changes: ChunkChanges) -> None:
        ns = self.ns
        with ns.store.transaction():
            parent = ns.resolve(self.folder_path)
            if not stat.S_ISDIR(parent.mode):
                raise FsError(errno.ENOTDIR, f"the folder of {self.path} is not a folder")
            ns._refuse_taken(parent.id, self.top_name, self.path)
            if stat.S_ISDIR(node.inode.mode):
                ns._refuse_move_into_itself(node.inode.id, parent.id, verb="copy")
            top = self._copy(node, parent, new_chunks, changes)
            ns.store.set_building(top.id, True, ns.clock())
        self.top, self.nodes = top, 1

    def _put(self, node: TreeNode, new_chunks: dict[int, int], changes: ChunkChanges) -> None:
        copied = self.linked.get(node.inode.id)
        if copied is not None:  # (another name of a file already copied)
            copied.nlink += 1
            self.ns.store.update_inode(copied)
        else:
            copied = self._copy(node, self.folders[node.parent], new_chunks, changes)
        self.ns.store.insert_dentry(self.folders[node.parent].id, node.name, copied.id)
        self.nodes += 1

    def _copy(self, node: TreeNode, folder: Inode, new_chunks: dict[int, int], changes: ChunkChanges) -> Inode:
        # A folder's links are its own two and its subfolders', as in the source at the moment
        # read; a file's are its names in the tree, counted as they come.
        folder_node = stat.S_ISDIR(node.inode.mode)
        nlink = node.inode.nlink if folder_node else 1
        copied = self.ns._copy_node(node, nlink, folder, self.ns.clock(), changes, new_chunks)
        if folder_node:
            self.folders[self.nodes] = copied
            self.folders_made += 1
        else:
            self.files += 1
            if node.inode.nlink > 1:
                self.linked[node.inode.id] = copied
        return copied
