"""Durable metadata: the one place that knows how the namespace and chunk table are stored.

`MetadataStore` is the interface the namespace logic uses; `SqliteStore` is the embedded engine.
Every change happens inside `transaction()` and is on disk when it returns (WAL with
synchronous=FULL), so a `kill -9` of the master at any moment loses no acknowledged change.

Schema (every column and sentinel explained here, and only here):

    inodes      one row per file, directory or symlink
      id            inode number; 1 is the root; never reused (AUTOINCREMENT)
      mode          st_mode, file type bits included
      uid, gid, nlink, size
      atime_ns, mtime_ns, ctime_ns   nanoseconds since the epoch
      chunk_size    bytes per chunk slot, fixed when the file is created; a folder's: of the
                    files made in it, passed on to folders made in it (0: the cluster's); 0 for
                    anything else
      target        symlink target; NULL for other types

    dentries    one row per name in a directory
      id            stable readdir cursor (rows are never renumbered)
      parent, name, inode      name is raw bytes, unique within parent

    chunks      every chunk id ever handed out, until no keeper holds it any more
      id            the chunk id (16 hex digits on the wire)
      state         0 PENDING: reserved for an upload in progress, safe from garbage collection
                    1 LIVE: slot `idx` of file `inode`
                    2 GARBAGE: no longer referenced; keepers delete it after the grace period
      inode, idx    set only while LIVE
      length        bytes of the chunk the file uses (less than stored_length after a truncate)
      stored_length, crc   what the keepers hold; 0 while PENDING
      since_ns      when it entered its state (PENDING lease start, GARBAGE grace start)

    xattrs      extended attributes
      inode, name, value       name and value are raw bytes; rows go with their inode

    orphans     files whose last name is gone while a mount still has them open (nlink 0)
      inode, since_ns          freed, with their chunks, once no mount holds them open

    trash       orphans also kept for the trash time after their last name went
      inode, path, deleted_ns  path: where that name was (to list and restore by)

    goals       copies to keep of the chunks of a file, or of what is made in a folder, where
                that is not the cluster's goal (MooseFS's goal, HDFS's replication factor)
      inode, goal              new files and folders take their folder's row; rows go with
                               their inode

    meta        key/value: schema_version, next_chunk_id, cluster_id (random, made with the store),
                drain:KEEPER-ID (since when, ns) for each keeper being drained, and
                building:INODE (since when, ns) for each snapshot being put in place a batch at a
                time: the top of its copy, not named yet (a master that stopped midway removes it)

    journal     every row change of the tables above, in commit order (MooseFS's changelog):
                written by triggers inside the changing transaction, so it is exactly as durable;
                shipped to keepers as it grows, and pruned once a metadata copy holds it
      seq           its place in the order; never reused (AUTOINCREMENT, so sqlite_sequence
                    keeps the last one issued, also in a copy of the store)
      tbl, deleted  the table changed; 0: the row now reads c0.., 1: the row keyed c0.. is gone;
                    tbl 'commit' ends each transaction's changes (a restore applies whole ones)
      c0 .. c10     the row's columns in table order (a deleted row: its key columns only)
"""

from __future__ import annotations

import array
import errno
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import astuple, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Protocol

from fusedfs.errors import FsError

ROOT_INODE = 1
# 2 added xattrs and orphans, 3 the journal, 4 the trash, 5 goals, 6 quotas, the answers kept for
# retries and the mounts' open files (older stores are upgraded in place)
SCHEMA_VERSION = 6
S_IFMT, S_IFREG = 0o170000, 0o100000  # (as stat's: a regular file's mode, in SQL too)


class ChunkState(IntEnum):
    PENDING = 0
    LIVE = 1
    GARBAGE = 2


@dataclass
class Inode:
    id: int
    mode: int
    uid: int
    gid: int
    nlink: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    chunk_size: int = 0
    target: bytes | None = None
    has_xattrs: bool | None = None  # filled by get_inode and list_dentries (not a column: from xattrs)
    goal: int = 0  # its own goal, 0: none (not a column: from goals; filled by get_inode and list_dentries)
    # Bytes of a file that its live chunks hold (not a column: the sum of their lengths; filled by
    # get_inode and list_dentries, and by whatever changes the chunks, for the attributes it returns)
    stored: int = 0


@dataclass(frozen=True)
class Dentry:
    cursor: int
    name: bytes
    inode: int


@dataclass(frozen=True)
class ChunkRow:
    id: int
    state: ChunkState
    inode: int | None
    idx: int | None
    length: int
    stored_length: int
    crc: int
    since_ns: int


@dataclass(frozen=True)
class Usage:
    """What a folder holds, all the way down (a file with several names there counted once)."""

    files: int = 0  # everything but folders
    folders: int = 0
    bytes: int = 0  # the files' sizes
    chunks: int = 0
    stored_bytes: int = 0  # the chunks' bytes on a keeper (one copy)
    kept_bytes: int = 0  # the chunks' bytes on all keepers together, each file's at its goal


@dataclass(frozen=True)
class Quota:
    """A folder's limits (0: none) and what is under it now, counted by name: every file,
    folder, symlink or other node (a file with two names there counts twice, as `du -l` does),
    and the sizes of the regular files among them."""

    inode: int
    max_entries: int
    max_bytes: int
    entries: int
    bytes: int


@dataclass(frozen=True)
class TrashRow:
    inode: int
    path: bytes
    size: int
    deleted_ns: int


@dataclass(frozen=True)
class JournalEntry:
    """One row change: `values` is the whole row as it now reads, or for a deleted row its key."""

    seq: int
    table: str
    deleted: bool
    values: tuple[int | bytes | str | None, ...]


