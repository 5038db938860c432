"""The master's change journal: a copy of the store plus the changes made after it, replayed,
is the store; a journal cut short replays whole transactions only. And when copies are taken."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from fusedfs.master.metacopy import COPY_RETRY, COPY_SOON, _entry, _message, copy_interval
from fusedfs.master.namespace import CommittedChunk, Namespace
from fusedfs.master.store import COMMIT_MARK, JOURNALED, ROOT_INODE, JournalEntry, SqliteStore
from fusedfs.names import RENAME_EXCHANGE

CHUNK = 1024
TABLES = tuple(JOURNALED)  # every table the journal follows


def contents(path: Path) -> dict[str, list[tuple[object, ...]]]:
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    finally:
        db.close()


def scanned(path: Path) -> tuple[int, int]:
    """(files, folders) as a scan of the inodes counts them."""
    db = sqlite3.connect(path)
    try:
        files, folders = db.execute(
            "SELECT SUM((mode & 61440) != 16384), SUM((mode & 61440) = 16384) FROM inodes"
        ).fetchone()
        return files or 0, folders or 0
    finally:
        db.close()


def busy_day(ns: Namespace) -> None:
    """Every kind of change: names, links, renames, chunks, truncation, xattrs, orphans, quotas."""
    docs = ns.mkdir(ROOT_INODE, b"docs", 0o755, 0, 0).node
    ns.quota("/docs", (100, 10**6))
    f = ns.create(docs.id, b"f\xff", 0o644, 1000, 1000, exclusive=True).node
    with ns.store.transaction():
        chunks = [ns.store.new_chunk(0) for _ in range(3)]
    ns.commit_chunks(
        f.id, 2 * CHUNK + 5, [CommittedChunk(i, c, CHUNK if i < 2 else 5, i) for i, c in enumerate(chunks)], None
    )
    ns.setattr(f.id, size=CHUNK + 1)
    ns.setxattr(f.id, b"user.a", b"\x00" * 100)
    ns.setxattr(f.id, b"user.a", b"replaced")
    ns.link(f.id, ROOT_INODE, b"hard")
    g = ns.create(ROOT_INODE, b"g", 0o600, 0, 0, True).node
    ns.rename(ROOT_INODE, b"g", ROOT_INODE, b"hard", RENAME_EXCHANGE)
    ns.rename(ROOT_INODE, b"g", docs.id, b"moved", 0)
    ns.symlink(docs.id, b"link", b"/some/where", 0, 0)
    ns.unlink(ROOT_INODE, b"hard")  # g: an orphan until freed
    ns.free_closed_orphans()
    ns.set_goal("/docs", 2, recursive=True)
    ns.set_goal("/docs/moved", 0, recursive=False)
    assert ns.quota("/docs").entries == 3  # f, moved, link
    assert g.id


def test_a_copy_and_the_changes_after_it_make_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "master.sqlite3", stat.S_IFDIR | 0o755, now_ns=1)
    clock = iter(range(10, 10**9))
    ns = Namespace(store, CHUNK, clock=lambda: next(clock), orphan_grace_ns=0, trash_ns=10**12)
    ns.mkdir(ROOT_INODE, b"before", 0o755, 0, 0)
    copied = store.snapshot(tmp_path / "copy.sqlite3")
    assert copied == store.journal_end() > 0
    busy_day(ns)
    with store.transaction():
        assert store.trash_totals()[0] == 1  # (the trash is journaled too)
    changes = store.journal_after(copied, 100_000)
    assert changes[-1].table == COMMIT_MARK and changes[0].seq == copied + 1
    assert [e.seq for e in changes] == list(range(copied + 1, store.journal_end() + 1))  # no gaps
    store.close()

    restored = SqliteStore(tmp_path / "copy.sqlite3", stat.S_IFDIR | 0o755, now_ns=2)
    assert restored.journal_end() == copied
    # (through the wire's form, as a restore gets them)
    assert restored.apply_journal(_entry(_message(e)) for e in changes) == changes[-1].seq
    # (a replay's INSERT OR REPLACE of a changed inode fires no delete trigger: counted again)
    assert restored.count_inodes() == scanned(tmp_path / "copy.sqlite3") == (3, 3)
    restored.close()
    assert contents(tmp_path / "copy.sqlite3") == contents(tmp_path / "master.sqlite3")


def test_a_journal_cut_short_replays_whole_transactions_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "master.sqlite3", stat.S_IFDIR | 0o755, now_ns=1)
    ns = Namespace(store, CHUNK)
    copied = store.snapshot(tmp_path / "copy.sqlite3")
    ns.mkdir(ROOT_INODE, b"a", 0o755, 0, 0)
    store.snapshot(tmp_path / "after-a.sqlite3")
    ns.rename(ROOT_INODE, b"a", ROOT_INODE, b"b", 0)  # several rows in one transaction
    changes = store.journal_after(copied, 1000)
    marks = [i for i, e in enumerate(changes) if e.table == COMMIT_MARK]
    assert len(marks) == 2 and marks[1] - marks[0] > 2
    store.prune_journal(store.journal_end())
    assert store.journal_after(0, 10) == []
    store.close()

    restored = SqliteStore(tmp_path / "copy.sqlite3", stat.S_IFDIR | 0o755, now_ns=2)
    cut = changes[: marks[1] - 1]  # the rename's last row never reached the keeper
    assert restored.apply_journal(cut) == changes[marks[0]].seq
    restored.close()
    assert contents(tmp_path / "copy.sqlite3") == contents(tmp_path / "after-a.sqlite3")


def test_a_change_that_does_not_fit_ends_the_replay(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3", stat.S_IFDIR | 0o755, now_ns=1)
    start = store.journal_end()
    bad = [
        JournalEntry(start + 1, "inodes", True, (5,)),
        JournalEntry(start + 2, COMMIT_MARK, False, ()),
        JournalEntry(start + 3, "nosuchtable", False, (1,)),
        JournalEntry(start + 4, COMMIT_MARK, False, ()),
    ]
    assert store.apply_journal(bad) == start + 2
    assert store.apply_journal([JournalEntry(start + 1, "inodes", False, (1, 2))]) == 0  # too few columns
    store.close()


def test_a_copy_on_too_few_keepers_is_taken_again_soon_then_less_and_less_often() -> None:
    def every(short: bool = False, tries: int = 0, low: bool = False, failed: bool = False) -> float:
        return copy_interval(600.0, short=short, short_tries=tries, low_on_room=low, failed=failed)

    assert every() == 600.0
    # Short of keepers: soon, then backing off while it stays short (a keeper that keeps
    # refusing), never less often than the copies every 600 s.
    assert [every(short=True, tries=n) for n in range(8)] == [10, 20, 40, 80, 160, 320, 600, 600]
    assert every(short=True, tries=10**6) == 600.0
    assert every(low=True) == every(short=True, tries=5, low=True) == COPY_SOON  # room is wanted now
    assert every(failed=True) == 600.0 and every(short=True, failed=True) == COPY_RETRY
    assert copy_interval(5.0, short=True, short_tries=3, low_on_room=False, failed=False) == 5.0


def test_the_inode_counts_follow_every_change_and_are_counted_again_on_open(tmp_path: Path) -> None:
    path = tmp_path / "master.sqlite3"
    store = SqliteStore(path, stat.S_IFDIR | 0o755, now_ns=1)
    clock = iter(range(10, 10**9))
    ns = Namespace(store, CHUNK, clock=lambda: next(clock), orphan_grace_ns=0, trash_ns=10**12)
    assert store.count_inodes() == scanned(path) == (0, 1)
    busy_day(ns)
    ns.mkdir(ROOT_INODE, b"gone", 0o755, 0, 0)
    ns.rmdir(ROOT_INODE, b"gone")
    ns.unlink(ns.resolve("/docs").id, b"link")
    ns.purge_trash("/")  # (frees what the trash held: deleted inodes)
    with store.transaction():
        assert store.count_inodes() == scanned(path) == (2, 2)  # docs/f\xff and docs/moved; / and docs
    store.close()
    db = sqlite3.connect(path)  # counts gone wrong (a master of before them kept the store meanwhile)
    with db:
        db.execute("UPDATE inode_counts SET n = 1000")
    db.close()
    store = SqliteStore(path, stat.S_IFDIR | 0o755, now_ns=2)
    assert store.count_inodes() == (2, 2)
    store.close()