class MetadataStore(Protocol):
    """What the namespace needs from a storage engine; all calls inside transaction()."""

    def transaction(self) -> AbstractContextManager[None]: ...
    def after_commit(self, callback: Callable[[], None]) -> None: ...
    def room_bytes(self) -> int: ...
    def cluster_id(self) -> str: ...
    def get_inode(self, ino: int) -> Inode | None: ...
    def stored_bytes(self, ino: int) -> int: ...
    def insert_inode(self, inode: Inode) -> int: ...
    def update_inode(self, inode: Inode) -> None: ...
    def delete_inode(self, ino: int) -> None: ...
    def lookup(self, parent: int, name: bytes) -> Dentry | None: ...
    def insert_dentry(self, parent: int, name: bytes, ino: int) -> None: ...
    def delete_dentry(self, parent: int, name: bytes) -> None: ...
    def list_dentries(self, parent: int, after: int, limit: int) -> list[tuple[Dentry, Inode]]: ...
    def has_children(self, ino: int) -> bool: ...
    def name_of(self, ino: int) -> tuple[int, bytes] | None: ...
    def new_chunk(self, now_ns: int) -> int: ...
    def get_chunk(self, chunk_id: int) -> ChunkRow | None: ...
    def file_chunks(self, ino: int, first: int = 0, count: int = 0) -> list[ChunkRow]: ...
    def first_chunks(self, inodes: list[int]) -> list[ChunkRow]: ...
    def make_live(self, chunk_id: int, ino: int, idx: int, length: int, crc: int, now_ns: int) -> None: ...
    def set_chunk_length(self, chunk_id: int, length: int) -> None: ...
    def make_garbage(self, chunk_ids: list[int], now_ns: int) -> None: ...
    def purge_chunks(self, chunk_ids: list[int]) -> None: ...
    def all_chunks(self) -> list[ChunkRow]: ...
    def next_chunk_id(self) -> int: ...
    def count_inodes(self) -> tuple[int, int]: ...
    def get_xattr(self, ino: int, name: bytes) -> bytes | None: ...
    def set_xattr(self, ino: int, name: bytes, value: bytes) -> None: ...
    def delete_xattr(self, ino: int, name: bytes) -> bool: ...
    def list_xattrs(self, ino: int) -> list[bytes]: ...
    def add_orphan(self, ino: int, now_ns: int) -> None: ...
    def remove_orphan(self, ino: int) -> None: ...
    def orphans(self, before_ns: int | None = None, trashed_before_ns: int | None = None) -> list[int]: ...
    def put_in_trash(self, ino: int, path: bytes, now_ns: int) -> None: ...
    def take_from_trash(self, ino: int) -> None: ...
    def trash(self, path: bytes = b"/") -> list[TrashRow]: ...
    def trash_totals(self) -> tuple[int, int]: ...
    def usage(self, folder: int, goal: int) -> dict[int, Usage]: ...
    def draining_keepers(self) -> set[str]: ...
    def set_goal(self, ino: int, goal: int) -> None: ...
    def chunk_goals(self) -> dict[int, int]: ...
    def subtree(self, ino: int) -> list[int]: ...
    def set_draining(self, keeper_id: str, draining: bool, now_ns: int) -> None: ...
    def set_building(self, ino: int, building: bool, now_ns: int) -> None: ...
    def building(self) -> list[int]: ...
    def reading(self) -> AbstractContextManager[MetadataStore]: ...
    def quota(self, ino: int) -> Quota | None: ...
    def saved_reply(self, request_id: int, method: str) -> bytes | None: ...
    def save_reply(self, request_id: int, method: str, reply: bytes, now_ns: int) -> None: ...
    def save_session(self, session_id: str, open_inodes: frozenset[int] | None) -> None: ...
    def set_quota(self, ino: int, max_entries: int, max_bytes: int) -> Quota | None: ...
    def subtree_size(self, ino: int) -> tuple[int, int]: ...


_INODE_COLUMNS = "id, mode, uid, gid, nlink, size, atime_ns, mtime_ns, ctime_ns, chunk_size, target"
_CHUNK_COLUMNS = "id, state, inode, idx, length, stored_length, crc, since_ns"
_GOAL = "COALESCE((SELECT goal FROM goals WHERE goals.inode = {}.id), 0)"  # an inode's own goal (0: none)
_HAS_XATTRS = "EXISTS (SELECT 1 FROM xattrs WHERE xattrs.inode = {}.id)"
_STORED = "(SELECT COALESCE(SUM(length), 0) FROM chunks WHERE chunks.inode = {} AND state = 1)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
    nlink INTEGER NOT NULL, size INTEGER NOT NULL,
    atime_ns INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL, target BLOB
);
CREATE TABLE IF NOT EXISTS dentries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER NOT NULL, name BLOB NOT NULL, inode INTEGER NOT NULL,
    UNIQUE (parent, name)
);
CREATE INDEX IF NOT EXISTS dentries_by_inode ON dentries (inode);
-- A folder's names in the order ReadDir pages through them (by the (parent, name) index each
-- page read every name of the folder and sorted them: a folder of 100,000 took 8 s to list).
CREATE INDEX IF NOT EXISTS dentries_by_parent ON dentries (parent, id);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    state INTEGER NOT NULL, inode INTEGER, idx INTEGER,
    length INTEGER NOT NULL, stored_length INTEGER NOT NULL, crc INTEGER NOT NULL,
    since_ns INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS chunks_by_slot ON chunks (inode, idx) WHERE state = 1;
-- A file's stored bytes, which every attribute reply carries, summed from this index alone (from
-- the rows, a file of 4,000 chunks took 0.8 ms a reply, twice in each of its commits, now 0.3).
CREATE INDEX IF NOT EXISTS chunks_lengths ON chunks (inode, length) WHERE state = 1;
CREATE TABLE IF NOT EXISTS xattrs (
    inode INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (inode, name)
);
CREATE TABLE IF NOT EXISTS orphans (inode INTEGER PRIMARY KEY, since_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS trash (inode INTEGER PRIMARY KEY, path BLOB NOT NULL, deleted_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS trash_by_path ON trash (path);
CREATE TABLE IF NOT EXISTS goals (inode INTEGER PRIMARY KEY, goal INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (session_id TEXT PRIMARY KEY, open_inodes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS replies (
    request_id INTEGER PRIMARY KEY, method TEXT NOT NULL, reply BLOB NOT NULL, at_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS quotas (
    inode INTEGER PRIMARY KEY,
    max_entries INTEGER NOT NULL, max_bytes INTEGER NOT NULL, entries INTEGER NOT NULL, bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, deleted INTEGER NOT NULL,
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10
);
-- How many inodes there are of each kind (0: not a folder, 1: a folder), for StatFs (every `df`
-- of every mount) and status, which scanned the inodes for it (0.1 s a million). Kept by the
-- triggers below in the transaction of each change; not journaled, and counted again whenever
-- the store is opened and after a replay (whose INSERT OR REPLACE fires no delete trigger).
CREATE TABLE IF NOT EXISTS inode_counts (folders INTEGER PRIMARY KEY, n INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS inode_counts_insert AFTER INSERT ON inodes BEGIN
    UPDATE inode_counts SET n = n + 1 WHERE folders = ((NEW.mode & 61440) = 16384); END;
CREATE TRIGGER IF NOT EXISTS inode_counts_delete AFTER DELETE ON inodes BEGIN
    UPDATE inode_counts SET n = n - 1 WHERE folders = ((OLD.mode & 61440) = 16384); END;
CREATE TRIGGER IF NOT EXISTS inode_counts_update AFTER UPDATE OF mode ON inodes
    WHEN (OLD.mode & 61440) != (NEW.mode & 61440) BEGIN
    UPDATE inode_counts
    SET n = n + (folders = ((NEW.mode & 61440) = 16384)) - (folders = ((OLD.mode & 61440) = 16384)); END;
"""

DRAIN_KEY = "drain:"  # meta keys of keepers being drained: drain:KEEPER-ID
BUILDING_KEY = "building:"  # meta keys of snapshots being put in place: building:INODE
COMMIT_MARK = "commit"  # the journal's `tbl` of the row that ends a transaction's changes
# The journaled tables: their columns in table order, and how many of the first make the key.
JOURNALED: dict[str, tuple[tuple[str, ...], int]] = {
    "meta": (("key", "value"), 1),
    "inodes": (tuple(_INODE_COLUMNS.split(", ")), 1),
    "dentries": (("id", "parent", "name", "inode"), 1),
    "chunks": (tuple(_CHUNK_COLUMNS.split(", ")), 1),
    "xattrs": (("inode", "name", "value"), 2),
    "orphans": (("inode", "since_ns"), 1),
    "trash": (("inode", "path", "deleted_ns"), 1),
    "goals": (("inode", "goal"), 1),
    "quotas": (("inode", "max_entries", "max_bytes", "entries", "bytes"), 1),
}


def _journal_triggers() -> Iterator[str]:
    for table, (columns, key) in JOURNALED.items():
        slots = ", ".join(f"c{i}" for i in range(len(columns)))
        for event in ("INSERT", "UPDATE"):
            yield (
                f"CREATE TRIGGER IF NOT EXISTS journal_{table}_{event.lower()} AFTER {event} ON {table} BEGIN"
                f" INSERT INTO journal (tbl, deleted, {slots}) VALUES ('{table}', 0, "
                f"{', '.join('NEW.' + c for c in columns)}); END"
            )
        key_slots = ", ".join(f"c{i}" for i in range(key))
        yield (
            f"CREATE TRIGGER IF NOT EXISTS journal_{table}_delete AFTER DELETE ON {table} BEGIN"
            f" INSERT INTO journal (tbl, deleted, {key_slots}) VALUES ('{table}', 1, "
            f"{', '.join('OLD.' + c for c in columns[:key])}); END"
        )


def _journal_end_of(db: sqlite3.Connection) -> int:
    """The seq of the last change ever journaled in this database (0: none)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'journal'").fetchone()
    return int(row[0]) if row else 0


def _inode(row: tuple) -> Inode:  # type: ignore[type-arg]
    return Inode(*row)


def _columns(inode: Inode) -> tuple[int | bytes | None, ...]:
    """The stored columns of an inode but its id, in table order."""
    return (
        inode.mode, inode.uid, inode.gid, inode.nlink, inode.size,
        inode.atime_ns, inode.mtime_ns, inode.ctime_ns, inode.chunk_size, inode.target,
    )  # fmt: skip


def _chunk(row: tuple) -> ChunkRow:  # type: ignore[type-arg]
    return ChunkRow(row[0], ChunkState(row[1]), *row[2:])


class SqliteStore:
    """MetadataStore on SQLite in WAL mode; one connection, serialised by a lock."""

    def __init__(self, path: Path, root_mode: int, now_ns: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._lock = threading.RLock()
        self._depth = 0
        self._journal_end = 0  # the seq of the last change journaled (kept here: one connection writes)
        self._unjournaled = 0  # rows the transaction changed that the journal does not hold (pruned ones)
        self._after_commit: list[Callable[[], None]] = []  # what to call once it is committed
        with self.transaction():
            for statement in _SCHEMA.split(";\n"):  # not executescript(): it would commit midway
                if statement.strip():
                    self._db.execute(statement)
            for trigger in _journal_triggers():
                self._db.execute(trigger)
            if self._db.execute("SELECT 1 FROM inodes WHERE id = ?", (ROOT_INODE,)).fetchone() is None:
                self._db.execute(
                    "INSERT INTO inodes VALUES (?, ?, 0, 0, 2, 0, ?, ?, ?, 0, NULL)",
                    (ROOT_INODE, root_mode, now_ns, now_ns, now_ns),
                )
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                self._db.execute("INSERT INTO meta VALUES ('next_chunk_id', 1)")
            # (stores made before cluster ids get theirs now)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('cluster_id', ?)", (secrets.randbits(63),))
            version = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
            if version in (1, 2, 3, 4, 5):  # its new tables and triggers were just created
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
                version = SCHEMA_VERSION
            if version != SCHEMA_VERSION:
                raise RuntimeError(f"metadata schema version {version}; this master reads {SCHEMA_VERSION}")
            self._count_inodes_again()
        self._journal_end = _journal_end_of(self._db)
        self._any_quota = self._has_quotas()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def snapshot(self, dest: Path, timeout: float = 60.0) -> int:
        """A consistent copy of the whole store, as one SQLite file at dest (SQLite's online
        backup); returns the seq of the last journaled change it holds. It reads through a
        connection of its own, which WAL lets read while this one writes: the store is never held
        up by it. TimeoutError if it cannot finish in time (SQLite's backup would otherwise retry
        a locked database for good)."""
        deadline = time.monotonic() + timeout

        def give_up_late(status: int, remaining: int, total: int) -> None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"metadata snapshot not done within {timeout:g} s")

        source, target = sqlite3.connect(self.path), sqlite3.connect(dest)
        try:
            source.backup(target, progress=give_up_late)
            return _journal_end_of(target)
        finally:
            target.close()
            source.close()

    @contextmanager
    def reading(self) -> Iterator[SqliteStore]:
        """The store as it is at this moment, to read from (as one transaction: calls to its
        transaction() join it), through a connection of its own, as snapshot(): WAL lets it go on
        reading that moment while this one writes, so a long read (a snapshot's tree) holds
        nothing up."""
        view = SqliteStore.__new__(SqliteStore)
        view.path = self.path
        view._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        view._lock = threading.RLock()
        view._depth = 1  # (inside a transaction for good: every transaction() joins the read)
        view._after_commit, view._unjournaled = [], 0
        with self._lock:
            view._any_quota = self._any_quota
            view._journal_end = self._journal_end
        try:
            view._db.execute("BEGIN")
            view._db.execute("SELECT 1 FROM meta LIMIT 1").fetchone()  # (the moment read is fixed here)
            yield view
        finally:
            view._db.close()

    def usage(self, folder: int, goal: int) -> dict[int, Usage]:
        """What folder holds, by its entry each one is under (inode -> usage), and in all (key
        the folder itself); goal: the cluster's, for files without their own. Read through a
        view of its own (reading()): a big tree takes seconds, during which the store is not held
        up."""
        walk = (
            "WITH RECURSIVE under(inode, top) AS ("
            " SELECT inode, inode FROM dentries WHERE parent = :folder"
            " UNION ALL SELECT d.inode, under.top FROM dentries d JOIN under ON d.parent = under.inode)"
        )
        totals = (
            " SUM((i.mode & 61440) != 16384), SUM((i.mode & 61440) = 16384),"
            " TOTAL(CASE WHEN (i.mode & 61440) = 32768 THEN i.size END),"
            " SUM((SELECT COUNT(*) FROM chunks c WHERE c.inode = u.inode AND c.state = 1)),"
            " SUM((SELECT TOTAL(stored_length) FROM chunks c WHERE c.inode = u.inode AND c.state = 1)),"
            " SUM((SELECT TOTAL(stored_length) FROM chunks c WHERE c.inode = u.inode AND c.state = 1)"
            " * COALESCE((SELECT goal FROM goals g WHERE g.inode = u.inode), :goal))"
        )
        with self.reading() as moment:  # (both queries see one state of the store)
            rows = moment._db.execute(
                f"{walk} SELECT u.top, {totals} FROM (SELECT DISTINCT inode, top FROM under) u"
                " JOIN inodes i ON i.id = u.inode GROUP BY u.top",
                {"folder": folder, "goal": goal},
            ).fetchall()
            rows += moment._db.execute(
                f"{walk} SELECT :folder, {totals} FROM (SELECT DISTINCT inode FROM under) u"
                " JOIN inodes i ON i.id = u.inode",
                {"folder": folder, "goal": goal},
            ).fetchall()
        return {top: Usage(*(int(v or 0) for v in values)) for top, *values in rows}

    # --- the journal --------------------------------------------------------------------------------

    def journal_end(self) -> int:
        """The seq of the last change ever journaled (0: none); it moves on with every change."""
        with self._lock:
            return self._journal_end

    def journal_after(self, seq: int, limit: int) -> list[JournalEntry]:
        """The oldest `limit` changes after seq, oldest first."""
        with self.transaction():
            rows = self._db.execute(
                "SELECT seq, tbl, deleted, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10 FROM journal"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        entries = []
        for row in rows:
            columns, key = JOURNALED.get(row[1], ((), 0))  # (COMMIT_MARK has no columns)
            width = key if row[2] else len(columns)
            entries.append(JournalEntry(row[0], row[1], bool(row[2]), tuple(row[3 : 3 + width])))
        return entries

    def prune_journal(self, upto: int) -> None:
        """Forgets the changes up to seq `upto` (a copy on the keepers holds them)."""
        with self.transaction():
            self._unjournaled += self._db.execute("DELETE FROM journal WHERE seq <= ?", (upto,)).rowcount

    def apply_journal(self, entries: Iterable[JournalEntry]) -> int:
        """Replays the changes made after this store was copied, in order and in one transaction:
        whole transactions only, up to the first change that does not fit the schema (there
        should be none) or the end. Returns the seq of the last change applied (0: none)."""
        applied, started = 0, False
        with self.transaction():
            for entry in entries:
                if entry.table == COMMIT_MARK:
                    if started:
                        self._db.execute("RELEASE replayed")
                        started = False
                    applied = entry.seq
                    continue
                columns, key = JOURNALED.get(entry.table, ((), 0))
                if not columns or len(entry.values) != (key if entry.deleted else len(columns)):
                    break
                if not started:
                    self._db.execute("SAVEPOINT replayed")
                    started = True
                if entry.deleted:
                    where = " AND ".join(f"{c} = ?" for c in columns[:key])
                    self._db.execute(f"DELETE FROM {entry.table} WHERE {where}", entry.values)
                else:
                    marks = ", ".join("?" * len(columns))
                    self._db.execute(f"INSERT OR REPLACE INTO {entry.table} VALUES ({marks})", entry.values)
            if started:  # the changes of a transaction the journal does not hold whole
                self._db.execute("ROLLBACK TO replayed")
                self._db.execute("RELEASE replayed")
            self._any_quota = self._has_quotas()
            self._count_inodes_again()
        return applied

    def skip_ids(self, count: int) -> None:
        """Moves the chunk id and inode counters on: ids issued after what a restored store
        holds (chunks keepers hold under them, inodes mounts still hold open) are never issued
        again."""
        with self.transaction():
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'next_chunk_id'", (count,))
            self._db.execute("UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'inodes'", (count,))

    def cluster_id(self) -> str:
        """The id of the cluster this metadata describes: 16 hex digits, made with the store."""
        with self.transaction():
            value = self._db.execute("SELECT value FROM meta WHERE key = 'cluster_id'").fetchone()[0]
        return f"{value:016x}"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction, committed (durably) on success and rolled back on any exception.

        Nested use joins the outer transaction. A transaction that changed anything ends its
        changes in the journal with a COMMIT_MARK row. What after_commit was given is called
        once it is committed, with the store free again (the callbacks take other locks, and
        the cluster calls into the store under its own).
        """
        committed: list[Callable[[], None]] = []
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            changes = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            self._depth, self._unjournaled, self._after_commit = 1, 0, []
            try:
                yield
                journal_end = self._journal_end
                # Every change but the journal's pruning is journaled (by the triggers).
                if self._db.total_changes - changes > self._unjournaled:
                    mark = self._db.execute(f"INSERT INTO journal (tbl, deleted) VALUES ('{COMMIT_MARK}', 0)")
                    journal_end = mark.lastrowid or journal_end
                self._db.execute("COMMIT")
            except BaseException as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error) and e.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL:
                    raise FsError(errno.ENOSPC, "the master's metadata disk is full") from e
                raise
            else:
                self._journal_end = journal_end
                committed = self._after_commit
            finally:
                self._depth, self._after_commit = 0, []
        for callback in committed:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Calls back once the transaction under way is committed (at once outside one; never
        if it is rolled back): what is told to others of a change (the cluster's chunk states)
        must not run ahead of the change being durable."""
        with self._lock:
            if self._depth:
                self._after_commit.append(callback)
                return
        callback()

    def room_bytes(self) -> int:
        """Bytes the metadata can still grow by and leave room for a copy of itself (a metadata
        copy is taken on this disk before it is sent): the free space of its disk and the pages
        SQLite freed and reuses (a deletion frees pages, not disk space), less its size."""
        st = os.statvfs(self.path.parent)
        with self._lock:
            free_pages, pages, page_size = (
                self._db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("freelist_count", "page_count", "page_size")
            )
        return st.f_bavail * st.f_frsize + (free_pages - pages) * page_size

    # --- inodes and names ------------------------------------------------------------------------

    def get_inode(self, ino: int) -> Inode | None:
        row = self._db.execute(
            f"SELECT {_INODE_COLUMNS}, {_HAS_XATTRS.format('inodes')}, {_GOAL.format('inodes')},"
            f" {_STORED.format('inodes.id')} FROM inodes WHERE id = ?",
            (ino,),
        ).fetchone()
        if not row:
            return None
        inode = _inode(row[:-3])
        inode.has_xattrs, inode.goal, inode.stored = bool(row[-3]), row[-2], row[-1]
        return inode

    def stored_bytes(self, ino: int) -> int:
        return int(self._db.execute(f"SELECT {_STORED.format('?')}", (ino,)).fetchone()[0])

    def insert_inode(self, inode: Inode) -> int:
        cur = self._db.execute(
            "INSERT INTO inodes (mode, uid, gid, nlink, size, atime_ns, mtime_ns, ctime_ns, chunk_size, target)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _columns(inode),
        )
        assert cur.lastrowid is not None
        inode.id = cur.lastrowid
        return cur.lastrowid

    def update_inode(self, inode: Inode) -> None:
        if self._any_quota and inode.mode & S_IFMT == S_IFREG:
            (size,) = self._db.execute("SELECT size FROM inodes WHERE id = ?", (inode.id,)).fetchone()
            if inode.size != size:
                for (parent,) in self._db.execute(
                    "SELECT parent FROM dentries WHERE inode = ?", (inode.id,)
                ).fetchall():
                    self._charge(parent, 0, inode.size - size)
        self._db.execute(
            "UPDATE inodes SET mode=?, uid=?, gid=?, nlink=?, size=?, atime_ns=?, mtime_ns=?, ctime_ns=?,"
            " chunk_size=?, target=? WHERE id=?",
            (*_columns(inode), inode.id),
        )

    def delete_inode(self, ino: int) -> None:
        self._db.execute("DELETE FROM inodes WHERE id = ?", (ino,))
        self._db.execute("DELETE FROM xattrs WHERE inode = ?", (ino,))
        self._db.execute("DELETE FROM orphans WHERE inode = ?", (ino,))
        self._db.execute("DELETE FROM trash WHERE inode = ?", (ino,))
        self._db.execute("DELETE FROM goals WHERE inode = ?", (ino,))
        if self._any_quota:
            self._db.execute("DELETE FROM quotas WHERE inode = ?", (ino,))

    def lookup(self, parent: int, name: bytes) -> Dentry | None:
        row = self._db.execute(
            "SELECT id, name, inode FROM dentries WHERE parent = ? AND name = ?", (parent, name)
        ).fetchone()
        return Dentry(*row) if row else None

    def insert_dentry(self, parent: int, name: bytes, ino: int) -> None:
        if self._any_quota:
            self._charge(parent, *self._weight(ino))
        self._db.execute("INSERT INTO dentries (parent, name, inode) VALUES (?, ?, ?)", (parent, name, ino))

    def delete_dentry(self, parent: int, name: bytes) -> None:
        if self._any_quota:
            entry = self.lookup(parent, name)
            if entry is not None:
                entries, size = self._weight(entry.inode)
                self._charge(parent, -entries, -size)
        self._db.execute("DELETE FROM dentries WHERE parent = ? AND name = ?", (parent, name))

    def list_dentries(self, parent: int, after: int, limit: int) -> list[tuple[Dentry, Inode]]:
        rows = self._db.execute(
            f"SELECT d.id, d.name, d.inode, {', '.join('i.' + c.strip() for c in _INODE_COLUMNS.split(','))},"
            f" {_HAS_XATTRS.format('i')}, {_GOAL.format('i')}, {_STORED.format('i.id')}"
            " FROM dentries d JOIN inodes i ON i.id = d.inode WHERE d.parent = ? AND d.id > ? ORDER BY d.id LIMIT ?",
            (parent, after, limit),
        ).fetchall()
        listed = [(Dentry(*row[:3]), _inode(row[3:-3])) for row in rows]
        for (_, inode), row in zip(listed, rows, strict=True):
            inode.has_xattrs, inode.goal, inode.stored = bool(row[-3]), row[-2], row[-1]
        return listed

    def has_children(self, ino: int) -> bool:
        return self._db.execute("SELECT 1 FROM dentries WHERE parent = ? LIMIT 1", (ino,)).fetchone() is not None

    def name_of(self, ino: int) -> tuple[int, bytes] | None:
        """A name of the inode: its parent and name (a directory's only one); None if it has none."""
        row = self._db.execute("SELECT parent, name FROM dentries WHERE inode = ? LIMIT 1", (ino,)).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def count_inodes(self) -> tuple[int, int]:
        """(files, directories): files are every inode not a directory (symlinks, special files,
        and the files the trash or an open handle still holds, too)."""
        counts = dict(self._db.execute("SELECT folders, n FROM inode_counts").fetchall())
        return counts.get(0, 0), counts.get(1, 0)

    def _count_inodes_again(self) -> None:
        changes = self._db.total_changes
        self._db.execute("DELETE FROM inode_counts")
        self._db.execute(
            "INSERT INTO inode_counts SELECT 0, COUNT(*) FROM inodes WHERE (mode & 61440) != 16384"
            " UNION ALL SELECT 1, COUNT(*) FROM inodes WHERE (mode & 61440) = 16384"
        )
        self._unjournaled += self._db.total_changes - changes  # (no change of the metadata's)

    # --- extended attributes and orphans ----------------------------------------------------------

    def get_xattr(self, ino: int, name: bytes) -> bytes | None:
        row = self._db.execute("SELECT value FROM xattrs WHERE inode = ? AND name = ?", (ino, name)).fetchone()
        return bytes(row[0]) if row else None

    def set_xattr(self, ino: int, name: bytes, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO xattrs VALUES (?, ?, ?)", (ino, name, value))

    def delete_xattr(self, ino: int, name: bytes) -> bool:
        return self._db.execute("DELETE FROM xattrs WHERE inode = ? AND name = ?", (ino, name)).rowcount > 0

    def list_xattrs(self, ino: int) -> list[bytes]:
        rows = self._db.execute("SELECT name FROM xattrs WHERE inode = ? ORDER BY name", (ino,))
        return [bytes(r[0]) for r in rows]

    def add_orphan(self, ino: int, now_ns: int) -> None:
        self._db.execute("INSERT OR IGNORE INTO orphans VALUES (?, ?)", (ino, now_ns))

    def remove_orphan(self, ino: int) -> None:
        self._db.execute("DELETE FROM orphans WHERE inode = ?", (ino,))

    def orphans(self, before_ns: int | None = None, trashed_before_ns: int | None = None) -> list[int]:
        """Orphans' inodes; given times, only those orphaned at or before before_ns and not in
        the trash, or put there at or before trashed_before_ns."""
        if before_ns is None:
            return [r[0] for r in self._db.execute("SELECT inode FROM orphans ORDER BY inode")]
        rows = self._db.execute(
            "SELECT o.inode FROM orphans o LEFT JOIN trash t ON t.inode = o.inode"
            " WHERE o.since_ns <= ? AND (t.deleted_ns IS NULL OR t.deleted_ns <= ?) ORDER BY o.inode",
            (before_ns, before_ns if trashed_before_ns is None else trashed_before_ns),
        )
        return [r[0] for r in rows]

    def put_in_trash(self, ino: int, path: bytes, now_ns: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO trash VALUES (?, ?, ?)", (ino, path, now_ns))

    def take_from_trash(self, ino: int) -> None:
        self._db.execute("DELETE FROM trash WHERE inode = ?", (ino,))

    def set_goal(self, ino: int, goal: int) -> None:
        if goal:
            self._db.execute("INSERT OR REPLACE INTO goals VALUES (?, ?)", (ino, goal))
        else:
            self._db.execute("DELETE FROM goals WHERE inode = ?", (ino,))
        if self._any_quota:
            self._db.execute("DELETE FROM quotas WHERE inode = ?", (ino,))

    def chunk_goals(self) -> dict[int, int]:
        """Live chunk -> goal, for the chunks of files with a goal of their own."""
        query = "SELECT c.id, g.goal FROM chunks c JOIN goals g ON g.inode = c.inode WHERE c.state = 1"
        return dict(self._db.execute(query).fetchall())

    def subtree(self, ino: int) -> list[int]:
        """Every inode below a folder, each once (hard links), the folder not included."""
        rows = self._db.execute(
            "WITH RECURSIVE under(inode) AS (SELECT inode FROM dentries WHERE parent = ?"
            " UNION SELECT d.inode FROM dentries d JOIN under ON d.parent = under.inode)"
            " SELECT inode FROM under",
            (ino,),
        )
        return [r[0] for r in rows]

    # --- answers kept for retries (not journaled: a restored master has lost them) ---------------

    def saved_reply(self, request_id: int, method: str) -> bytes | None:
        """The answer of the change made for this request, if one was (by this method)."""
        row = self._db.execute(
            "SELECT reply FROM replies WHERE request_id = ? AND method = ?", (request_id, method)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def save_reply(self, request_id: int, method: str, reply: bytes, now_ns: int) -> None:
        saved = self._db.execute(
            "INSERT OR IGNORE INTO replies VALUES (?, ?, ?, ?)", (request_id, method, reply, now_ns)
        )
        self._unjournaled += saved.rowcount

    def prune_replies(self, before_ns: int) -> None:
        with self.transaction():
            pruned = self._db.execute("DELETE FROM replies WHERE at_ns < ?", (before_ns,))
            self._unjournaled += pruned.rowcount

    # --- the files each mount has open (not journaled: a restored master has lost them) ----------

    def save_session(self, session_id: str, open_inodes: frozenset[int] | None) -> None:
        """Saves what a mount has open (None: it ended)."""
        with self.transaction():
            if open_inodes is None:
                saved = self._db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            else:
                inodes = array.array("q", sorted(open_inodes)).tobytes()
                saved = self._db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?)", (session_id, inodes))
            self._unjournaled += saved.rowcount

    def saved_sessions(self) -> dict[str, frozenset[int]]:
        sessions = {}
        for session_id, inodes in self._db.execute("SELECT session_id, open_inodes FROM sessions"):
            sessions[session_id] = frozenset(array.array("q", bytes(inodes)))
        return sessions

    # --- quotas: their counters follow every name and size change made through this store ---------

    def _has_quotas(self) -> bool:
        return bool(self._db.execute("SELECT EXISTS (SELECT 1 FROM quotas)").fetchone()[0])

    def quota(self, ino: int) -> Quota | None:
        row = self._db.execute("SELECT * FROM quotas WHERE inode = ?", (ino,)).fetchone()
        return Quota(*row) if row else None

    def set_quota(self, ino: int, max_entries: int, max_bytes: int) -> Quota | None:
        """Gives folder ino these limits (0: none; both 0: no quota), counting what it holds now."""
        if not max_entries and not max_bytes:
            self._db.execute("DELETE FROM quotas WHERE inode = ?", (ino,))
            self._any_quota = self._has_quotas()
            return None
        old = self.quota(ino)
        entries, size = (old.entries, old.bytes) if old else self.subtree_size(ino)
        quota = Quota(ino, max_entries, max_bytes, entries, size)
        self._db.execute("INSERT OR REPLACE INTO quotas VALUES (?, ?, ?, ?, ?)", astuple(quota))
        self._any_quota = True
        return quota

    def subtree_size(self, ino: int) -> tuple[int, int]:
        """Names below folder ino, and the sizes of the regular files among them (by name)."""
        return self._db.execute(
            "WITH RECURSIVE under(inode) AS (SELECT inode FROM dentries WHERE parent = ?"
            " UNION ALL SELECT d.inode FROM dentries d JOIN under ON d.parent = under.inode)"
            " SELECT COUNT(*), CAST(TOTAL(CASE WHEN i.mode & ? = ? THEN i.size END) AS INTEGER)"
            " FROM under JOIN inodes i ON i.id = under.inode",
            (ino, S_IFMT, S_IFREG),
        ).fetchone()

    def _weight(self, ino: int) -> tuple[int, int]:
        """What a name of ino counts: itself, and for a folder all below it."""
        (mode, size) = self._db.execute("SELECT mode, size FROM inodes WHERE id = ?", (ino,)).fetchone()
        if mode & S_IFMT == S_IFREG:
            return 1, size
        if mode & S_IFMT != 0o040000:
            return 1, 0
        own = self.quota(ino)
        entries, size = (own.entries, own.bytes) if own else self.subtree_size(ino)
        return 1 + entries, size

    def _charge(self, folder: int, entries: int, size: int) -> None:
        """Counts entries and bytes more (or fewer) in folder and in every folder above it with a
        quota; EDQUOT, changing nothing, if that would take one past a limit (a change that
        only lowers a count is always taken, even beyond one)."""
        quotas = [
            Quota(*row)
            for row in self._db.execute(
                "WITH RECURSIVE up(inode) AS (SELECT ? UNION ALL SELECT d.parent FROM dentries d"
                f" JOIN up ON d.inode = up.inode WHERE up.inode != {ROOT_INODE})"
                " SELECT q.* FROM quotas q JOIN up ON q.inode = up.inode",
                (folder,),
            )
        ]
        for q in quotas:
            if (entries > 0 and q.max_entries and q.entries + entries > q.max_entries) or (
                size > 0 and q.max_bytes and q.bytes + size > q.max_bytes
            ):
                raise FsError(
                    errno.EDQUOT,
                    f"over the quota of folder {self._path(q.inode)}: {q.entries} of {q.max_entries or 'any'} entries,"
                    f" {q.bytes} of {q.max_bytes or 'any'} bytes used",
                )
        for q in quotas:
            self._db.execute(
                "UPDATE quotas SET entries = entries + ?, bytes = bytes + ? WHERE inode = ?", (entries, size, q.inode)
            )

    def _path(self, ino: int) -> str:
        parts: list[bytes] = []
        while ino != ROOT_INODE and (named := self.name_of(ino)) is not None and len(parts) < 4096:
            ino, name = named
            parts.append(name)
        return "/" + "/".join(os.fsdecode(p) for p in reversed(parts))

    def draining_keepers(self) -> set[str]:
        rows = self._db.execute("SELECT key FROM meta WHERE key >= 'drain:' AND key < 'drain;'")
        return {key.removeprefix(DRAIN_KEY) for (key,) in rows}

    def set_draining(self, keeper_id: str, draining: bool, now_ns: int) -> None:
        if draining:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (DRAIN_KEY + keeper_id, now_ns))
        else:
            self._db.execute("DELETE FROM meta WHERE key = ?", (DRAIN_KEY + keeper_id,))

    def set_building(self, ino: int, building: bool, now_ns: int) -> None:
        if building:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (f"{BUILDING_KEY}{ino}", now_ns))
        else:
            self._db.execute("DELETE FROM meta WHERE key = ?", (f"{BUILDING_KEY}{ino}",))

    def building(self) -> list[int]:
        rows = self._db.execute("SELECT key FROM meta WHERE key >= 'building:' AND key < 'building;'")
        return [int(key.removeprefix(BUILDING_KEY)) for (key,) in rows]

    def trash_totals(self) -> tuple[int, int]:
        """(files, bytes) in the trash."""
        files, size = self._db.execute(
            "SELECT COUNT(*), SUM(i.size) FROM trash t JOIN inodes i ON i.id = t.inode"
        ).fetchone()
        return files, size or 0

    def trash(self, path: bytes = b"/") -> list[TrashRow]:
        """What the trash holds at path or under it, newest first."""
        args: tuple[bytes, ...] = ()
        where = ""
        if path != b"/":
            # Under path/: from "path/" up to "path0" ('/' + 1), as bytes sort.
            where = " WHERE t.path = ? OR (t.path >= ? AND t.path < ?)"
            args = (path, path + b"/", path + b"0")
        rows = self._db.execute(
            "SELECT t.inode, t.path, i.size, t.deleted_ns FROM trash t JOIN inodes i ON i.id = t.inode"
            + where
            + " ORDER BY t.deleted_ns DESC, t.inode DESC",
            args,
        )
        return [TrashRow(r[0], bytes(r[1]), r[2], r[3]) for r in rows]

    # --- chunks ----------------------------------------------------------------------------------

    def new_chunk(self, now_ns: int) -> int:
        chunk_id = self.next_chunk_id()
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_chunk_id'", (chunk_id + 1,))
        self._db.execute(
            "INSERT INTO chunks VALUES (?, ?, NULL, NULL, 0, 0, 0, ?)", (chunk_id, ChunkState.PENDING, now_ns)
        )
        return chunk_id

    def next_chunk_id(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'next_chunk_id'").fetchone()[0])

    def get_chunk(self, chunk_id: int) -> ChunkRow | None:
        row = self._db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
        return _chunk(row) if row else None

    def file_chunks(self, ino: int, first: int = 0, count: int = 0) -> list[ChunkRow]:
        rows = self._db.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE state = 1 AND inode = ? AND idx >= ? ORDER BY idx LIMIT ?",
            (ino, first, count if count > 0 else -1),
        ).fetchall()
        return [_chunk(r) for r in rows]

    def first_chunks(self, inodes: list[int]) -> list[ChunkRow]:
        """The chunk in slot 0 of each of these files that has one."""
        rows = []
        for start in range(0, len(inodes), 500):  # (SQLite bounds the parameters of one query)
            some = inodes[start : start + 500]
            rows += self._db.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE state = 1 AND idx = 0"
                f" AND inode IN ({', '.join('?' * len(some))})",
                some,
            ).fetchall()
        return [_chunk(r) for r in rows]

    def make_live(self, chunk_id: int, ino: int, idx: int, length: int, crc: int, now_ns: int) -> None:
        self._db.execute(
            "UPDATE chunks SET state = 1, inode = ?, idx = ?, length = ?, stored_length = ?, crc = ?, since_ns = ?"
            " WHERE id = ?",
            (ino, idx, length, length, crc, now_ns, chunk_id),
        )

    def set_chunk_length(self, chunk_id: int, length: int) -> None:
        self._db.execute("UPDATE chunks SET length = ? WHERE id = ?", (length, chunk_id))

    def make_garbage(self, chunk_ids: list[int], now_ns: int) -> None:
        self._db.executemany(
            "UPDATE chunks SET state = 2, inode = NULL, idx = NULL, since_ns = ? WHERE id = ?",
            [(now_ns, c) for c in chunk_ids],
        )

    def purge_chunks(self, chunk_ids: list[int]) -> None:
        self._db.executemany("DELETE FROM chunks WHERE id = ?", [(c,) for c in chunk_ids])

    def all_chunks(self) -> list[ChunkRow]:
        return [_chunk(r) for r in self._db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks")]
