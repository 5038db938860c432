"""Namespace rules over a real SqliteStore: errnos, link counts, rename cases, chunk life cycle."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusedfs.chunks import MiB
from fusedfs.errors import FsError
from fusedfs.master import namespace as namespace_module
from fusedfs.master.namespace import (
    XATTR_CREATE,
    XATTR_REPLACE,
    ChunkChanges,
    CommittedChunk,
    Namespace,
    TreeNode,
    device_number,
)
from fusedfs.master.store import ROOT_INODE, ChunkState, Inode, Quota, SqliteStore, Usage
from fusedfs.names import RENAME_EXCHANGE, RENAME_NOREPLACE

CHUNK = 1024


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "meta.sqlite3", stat.S_IFDIR | 0o755, now_ns=1)
    yield s
    s.close()


@pytest.fixture
def ns(store: SqliteStore) -> Namespace:
    clock = iter(range(10, 10**9))
    # (no grace: a file whose last name goes is freed by the next free_closed_orphans)
    return Namespace(store, CHUNK, clock=lambda: next(clock), orphan_grace_ns=0)


def errno_of(call, *args) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(FsError) as info:
        call(*args)
    return info.value.errno


def pending(ns: Namespace) -> int:
    with ns.store.transaction():
        return ns.store.new_chunk(0)


def test_adding_a_name_tells_whether_the_folder_changed_in_between(store: SqliteStore) -> None:
    ns = Namespace(store, CHUNK, clock=lambda: 5)  # a clock that stands still: ctime still grows
    made = ns.mkdir(ROOT_INODE, b"d", 0o755, 0, 0)
    folder = made.node
    first = ns.create(folder.id, b"a", 0o644, 0, 0, exclusive=True)
    assert first.folder_ctime_before_ns == folder.ctime_ns  # nothing else happened in between
    second = ns.create(folder.id, b"b", 0o644, 0, 0, exclusive=True)
    assert second.folder_ctime_before_ns == first.folder.ctime_ns > folder.ctime_ns
    # Another client's change (any kind) in between shows as a different "before".
    ns.symlink(folder.id, b"s", b"a", 0, 0)
    ns.unlink(folder.id, b"s")
    ns.setattr(folder.id, mode=0o700)
    third = ns.link(first.node.id, folder.id, b"c")
    assert third.folder_ctime_before_ns > second.folder.ctime_ns
    # Opening an existing file changes nothing: before and after agree.
    again = ns.create(folder.id, b"a", 0o644, 0, 0, exclusive=False)
    assert again.folder_ctime_before_ns == again.folder.ctime_ns == third.folder.ctime_ns


def test_a_rename_tells_whether_each_folder_changed_in_between(store: SqliteStore) -> None:
    ns = Namespace(store, CHUNK, clock=lambda: 5)
    a = ns.mkdir(ROOT_INODE, b"a", 0o755, 0, 0).node
    b = ns.mkdir(ROOT_INODE, b"b", 0o755, 0, 0).node
    made = ns.create(a.id, b"f.tmp", 0o644, 0, 0, exclusive=True)
    within = ns.rename(a.id, b"f.tmp", a.id, b"f", 0)
    assert within.folder.id == within.new_folder.id == a.id
    assert within.folder_ctime_before_ns == made.folder.ctime_ns < within.folder.ctime_ns
    across = ns.rename(a.id, b"f", b.id, b"g", 0)
    assert across.folder_ctime_before_ns == within.folder.ctime_ns < across.folder.ctime_ns
    assert across.new_folder.id == b.id and across.new_folder_ctime_before_ns == b.ctime_ns
    assert across.new_folder.ctime_ns > b.ctime_ns
    ns.link(ns.lookup(b.id, b"g").id, b.id, b"h")
    same_file = ns.rename(b.id, b"g", b.id, b"h", 0)  # two names of one file: nothing changes
    assert same_file.folder_ctime_before_ns == same_file.folder.ctime_ns == ns.getattr(b.id).ctime_ns
    folder, _, ctime_before = ns.setattr(b.id, mode=0o700)  # (rsync sets each folder's mode)
    assert ctime_before == same_file.folder.ctime_ns < folder.ctime_ns
    _, after_unlink, ctime_before = ns.unlink(b.id, b"h")
    assert ctime_before == folder.ctime_ns < after_unlink.ctime_ns
    ns.mkdir(b.id, b"sub", 0o755, 0, 0)
    after_mkdir = ns.getattr(b.id)
    after_rmdir, ctime_before = ns.rmdir(b.id, b"sub")
    assert ctime_before == after_mkdir.ctime_ns < after_rmdir.ctime_ns and after_rmdir.nlink == 2


def test_names_are_checked(ns: Namespace) -> None:
    assert errno_of(ns.mkdir, ROOT_INODE, b"", 0o755, 0, 0) == errno.EINVAL
    assert errno_of(ns.mkdir, ROOT_INODE, b"a/b", 0o755, 0, 0) == errno.EINVAL
    assert errno_of(ns.mkdir, ROOT_INODE, b"..", 0o755, 0, 0) == errno.EINVAL
    assert errno_of(ns.mkdir, ROOT_INODE, b"x" * 256, 0o755, 0, 0) == errno.ENAMETOOLONG
    ns.mkdir(ROOT_INODE, b"x" * 255, 0o755, 0, 0)


def test_mkdir_rmdir_and_link_counts(ns: Namespace) -> None:
    a = ns.mkdir(ROOT_INODE, b"a", 0o755, 5, 6).node
    assert (a.nlink, a.uid, a.gid, stat.S_ISDIR(a.mode)) == (2, 5, 6, True)
    assert ns.getattr(ROOT_INODE).nlink == 3
    ns.mkdir(a.id, b"b", 0o700, 0, 0)
    assert ns.getattr(a.id).nlink == 3
    assert errno_of(ns.mkdir, ROOT_INODE, b"a", 0o755, 0, 0) == errno.EEXIST
    assert errno_of(ns.rmdir, ROOT_INODE, b"a") == errno.ENOTEMPTY
    f = ns.create(a.id, b"file", 0o644, 0, 0, exclusive=True).node
    assert errno_of(ns.rmdir, a.id, b"file") == errno.ENOTDIR
    assert errno_of(ns.unlink, a.id, b"b") == errno.EISDIR
    assert errno_of(ns.mkdir, f.id, b"under-a-file", 0o755, 0, 0) == errno.ENOTDIR
    ns.rmdir(a.id, b"b")
    ns.unlink(a.id, b"file")
    ns.rmdir(ROOT_INODE, b"a")
    assert ns.getattr(ROOT_INODE).nlink == 2
    assert errno_of(ns.lookup, ROOT_INODE, b"a") == errno.ENOENT


def test_create_exclusive_and_existing(ns: Namespace) -> None:
    f = ns.create(ROOT_INODE, b"f", 0o640, 0, 0, exclusive=False).node
    assert ns.create(ROOT_INODE, b"f", 0o600, 0, 0, exclusive=False).node.id == f.id
    assert errno_of(ns.create, ROOT_INODE, b"f", 0o600, 0, 0, True) == errno.EEXIST
    ns.mkdir(ROOT_INODE, b"d", 0o755, 0, 0)
    assert errno_of(ns.create, ROOT_INODE, b"d", 0o600, 0, 0, False) == errno.EISDIR
    assert stat.S_IMODE(f.mode) == 0o640 and f.chunk_size == CHUNK


def test_hard_links_and_unlink_frees_chunks_with_the_last_name(ns: Namespace) -> None:
    f = ns.create(ROOT_INODE, b"f", 0o644, 0, 0, exclusive=True).node
    chunk = pending(ns)
    ns.commit_chunks(f.id, 10, [CommittedChunk(0, chunk, 10, 99)], None)
    assert ns.link(f.id, ROOT_INODE, b"g").node.nlink == 2
    assert errno_of(ns.link, ROOT_INODE, ROOT_INODE, b"rootlink") == errno.EPERM
    assert ns.unlink(ROOT_INODE, b"f")[0].garbage == []
    assert ns.lookup(ROOT_INODE, b"g").nlink == 1
    assert ns.unlink(ROOT_INODE, b"g")[0].garbage == []  # an orphan until its grace is over
    assert ns.free_closed_orphans().garbage == [chunk]
    assert errno_of(ns.getattr, f.id) == errno.ENOENT


def test_rename_cases(ns: Namespace) -> None:
    a = ns.mkdir(ROOT_INODE, b"a", 0o755, 0, 0).node
    b = ns.mkdir(ROOT_INODE, b"b", 0o755, 0, 0).node
    f = ns.create(a.id, b"f", 0o644, 0, 0, True).node
    g = ns.create(b.id, b"g", 0o644, 0, 0, True).node
    assert errno_of(ns.rename, a.id, b"f", b.id, b"g", RENAME_NOREPLACE) == errno.EEXIST
    ns.rename(a.id, b"f", b.id, b"g", RENAME_EXCHANGE)
    assert ns.lookup(b.id, b"g").id == f.id and ns.lookup(a.id, b"f").id == g.id
    ns.rename(a.id, b"f", b.id, b"g", 0)  # replaces the target
    assert ns.lookup(b.id, b"g").id == g.id
    assert ns.getattr(f.id).nlink == 0  # an orphan until its grace is over
    ns.free_closed_orphans()
    assert errno_of(ns.getattr, f.id) == errno.ENOENT
    assert errno_of(ns.rename, ROOT_INODE, b"a", b.id, b"g", 0) == errno.ENOTDIR
    assert errno_of(ns.rename, b.id, b"g", ROOT_INODE, b"a", 0) == errno.EISDIR
    sub = ns.mkdir(a.id, b"sub", 0o755, 0, 0).node
    assert errno_of(ns.rename, ROOT_INODE, b"a", sub.id, b"loop", 0) == errno.EINVAL
    ns.mkdir(b.id, b"full", 0o755, 0, 0)
    ns.create(ns.lookup(b.id, b"full").id, b"x", 0o644, 0, 0, True)
    assert errno_of(ns.rename, a.id, b"sub", b.id, b"full", 0) == errno.ENOTEMPTY
    ns.rename(a.id, b"sub", b.id, b"moved", 0)  # a directory changes parent: link counts follow
    assert ns.getattr(a.id).nlink == 2 and ns.getattr(b.id).nlink == 4
    ns.link(g.id, ROOT_INODE, b"g2")
    ns.rename(b.id, b"g", ROOT_INODE, b"g2", 0)  # two names of one file: nothing happens
    assert ns.lookup(b.id, b"g").nlink == 2


def test_symlink(ns: Namespace) -> None:
    link = ns.symlink(ROOT_INODE, b"l", b"/some/where", 0, 0).node
    assert stat.S_ISLNK(link.mode) and link.size == len(b"/some/where")
    assert ns.readlink(link.id) == b"/some/where"
    assert errno_of(ns.readlink, ROOT_INODE) == errno.EINVAL


def test_chunks_commit_truncate_and_replace(ns: Namespace) -> None:
    f = ns.create(ROOT_INODE, b"f", 0o644, 0, 0, True).node
    c0, c1, c2 = pending(ns), pending(ns), pending(ns)
    assert errno_of(ns.commit_chunks, f.id, 100, [CommittedChunk(1, c0, 10, 0)], None) == errno.EINVAL  # past size
    inode, changes = ns.commit_chunks(
        f.id,
        2 * CHUNK + 10,
        [CommittedChunk(0, c0, CHUNK, 1), CommittedChunk(1, c1, CHUNK, 2), CommittedChunk(2, c2, 10, 3)],
        None,
    )
    assert inode.size == 2 * CHUNK + 10 and sorted(changes.live) == [c0, c1, c2]
    assert errno_of(ns.commit_chunks, f.id, 10, [CommittedChunk(0, c0, 10, 0)], None) == errno.EINVAL  # not pending
    inode, changes, _ = ns.setattr(f.id, size=CHUNK + 100)
    assert changes.garbage == [c2]
    with ns.store.transaction():
        boundary = ns.store.get_chunk(c1)
    assert boundary is not None and boundary.length == 100 and boundary.stored_length == CHUNK
    same, changes, _ = ns.setattr(f.id, size=CHUNK + 100)  # (to its own size: its times move alone)
    assert changes.garbage == [] and same.mtime_ns > inode.mtime_ns and same.ctime_ns > inode.ctime_ns
    c3 = pending(ns)
    _, changes = ns.put_file(ROOT_INODE, b"f", 0o600, 0, 0, 5, CHUNK, [CommittedChunk(0, c3, 5, 7)], None)
    assert changes.garbage == [] and changes.live == [c3]  # the old file: an orphan for its grace
    assert sorted(ns.free_closed_orphans().garbage) == [c0, c1]
    with ns.store.transaction():
        assert ns.store.get_chunk(c0).state == ChunkState.GARBAGE  # type: ignore[union-attr]
    assert (
        errno_of(ns.put_file, ROOT_INODE, b"f", 0o600, 0, 0, 5, CHUNK, [CommittedChunk(0, c3, 5, 7)], None)
        == errno.EINVAL
    )
    assert ns.abandon([c3]).garbage == []  # live chunks cannot be abandoned


def test_new_chunk_ids_are_reserved_a_batch_a_transaction_and_never_handed_out_twice(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads get ids reserved ahead (PENDING rows, durable before any is handed out), a batch
    per fsynced transaction; ids held too long, or left when the master stops, become garbage,
    and a master started again on the same metadata hands out none of them."""
    monkeypatch.setattr(namespace_module, "ID_BATCH", 4)
    now = [10]
    ns = Namespace(store, CHUNK, clock=lambda: now[0])
    commits = []
    real_transaction = store.transaction

    @contextlib.contextmanager
    def counted() -> Iterator[None]:
        with real_transaction():
            yield
        commits.append(1)

    monkeypatch.setattr(store, "transaction", counted)
    taken = [ns.new_chunks(1)[0][0] for _ in range(5)]  # 1 + ID_BATCH reserved at the first
    assert len(commits) == 1 and len(set(taken)) == 5
    more, changes = ns.new_chunks(3)  # (none left: 3 + ID_BATCH more)
    assert len(commits) == 2 and changes.garbage == [] and not set(more) & set(taken)
    monkeypatch.setattr(store, "transaction", real_transaction)
    with store.transaction():
        assert all(store.get_chunk(c).state == ChunkState.PENDING for c in taken + more)  # type: ignore[union-attr]
        left = [c for c in range(max(more) + 1, max(more) + 5) if store.get_chunk(c) is not None]
    assert len(left) == 4  # reserved, not handed out
    now[0] += namespace_module.ID_MAX_AGE_NS + 1
    fresh, changes = ns.new_chunks(1)
    assert sorted(changes.garbage) == left and fresh[0] > max(left)
    with store.transaction():
        assert all(store.get_chunk(c).state == ChunkState.GARBAGE for c in left)  # type: ignore[union-attr]
    ns.give_back_chunks()  # (stopping)
    with store.transaction():
        unused = [c for c in range(fresh[0] + 1, fresh[0] + 5)]
        assert all(store.get_chunk(c).state == ChunkState.GARBAGE for c in unused)  # type: ignore[union-attr]
        assert store.get_chunk(fresh[0]).state == ChunkState.PENDING  # type: ignore[union-attr]
    again = Namespace(store, CHUNK, clock=lambda: now[0])
    assert again.new_chunks(1)[0][0] > max(unused)


def test_a_file_counts_as_stored_only_the_bytes_its_chunks_hold(ns: Namespace) -> None:
    """What st_blocks (du) shows, and cp and tar take a file to be sparse by: holes hold nothing,
    and every reply after a change counts what the change left (a stale 0 would make a file
    with data look all holes)."""
    f = ns.create(ROOT_INODE, b"sparse", 0o644, 0, 0, True).node
    assert f.stored == 0
    inode, _, _ = ns.setattr(f.id, size=10 * CHUNK)  # truncate -s: all hole
    assert (inode.size, inode.stored) == (10 * CHUNK, 0)
    c1, c7 = pending(ns), pending(ns)
    inode, _ = ns.commit_chunks(
        f.id, 10 * CHUNK, [CommittedChunk(1, c1, CHUNK, 0), CommittedChunk(7, c7, 100, 0)], None
    )
    assert (inode.size, inode.stored) == (10 * CHUNK, CHUNK + 100)
    assert ns.getattr(f.id).stored == CHUNK + 100
    inode, _, _ = ns.setattr(f.id, size=CHUNK + 10)  # drops slot 7, keeps 10 bytes of slot 1
    assert inode.stored == 10 == ns.getattr(f.id).stored
    inode, _, _ = ns.setattr(f.id, mode=0o600)  # a change that moves no chunk keeps the count
    assert inode.stored == 10
    dense = pending(ns)
    put, _ = ns.put_file(ROOT_INODE, b"dense", 0o644, 0, 0, 5, CHUNK, [CommittedChunk(0, dense, 5, 0)], None)
    assert put.stored == 5
    listed = {name: node.stored for _, name, node in ns.readdir(ROOT_INODE, 0, 10).entries}
    assert listed == {b"sparse": 10, b"dense": 5}


def test_an_append_is_committed_only_at_the_size_it_was_made_at(ns: Namespace) -> None:
    f = ns.create(ROOT_INODE, b"log", 0o644, 0, 0, True).node
    first, second = pending(ns), pending(ns)
    inode, _ = ns.commit_chunks(f.id, 6, [CommittedChunk(0, first, 6, 1)], None, appended_at=0)
    assert inode.size == 6
    # Another mount appended at 0 too, before it knew of the first: refused, nothing changed.
    assert errno_of(ns.commit_chunks, f.id, 5, [CommittedChunk(0, second, 5, 2)], None, 0) == errno.EAGAIN
    assert ns.getattr(f.id).size == 6
    inode, changes = ns.commit_chunks(f.id, 11, [CommittedChunk(0, second, 11, 2)], None, appended_at=6)
    assert inode.size == 11 and changes.live == [second] and changes.garbage == [first]


def test_a_commit_stands_only_on_the_chunk_its_copy_was_made_from_and_never_shrinks_a_file(ns: Namespace) -> None:
    """Two mounts change one chunk: the later commit, made from the chunk before the other's,
    is refused (ESTALE), and goes again on the chunk there now; a commit carrying a smaller size
    than another mount has made the file keeps the larger (shrinking is SetAttr's)."""
    f = ns.create(ROOT_INODE, b"shared", 0o644, 0, 0, True).node
    first, second, third = pending(ns), pending(ns), pending(ns)
    ns.commit_chunks(f.id, 100, [CommittedChunk(0, first, 100, 1, replaces=0)], None)
    assert errno_of(ns.commit_chunks, f.id, 100, [CommittedChunk(0, second, 100, 2, replaces=0)], None) == errno.ESTALE
    inode, changes = ns.commit_chunks(f.id, 100, [CommittedChunk(0, second, 100, 2, replaces=first)], None)
    assert changes.live == [second] and changes.garbage == [first]
    inode, _ = ns.commit_chunks(f.id, CHUNK + 100, [CommittedChunk(1, third, 100, 3, replaces=0)], None)
    assert inode.size == CHUNK + 100
    inode, _ = ns.commit_chunks(f.id, 100, [], None)  # (a mount that knew it at 100)
    assert inode.size == CHUNK + 100 and ns.getattr(f.id).size == CHUNK + 100


def test_readdir_pages_with_stable_cursors(ns: Namespace) -> None:
    for i in range(25):
        ns.create(ROOT_INODE, f"f{i:02}".encode(), 0o644, 0, 0, True)
    seen: list[bytes] = []
    ctimes: list[int] = []  # the folder's, as each page saw it
    after = 0
    while True:
        page = ns.readdir(ROOT_INODE, after, 10)
        assert page.parent == ROOT_INODE
        seen += [name for _, name, _ in page.entries]
        ctimes.append(page.folder.ctime_ns)
        after = page.entries[-1][0]
        if len(seen) == 10:
            ns.create(ROOT_INODE, b"late", 0o644, 0, 0, True)  # added mid-listing: shows at the end
            ns.unlink(ROOT_INODE, b"f00")  # removed behind the cursor: nothing shifts
        if not page.more:
            break
    assert seen == [f"f{i:02}".encode() for i in range(25)] + [b"late"]
    # The pages read after the change saw the folder's ctime move on: not one listing of it.
    assert ctimes[0] < ctimes[1] == ctimes[2] == ns.getattr(ROOT_INODE).ctime_ns


def test_changes_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite3"
    store = SqliteStore(path, stat.S_IFDIR | 0o755, now_ns=1)
    Namespace(store, CHUNK).mkdir(ROOT_INODE, b"kept", 0o755, 0, 0)
    with store.transaction():
        chunk = store.new_chunk(5)
    store.close()
    reopened = SqliteStore(path, stat.S_IFDIR | 0o755, now_ns=2)
    assert Namespace(reopened, CHUNK).lookup(ROOT_INODE, b"kept").nlink == 2
    with reopened.transaction():
        assert reopened.next_chunk_id() == chunk + 1
        assert reopened.get_chunk(chunk).state == ChunkState.PENDING  # type: ignore[union-attr]
    reopened.close()


def test_extended_attributes(ns: Namespace) -> None:
    f = ns.create(ROOT_INODE, b"f", 0o644, 0, 0, exclusive=True).node
    assert ns.listxattr(f.id) == []
    assert errno_of(ns.getxattr, f.id, b"user.a") == errno.ENODATA
    ns.setxattr(f.id, b"user.a", b"1")
    ns.setxattr(f.id, b"user.b", b"")
    assert ns.getxattr(f.id, b"user.a") == b"1" and ns.getxattr(f.id, b"user.b") == b""
    assert ns.listxattr(f.id) == [b"user.a", b"user.b"]
    assert errno_of(ns.setxattr, f.id, b"user.a", b"2", XATTR_CREATE) == errno.EEXIST
    assert errno_of(ns.setxattr, f.id, b"user.c", b"2", XATTR_REPLACE) == errno.ENODATA
    ns.setxattr(f.id, b"user.a", b"2", XATTR_REPLACE)
    assert ns.getxattr(f.id, b"user.a") == b"2"
    assert ns.getattr(f.id).ctime_ns > f.ctime_ns  # a change of attributes is a change of the inode
    assert errno_of(ns.setxattr, f.id, b"user." + b"x" * 251, b"") == errno.ERANGE
    assert errno_of(ns.setxattr, f.id, b"user.big", bytes(64 * 1024 + 1)) == errno.E2BIG
    assert errno_of(ns.setxattr, f.id, b"system.posix_acl_access", b"") == errno.EOPNOTSUPP
    ns.removexattr(f.id, b"user.a")
    assert errno_of(ns.removexattr, f.id, b"user.a") == errno.ENODATA
    assert ns.listxattr(f.id) == [b"user.b"]
    ns.unlink(ROOT_INODE, b"f")
    ns.free_closed_orphans()
    with ns.store.transaction():
        assert ns.store.list_xattrs(f.id) == []  # they went with the inode


def test_an_open_file_outlives_its_last_name_until_closed(store: SqliteStore) -> None:
    now = [10]
    open_inodes: set[int] = set()
    ns = Namespace(store, CHUNK, clock=lambda: now[0], is_open=open_inodes.__contains__, orphan_grace_ns=3)
    f = ns.create(ROOT_INODE, b"f", 0o644, 0, 0, exclusive=True).node
    chunk = pending(ns)
    ns.commit_chunks(f.id, 10, [CommittedChunk(0, chunk, 10, 0)], None)
    open_inodes.add(f.id)
    assert ns.unlink(ROOT_INODE, b"f")[0].garbage == []
    assert errno_of(ns.lookup, ROOT_INODE, b"f") == errno.ENOENT
    kept = ns.getattr(f.id)
    assert kept.nlink == 0 and kept.size == 10
    assert [c.id for c in ns.file_chunks(f.id, 0, 0)[1]] == [chunk]  # still readable by inode
    now[0] += 5
    assert ns.free_closed_orphans().garbage == []  # still open
    open_inodes.clear()
    assert ns.free_closed_orphans().garbage == [chunk]
    # Open on no mount (as far as the master heard): kept for the grace all the same, since a
    # mount may have opened it after its last announcement.
    g = ns.create(ROOT_INODE, b"g", 0o644, 0, 0, exclusive=True).node
    ns.unlink(ROOT_INODE, b"g")
    now[0] += 2
    assert ns.free_closed_orphans().garbage == [] and ns.getattr(g.id).nlink == 0
    now[0] += 2
    ns.free_closed_orphans()
    assert errno_of(ns.getattr, g.id) == errno.ENOENT
    assert errno_of(ns.getattr, f.id) == errno.ENOENT
    with store.transaction():
        assert store.orphans() == []
    # Replaced by a rename while open: the same.
    a = ns.create(ROOT_INODE, b"a", 0o644, 0, 0, exclusive=True).node
    ns.create(ROOT_INODE, b"b", 0o644, 0, 0, exclusive=True)
    open_inodes.add(a.id)
    ns.rename(ROOT_INODE, b"b", ROOT_INODE, b"a", 0)
    assert ns.getattr(a.id).nlink == 0
    with store.transaction():
        assert store.orphans() == [a.id]


def test_one_chunk_cannot_fill_two_slots(ns: Namespace) -> None:
    f = ns.create(ROOT_INODE, b"f", 0o644, 0, 0, exclusive=True).node
    chunk = pending(ns)
    twice = [CommittedChunk(0, chunk, CHUNK, 0), CommittedChunk(1, chunk, CHUNK, 0)]
    assert errno_of(ns.commit_chunks, f.id, 2 * CHUNK, twice, None) == errno.EINVAL
    assert ns.getattr(f.id).size == 0  # nothing of it was applied


def test_path_of_an_inode(ns: Namespace) -> None:
    a = ns.mkdir(ROOT_INODE, b"a", 0o755, 0, 0).node
    b = ns.mkdir(a.id, b"b\xff", 0o755, 0, 0).node
    f = ns.create(b.id, b"f", 0o644, 0, 0, True).node
    assert ns.path_of(ROOT_INODE) == b"/" and ns.path_of(b.id) == b"/a/b\xff"
    assert ns.path_of(f.id) == b"/a/b\xff/f"
    ns.rename(b.id, b"f", ROOT_INODE, b"g", 0)
    assert ns.path_of(f.id) == b"/g"
    ns.unlink(ROOT_INODE, b"g")  # an orphan (until freed): no name
    assert ns.path_of(f.id) is None


def test_the_trash_keeps_deleted_files_to_restore_until_their_time_is_up(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [10]
    ns = Namespace(store, CHUNK, clock=lambda: now[0], orphan_grace_ns=3, trash_ns=100)

    def file(parent: int, name: bytes) -> tuple[int, int]:
        f = ns.create(parent, name, 0o640, 7, 8, exclusive=True).node
        chunk = pending(ns)
        ns.commit_chunks(f.id, 10, [CommittedChunk(0, chunk, 10, 0)], None)
        return f.id, chunk

    docs = ns.mkdir(ROOT_INODE, b"docs", 0o700, 7, 8).node
    sub = ns.mkdir(docs.id, b"sub", 0o700, 7, 8).node
    a, chunk_a = file(docs.id, b"a")
    b, _ = file(sub.id, b"b\xff")
    c, chunk_c = file(ROOT_INODE, b"c")
    # rm -r docs, and c replaced by a rename: all three kept, with the paths they had.
    ns.unlink(sub.id, b"b\xff")
    now[0] += 1
    ns.unlink(docs.id, b"a")
    ns.rmdir(docs.id, b"sub")
    ns.rmdir(ROOT_INODE, b"docs")
    now[0] += 1
    file(ROOT_INODE, b"new")
    ns.rename(ROOT_INODE, b"new", ROOT_INODE, b"c", 0)
    assert [(r.path, r.size) for r in ns.list_trash("/")] == [(b"/c", 10), (b"/docs/a", 10), (b"/docs/sub/b\xff", 10)]
    assert [r.inode for r in ns.list_trash("/docs")] == [a, b]
    assert ns.list_trash("/doc") == [] and [r.inode for r in ns.list_trash("/docs/sub/b\udcff")] == [b]
    now[0] += 50  # past the orphans' grace, within the trash time
    assert ns.free_closed_orphans().garbage == []
    # The folder back, with its files, as they were; its folders made again (0755, the file's owner).
    restored, skipped = ns.restore_trash("/docs")
    assert sorted(r.path for r in restored) == [b"/docs/a", b"/docs/sub/b\xff"] and skipped == []
    back = ns.resolve("/docs/sub")
    assert stat.S_IMODE(back.mode) == 0o755 and (back.uid, back.gid) == (7, 8)
    restored_a = ns.lookup(ns.resolve("/docs").id, b"a")
    assert (restored_a.id, restored_a.nlink, restored_a.size) == (a, 1, 10)
    assert [c.id for c in ns.file_chunks(a, 0, 0)[1]] == [chunk_a]
    assert [r.path for r in ns.list_trash("/")] == [b"/c"]
    # /c is taken by the file renamed over it: skipped, or put elsewhere by inode.
    assert ns.restore_trash("/c") == ([], ns.list_trash("/c"))
    assert errno_of(ns.restore_trash, "/", 12345) == errno.ENOENT
    assert errno_of(ns.restore_trash, "/", c) == errno.EINVAL
    with store.reading() as before_it:
        [moved], [] = ns.restore_trash("/old/c", c)
        assert moved.path == b"/old/c" and ns.resolve("/old/c").id == c
        # A restore that listed the trash before that one took c out skips it: no second name.
        monkeypatch.setattr(store, "reading", lambda: contextlib.nullcontext(before_it))
        restored, skipped = ns.restore_trash("/elsewhere", c)
        monkeypatch.undo()
    assert restored == [] and [r.inode for r in skipped] == [c] and ns.getattr(c).nlink == 1
    assert errno_of(ns.resolve, "/elsewhere") == errno.ENOENT
    # Deleted again, then the trash time passes: freed with the chunks.
    ns.unlink(ns.resolve("/old").id, b"c")
    now[0] += 99
    assert ns.free_closed_orphans().garbage == []
    now[0] += 1
    assert ns.free_closed_orphans().garbage == [chunk_c]
    # Purged: freed at the next look, trash time or not.
    ns.unlink(ns.resolve("/docs").id, b"a")
    assert [r.inode for r in ns.purge_trash("/docs")] == [a]
    now[0] += 3
    assert ns.free_closed_orphans().garbage == [chunk_a] and ns.list_trash("/") == []


def test_changes_over_a_whole_tree_go_a_batch_a_transaction(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """goal -r, chunksize -r and a restore from the trash change TREE_BATCH nodes per
    transaction (other calls wait for one batch, not the tree), and come out as in one."""
    monkeypatch.setattr(namespace_module, "TREE_BATCH", 7)
    ns = Namespace(store, CHUNK, clock=lambda: 10, orphan_grace_ns=0, trash_ns=100)
    top = ns.mkdir(ROOT_INODE, b"top", 0o755, 0, 0).node
    folders = [ns.mkdir(top.id, b"d%d" % i, 0o755, 0, 0).node for i in range(3)]
    files = [ns.create(d.id, b"f%d" % i, 0o644, 0, 0, exclusive=True).node for d in folders for i in range(10)]
    opened = []
    real = store.transaction

    def counted() -> Any:
        opened.append(1)
        return real()

    monkeypatch.setattr(store, "transaction", counted)
    change = ns.set_goal("/top", 2, recursive=True)
    assert (change.files, change.folders) == (30, 4) and len(opened) >= 1 + 34 // 7
    assert all(store.get_inode(n.id).goal == 2 for n in [top, *folders, *files])  # type: ignore[union-attr]
    opened.clear()
    assert ns.set_chunk_size("/top", 2 * MiB, recursive=True) == 4 and len(opened) >= 1 + 34 // 7
    assert all(store.get_inode(d.id).chunk_size == 2 * MiB for d in [top, *folders])  # type: ignore[union-attr]
    for d in folders:
        for i in range(10):
            ns.unlink(d.id, b"f%d" % i)
    opened.clear()
    restored, skipped = ns.restore_trash("/top")
    assert len(restored) == 30 and skipped == [] and len(opened) >= 1 + 30 // 7
    assert sorted(ns.lookup(d.id, b"f3").id for d in folders) == sorted(f.id for f in files[3::10])


def test_without_a_trash_time_nothing_is_kept(ns: Namespace) -> None:
    f = ns.create(ROOT_INODE, b"f", 0o644, 0, 0, exclusive=True).node
    ns.unlink(ROOT_INODE, b"f")
    assert ns.list_trash("/") == []
    ns.free_closed_orphans()
    assert errno_of(ns.getattr, f.id) == errno.ENOENT


def test_special_nodes_and_setgid_folders(ns: Namespace) -> None:
    fifo = ns.mknod(ROOT_INODE, b"fifo", stat.S_IFIFO | 0o640, 5, 6, 0).node
    assert stat.S_ISFIFO(fifo.mode) and stat.S_IMODE(fifo.mode) == 0o640 and (fifo.uid, fifo.gid) == (5, 6)
    null = ns.mknod(ROOT_INODE, b"null", stat.S_IFCHR | 0o666, 0, 0, os.makedev(1, 3)).node
    assert stat.S_ISCHR(null.mode) and device_number(ns.getattr(null.id)) == os.makedev(1, 3)
    assert device_number(fifo) == 0
    assert stat.S_ISREG(ns.mknod(ROOT_INODE, b"plain", stat.S_IFREG | 0o600, 0, 0, 0).node.mode)
    assert errno_of(ns.mknod, ROOT_INODE, b"plain", stat.S_IFREG | 0o600, 0, 0, 0) == errno.EEXIST
    assert errno_of(ns.mknod, ROOT_INODE, b"d", stat.S_IFDIR | 0o755, 0, 0, 0) == errno.EINVAL
    assert errno_of(ns.mknod, ROOT_INODE, b"f2", stat.S_IFIFO | 0o600, 0, 0, 7) == errno.EINVAL  # (no number)
    ns.unlink(ROOT_INODE, b"fifo")
    assert errno_of(ns.getattr, fifo.id) == errno.ENOENT  # (not kept: only files go to the trash)
    # In a setgid folder, what is made gets the folder's group, and folders the setgid bit.
    team = ns.mkdir(ROOT_INODE, b"team", 0o2775, 0, 1234).node
    made = [
        ns.create(team.id, b"f", 0o644, 5, 6, exclusive=True).node,
        ns.mkdir(team.id, b"sub", 0o755, 5, 6).node,
        ns.symlink(team.id, b"l", b"f", 5, 6).node,
        ns.mknod(team.id, b"p", stat.S_IFIFO | 0o600, 5, 6, 0).node,
    ]
    assert [(n.uid, n.gid) for n in made] == [(5, 1234)] * 4
    assert made[1].mode & stat.S_ISGID and not made[0].mode & stat.S_ISGID
    deeper = ns.create(made[1].id, b"g", 0o644, 5, 6, exclusive=True).node
    assert deeper.gid == 1234  # (inherited down the tree)
    plain = ns.mkdir(ROOT_INODE, b"plain-dir", 0o755, 5, 6).node
    assert plain.gid == 6 and not plain.mode & stat.S_ISGID


def test_usage_counts_a_tree_once_each(ns: Namespace) -> None:
    docs = ns.mkdir(ROOT_INODE, b"docs", 0o755, 0, 0).node
    deep = ns.mkdir(ns.mkdir(docs.id, b"a", 0o755, 0, 0).node.id, b"b", 0o755, 0, 0).node
    f = ns.create(deep.id, b"f", 0o644, 0, 0, exclusive=True).node
    ns.commit_chunks(
        f.id, CHUNK + 5, [CommittedChunk(0, pending(ns), CHUNK, 0), CommittedChunk(1, pending(ns), 5, 0)], None
    )
    ns.link(f.id, docs.id, b"same-file")  # counted once
    ns.symlink(docs.id, b"link", b"a/b/f", 0, 0)
    ns.mkdir(docs.id, b"empty", 0o755, 0, 0)
    ns.set_goal("/docs/a/b/f", 2, recursive=False)  # (on the keepers: 2 copies, not the cluster's 3)
    kept = 2 * (CHUNK + 5)
    total, folders, others = ns.usage("/docs", 3)
    assert total == Usage(files=2, folders=4, bytes=CHUNK + 5, chunks=2, stored_bytes=CHUNK + 5, kept_bytes=kept)
    assert [(name, u.folders, u.files, u.bytes) for name, u in folders] == [
        (b"a", 2, 1, CHUNK + 5),
        (b"empty", 1, 0, 0),
    ]
    assert others == Usage(2, 0, CHUNK + 5, 2, CHUNK + 5, kept)  # same-file, link
    assert ns.usage("/docs/a/b/f", 3)[0] == Usage(
        files=1, bytes=CHUNK + 5, chunks=2, stored_bytes=CHUNK + 5, kept_bytes=kept
    )
    ns.set_goal("/docs/a/b/f", 0, recursive=False)
    assert ns.usage("/", 3)[0].folders == 5 and ns.usage("/", 3)[0].kept_bytes == 3 * (CHUNK + 5)
    assert errno_of(ns.usage, "/nope", 3) == errno.ENOENT


def test_goals_are_set_on_a_folder_inherited_below_and_go_with_their_inode(ns: Namespace, store: SqliteStore) -> None:
    def chunk_of(ino: int, size: int = 5) -> int:
        chunk = pending(ns)
        _, changes = ns.commit_chunks(ino, size, [CommittedChunk(0, chunk, size, 0)], None)
        return changes.goals.get(chunk, 0)

    def goal(path: str) -> int:
        return ns.resolve(path).goal

    data = ns.mkdir(ROOT_INODE, b"data", 0o755, 0, 0).node
    old = ns.create(data.id, b"old", 0o644, 0, 0, exclusive=True).node
    assert chunk_of(old.id) == 0 and goal("/data") == 0  # the cluster's
    change = ns.set_goal("/data", 1, recursive=False)
    assert (change.files, change.folders, change.chunks) == (0, 1, {})  # the folder only: old keeps its goal
    sub = ns.mkdir(data.id, b"sub", 0o755, 0, 0).node
    new = ns.create(sub.id, b"new", 0o644, 0, 0, exclusive=True).node  # two folders down
    assert goal("/data/sub") == goal("/data/sub/new") == 1 and goal("/data/old") == 0
    assert chunk_of(new.id) == 1  # the commit tells the cluster its chunks' goal
    with ns.store.transaction():
        chunk = ns.store.new_chunk(0)
    put, changes = ns.put_file(sub.id, b"up", 0o644, 0, 0, 5, CHUNK, [CommittedChunk(0, chunk, 5, 0)], None)
    assert changes.goals == {chunk: 1}  # an upload too
    change = ns.set_goal("/data", 4, recursive=True)
    assert (change.files, change.folders) == (3, 2) and set(change.chunks.values()) == {4}
    with ns.store.transaction():
        assert len(change.chunks) == len(ns.store.chunk_goals()) == 3
    with ns.store.transaction():
        under_sub = {c.id for ino in (new.id, put.id) for c in ns.store.file_chunks(ino)}
    assert ns.set_goal("/data/sub", 0, recursive=True).chunks == dict.fromkeys(under_sub, 0)
    assert goal("/data/sub/new") == 0 and goal("/data") == 4
    ns.rename(sub.id, b"new", ROOT_INODE, b"moved", 0)  # a goal stays with its file
    assert goal("/moved") == 0 and goal("/data/old") == 4
    ns.unlink(data.id, b"old")
    ns.free_closed_orphans()
    with ns.store.transaction():
        assert ns.store.get_inode(old.id) is None
        assert {ino for (ino,) in store._db.execute("SELECT inode FROM goals")} == {data.id}  # old's row went
    assert errno_of(ns.set_goal, "/data", 17, False) == errno.EINVAL
    assert errno_of(ns.set_goal, "/nope", 2, False) == errno.ENOENT
    assert put.id


def test_a_folders_chunk_size_is_what_files_made_in_it_get_and_folders_made_in_it_inherit(
    ns: Namespace, store: SqliteStore, tmp_path: Path
) -> None:
    MiB = 1 << 20
    db = ns.mkdir(ROOT_INODE, b"db", 0o755, 0, 0).node
    before = ns.create(db.id, b"before", 0o644, 0, 0, exclusive=True).node
    assert db.chunk_size == 0 and before.chunk_size == CHUNK  # the cluster's
    assert ns.set_chunk_size("/db", MiB, recursive=False) == 1
    assert ns.resolve("/db").chunk_size == MiB  # (a folder's Attr shows it)
    made = ns.create(db.id, b"made", 0o644, 0, 0, exclusive=True).node
    sub = ns.mkdir(db.id, b"sub", 0o755, 0, 0).node
    deeper = ns.create(sub.id, b"deeper", 0o644, 0, 0, exclusive=True).node
    assert (made.chunk_size, sub.chunk_size, deeper.chunk_size) == (MiB, MiB, MiB)
    assert ns.resolve("/db/before").chunk_size == CHUNK  # a file's is fixed when it is made
    assert ns.create(ROOT_INODE, b"elsewhere", 0o644, 0, 0, exclusive=True).node.chunk_size == CHUNK
    ns.mkdir(sub.id, b"other", 0o755, 0, 0)
    ns.set_chunk_size("/db/sub/other", 2 * MiB, recursive=False)
    assert ns.set_chunk_size("/db", 4 * MiB, recursive=True) == 3  # db, sub, other: files keep theirs
    assert {ns.resolve(p).chunk_size for p in ("/db", "/db/sub", "/db/sub/other")} == {4 * MiB}
    assert ns.resolve("/db/made").chunk_size == MiB
    assert ns.set_chunk_size("/db", 0, recursive=False) == 1  # the cluster's again
    assert ns.create(db.id, b"later", 0o644, 0, 0, exclusive=True).node.chunk_size == CHUNK
    assert errno_of(ns.set_chunk_size, "/db/made", MiB, False) == errno.ENOTDIR
    assert errno_of(ns.set_chunk_size, "/db", MiB + 1, False) == errno.EINVAL
    assert errno_of(ns.set_chunk_size, "/db", 512 * MiB, False) == errno.EINVAL
    assert errno_of(ns.set_chunk_size, "/nope", MiB, False) == errno.ENOENT
    store.close()
    reopened = SqliteStore(store.path, 0o755, 0)  # durable: a column of the folder's inode
    assert Namespace(reopened, CHUNK).resolve("/db/sub").chunk_size == 4 * MiB


def read_tree(ns: Namespace, path: str, batch: int = 1000) -> list[TreeNode]:
    return [node for nodes in ns.read_tree(path, batch) for node in nodes]


def put_tree(
    ns: Namespace, nodes: list[TreeNode], path: str, new_chunks: dict[int, int], changes: ChunkChanges, batch: int = 0
) -> tuple[int, int]:
    """Puts a copy of the tree as a snapshot does (snapshot.py): `batch` nodes at a time (0:
    all at once), then names it; on failure, removes what was made. Returns (files, folders)."""
    copy = ns.copy_tree(path)
    size = batch or max(len(nodes), 1)
    try:
        for start in range(0, len(nodes), size):
            copy.put(nodes[start : start + size], new_chunks, changes)
        copy.name()
    except BaseException:
        changes.live.clear()
        changes.goals.clear()
        copy.remove(changes)
        raise
    return copy.files, copy.folders_made


def chunks_of(nodes: list[TreeNode]) -> list[int]:
    return [row.id for node in nodes for row in node.chunks]


def test_a_tree_copied_for_a_snapshot_is_the_same_tree_with_new_chunks(ns: Namespace) -> None:
    top = ns.mkdir(ROOT_INODE, b"top", 0o750, 5, 6).node
    sub = ns.mkdir(top.id, b"sub", 0o755, 5, 6).node
    f = ns.create(sub.id, b"f", 0o640, 5, 6, True).node
    c0, c1 = pending(ns), pending(ns)
    ns.commit_chunks(f.id, CHUNK + 10, [CommittedChunk(0, c0, CHUNK, 1), CommittedChunk(1, c1, CHUNK, 2)], 77)
    ns.link(f.id, top.id, b"second name")
    ns.symlink(top.id, b"sym", b"sub/f", 5, 6)
    ns.setxattr(f.id, b"user.a", b"value")
    ns.set_goal("/top/sub/f", 2, recursive=False)
    tree = read_tree(ns, "/top")
    assert [n.name for n in tree] == [b"top", b"sub", b"second name", b"sym", b"f"]
    assert chunks_of(tree) == [c0, c1]  # (with the file's first name only)
    # The source changes after it was read: the copy is of the moment it was read.
    ns.unlink(top.id, b"sym")
    n0, n1 = pending(ns), pending(ns)
    copy = ns.mkdir(ROOT_INODE, b"copies", 0o755, 0, 0).node
    changes = ChunkChanges()
    files, folders = put_tree(ns, tree, "/copies/snap", {c0: n0, c1: n1}, changes)
    assert (files, folders) == (2, 2) and sorted(changes.live) == [n0, n1] and changes.goals == {n0: 2, n1: 2}
    snap = ns.resolve("/copies/snap")
    assert (stat.S_IMODE(snap.mode), snap.uid, snap.gid, snap.nlink) == (0o750, 5, 6, 3)
    assert ns.getattr(copy.id).nlink == 3
    copied = ns.resolve("/copies/snap/sub/f")
    assert copied.id != f.id and copied.id == ns.resolve("/copies/snap/second name").id
    assert (copied.size, copied.mtime_ns, copied.nlink, copied.goal) == (CHUNK + 10, 77, 2, 2)
    assert ns.getxattr(copied.id, b"user.a") == b"value"
    assert ns.readlink(ns.resolve("/copies/snap/sym").id) == b"sub/f"
    rows = ns.file_chunks(copied.id, 0, 0)[1]
    assert [(r.id, r.idx, r.length, r.stored_length, r.crc) for r in rows] == [
        (n0, 0, CHUNK, CHUNK, 1),
        (n1, 1, 10, CHUNK, 2),  # (the file's end: as the source's, 10 bytes of the chunk's 1,024 used)
    ]
    # The source's chunks are untouched: deleting the copy frees its own alone.
    assert [r.id for r in ns.file_chunks(f.id, 0, 0)[1]] == [c0, c1]
    # Refused, and nothing made: an existing name, into itself, a missing folder, the root, a
    # chunk without its reserved copy (all or nothing).
    assert errno_of(put_tree, ns, tree, "/copies/snap", {c0: n0, c1: n1}, ChunkChanges()) == errno.EEXIST
    assert (
        errno_of(put_tree, ns, tree, "/top/sub/inside", {c0: pending(ns), c1: pending(ns)}, ChunkChanges())
        == errno.EINVAL
    )
    assert (
        errno_of(put_tree, ns, tree, "/nowhere/snap", {c0: pending(ns), c1: pending(ns)}, ChunkChanges())
        == errno.ENOENT
    )
    assert errno_of(put_tree, ns, read_tree(ns, "/"), "/all", {}, ChunkChanges()) == errno.EBUSY
    assert errno_of(put_tree, ns, tree, "/copies/other", {c0: pending(ns)}, ChunkChanges()) == errno.EIO
    assert (
        errno_of(put_tree, ns, tree, "/copies/other", {c0: n0, c1: pending(ns)}, ChunkChanges()) == errno.EIO
    )  # (n0: live)
    assert errno_of(ns.lookup, copy.id, b"other") == errno.ENOENT
    assert ns.getattr(copy.id).nlink == 3
    # A snapshot counts towards the quota of the folder it is made in, as any new names do.
    ns.quota("/copies", (7, 0))  # (snap and its 4 names below: 5 of 7)
    assert (
        errno_of(put_tree, ns, tree, "/copies/third", {c0: pending(ns), c1: pending(ns)}, ChunkChanges())
        == errno.EDQUOT
    )
    assert errno_of(ns.lookup, copy.id, b"third") == errno.ENOENT and ns.quota("/copies").entries == 5


@pytest.fixture
def copying(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> tuple[Namespace, list[TreeNode], dict[int, int]]:
    """A namespace putting copies 4 nodes a transaction, and the tree of /top read to copy: 3
    folders of 5 files of a chunk each, one file also named in another folder; with each chunk's
    reserved chunk for its copy."""
    monkeypatch.setattr(namespace_module, "TREE_BATCH", 4)
    ns = Namespace(store, CHUNK)
    top = ns.mkdir(ROOT_INODE, b"top", 0o755, 0, 0).node
    new_chunks = {}
    for d in range(3):
        folder = ns.mkdir(top.id, b"d%d" % d, 0o755, 0, 0).node
        for i in range(5):
            f = ns.create(folder.id, b"f%d" % i, 0o644, 0, 0, exclusive=True).node
            chunk = pending(ns)
            ns.commit_chunks(f.id, 10, [CommittedChunk(0, chunk, 10, 1)], 1)
            new_chunks[chunk] = pending(ns)
    ns.link(ns.resolve("/top/d0/f0").id, ns.resolve("/top/d2").id, b"again")
    return ns, read_tree(ns, "/top"), new_chunks


def test_a_big_snapshot_is_put_a_batch_a_transaction_and_appears_whole(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, copying: tuple[Namespace, list[TreeNode], dict[int, int]]
) -> None:
    """A copy is put TREE_BATCH nodes a transaction (other calls wait for one batch, not the
    tree), below a top named by the last: before that, it is nowhere to be seen."""
    ns, tree, new_chunks = copying
    seen = []
    real = store.transaction

    def watched() -> Any:
        seen.append(store.lookup(ROOT_INODE, b"snap") is not None)
        return real()

    monkeypatch.setattr(store, "transaction", watched)
    changes = ChunkChanges()
    assert put_tree(ns, tree, "/snap", new_chunks, changes) == (15, 4)
    monkeypatch.setattr(store, "transaction", real)
    assert len(seen) >= 2 + len(tree) // 4 and not any(seen)
    assert sorted(changes.live) == sorted(new_chunks.values()) and store.building() == []
    again = ns.resolve("/snap/d2/again")
    assert again.id == ns.resolve("/snap/d0/f0").id and again.nlink == 2
    assert ns.resolve("/snap").nlink == 5 and ns.getattr(ROOT_INODE).nlink == 4
    assert [r.id for r in ns.file_chunks(again.id, 0, 0)[1]] == [
        new_chunks[next(n for n in tree if n.inode.id == ns.resolve("/top/d0/f0").id).chunks[0].id]
    ]


def test_a_tree_is_read_and_copied_a_batch_at_a_time(
    copying: tuple[Namespace, list[TreeNode], dict[int, int]],
) -> None:
    """What a snapshot holds in memory is a batch of the tree: read 3 nodes at a time, it is the
    same tree (each node's folder given by its index among all the tree's nodes), and put a
    batch at a time, the same copy; a file with names in two batches is one file, its chunks
    given with its first name."""
    ns, tree, new_chunks = copying
    batches = list(ns.read_tree("/top", 3))
    assert [len(b) for b in batches] == [3] * 6 + [2] and [n for b in batches for n in b] == tree
    assert sorted(chunks_of(tree)) == sorted(new_chunks) and len(chunks_of(tree)) == len(new_chunks)
    assert put_tree(ns, tree, "/snap", new_chunks, ChunkChanges(), batch=3) == (15, 4)
    for d in range(3):
        names = [name for _, name, _ in ns.readdir(ns.resolve(f"/snap/d{d}").id, 0, 10).entries]
        assert names == [b"f%d" % i for i in range(5)] + ([b"again"] if d == 2 else [])
    again = ns.resolve("/snap/d2/again")
    assert again.id == ns.resolve("/snap/d0/f0").id and again.nlink == 2
    assert ns.resolve("/snap").nlink == 5 and ns.resolve("/snap/d1").nlink == 2
    assert [r.id for r in ns.file_chunks(again.id, 0, 0)[1]] == [new_chunks[tree[4].chunks[0].id]]  # (d0/f0)


def test_a_snapshot_that_fails_midway_leaves_nothing(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, copying: tuple[Namespace, list[TreeNode], dict[int, int]]
) -> None:
    """A snapshot's destination taken while its copy is being put: EEXIST, and every node it
    made is gone, its chunks garbage."""
    ns, tree, new_chunks = copying
    before = store.count_inodes()
    real = store.transaction
    opened = []

    def racing() -> Any:
        opened.append(1)
        if len(opened) == 3:  # (a batch or two in)
            with real():
                store.insert_dentry(ROOT_INODE, b"snap", ns.resolve("/top/d1/f1").id)
        return real()

    monkeypatch.setattr(store, "transaction", racing)
    changes = ChunkChanges()
    assert errno_of(put_tree, ns, tree, "/snap", new_chunks, changes) == errno.EEXIST
    monkeypatch.setattr(store, "transaction", real)
    assert store.count_inodes() == before and store.building() == [] and changes.live == []
    made_live = set(changes.garbage)
    assert made_live and made_live <= set(new_chunks.values())
    assert all(store.get_chunk(c).state == ChunkState.GARBAGE for c in made_live)  # type: ignore[union-attr]
    assert all(store.get_chunk(c).state == ChunkState.PENDING for c in set(new_chunks.values()) - made_live)  # type: ignore[union-attr]


def test_a_snapshot_left_unfinished_by_a_stopped_master_is_removed_when_it_starts(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, copying: tuple[Namespace, list[TreeNode], dict[int, int]]
) -> None:
    ns, tree, new_chunks = copying
    before = store.count_inodes()
    real_copy = ns._copy_node
    copied: list[int] = []

    def dying(*args: Any) -> Inode:
        if len(copied) == 9:
            raise KeyboardInterrupt  # (the master killed here: no cleanup runs)
        copied.append(1)
        return real_copy(*args)

    monkeypatch.setattr(ns, "_copy_node", dying)
    monkeypatch.setattr(ns, "_remove_unnamed", lambda top, changes: None)
    with pytest.raises(KeyboardInterrupt):
        put_tree(ns, tree, "/snap", new_chunks, ChunkChanges())
    assert len(store.building()) == 1 and store.count_inodes() != before
    assert errno_of(ns.resolve, "/snap") == errno.ENOENT
    # Its removal, stopped midway too, leaves what is left below the top, to be removed again.
    restarted = Namespace(store, CHUNK)
    real_free = restarted._free
    freed: list[int] = []

    def dying_free(*args: Any) -> None:
        if len(freed) == 4:
            raise KeyboardInterrupt
        freed.append(1)
        real_free(*args)

    monkeypatch.setattr(restarted, "_free", dying_free)
    with pytest.raises(KeyboardInterrupt):
        restarted.remove_unfinished_snapshots()
    assert len(store.building()) == 1
    assert Namespace(store, CHUNK).remove_unfinished_snapshots() == 1
    assert store.count_inodes() == before and store.building() == []
    states = Counter(store.get_chunk(c).state for c in new_chunks.values())  # type: ignore[union-attr]
    assert states[ChunkState.GARBAGE] >= 5 and states[ChunkState.LIVE] == 0  # (those made live: garbage)
    assert read_tree(ns, "/top") == tree  # (the source as it was)


def test_a_tree_is_read_at_one_moment_without_holding_up_changes(ns: Namespace) -> None:
    top = ns.mkdir(ROOT_INODE, b"top", 0o755, 0, 0).node
    ns.create(top.id, b"a", 0o644, 0, 0, exclusive=True)
    with ns.store.reading() as moment:
        ns.create(top.id, b"b", 0o644, 0, 0, exclusive=True)  # (a change meanwhile, made at once)
        assert [name for _, name, _ in ns.readdir(top.id, 0, 10).entries] == [b"a", b"b"]
        assert [d.name for d, _ in moment.list_dentries(top.id, 0, 10)] == [b"a"]


def test_quotas_count_every_change_and_refuse_what_would_pass_a_limit(ns: Namespace) -> None:
    """Random changes (names made, linked, renamed across quota folders, removed; sizes grown
    and cut): after each, every quota's counts are what a count from scratch finds, and within
    its limits; the changes refused are EDQUOT only for growth past one."""
    rng = random.Random(7)
    a = ns.mkdir(ROOT_INODE, b"a", 0o755, 0, 0).node.id
    b = ns.mkdir(a, b"b", 0o755, 0, 0).node.id
    c = ns.mkdir(ROOT_INODE, b"c", 0o755, 0, 0).node.id
    limits = {a: (40, 50_000), b: (15, 0), c: (0, 20_000)}
    for folder, path in ((a, "/a"), (b, "/a/b"), (c, "/c")):
        set_now = ns.quota(path, limits[folder])
        assert (set_now.entries, set_now.bytes) == ((1, 0) if folder == a else (0, 0))

    def names() -> list[tuple[int, bytes, Inode]]:
        found, folders = [], [ROOT_INODE]
        for folder in folders:
            for dentry, inode in ns.store.list_dentries(folder, 0, 10**6):
                found.append((folder, dentry.name, inode))
                if stat.S_ISDIR(inode.mode):
                    folders.append(inode.id)
        return found

    refused = Counter[str]()
    for step in range(600):
        with ns.store.transaction():
            every = names()
        folders = [ROOT_INODE] + [i.id for _, _, i in every if stat.S_ISDIR(i.mode)]
        files = [(p, n, i) for p, n, i in every if stat.S_ISREG(i.mode)]
        op = rng.choice(["create", "create", "mkdir", "size", "size", "link", "unlink", "rmdir", "rename", "symlink"])
        name = b"n%d" % step
        try:
            if op == "create":
                ns.create(rng.choice(folders), name, 0o644, 0, 0, True)
            elif op == "mkdir":
                ns.mkdir(rng.choice(folders), name, 0o755, 0, 0)
            elif op == "symlink":
                ns.symlink(rng.choice(folders), name, b"target", 0, 0)
            elif op == "size" and files:
                ns.setattr(rng.choice(files)[2].id, size=rng.randrange(0, 6000))
            elif op == "link" and files:
                ns.link(rng.choice(files)[2].id, rng.choice(folders), name)
            elif op == "unlink" and files:
                parent, old, _ = rng.choice(files)
                ns.unlink(parent, old)
            elif op == "rmdir":
                ns.rmdir(*rng.choice([(p, n) for p, n, i in every if stat.S_ISDIR(i.mode)]))
            elif op == "rename" and every:
                parent, old, _ = rng.choice(every)
                ns.rename(parent, old, rng.choice(folders), rng.choice([name, old]), 0)
        except FsError as e:
            refused[f"{op} {errno.errorcode[e.errno]}"] += 1
            assert e.errno != errno.EDQUOT or op in ("create", "mkdir", "symlink", "size", "link", "rename")
        with ns.store.transaction():
            for folder, (max_entries, max_bytes) in limits.items():
                counted = ns.store.quota(folder)
                if counted is None:  # (removed with its folder)
                    continue
                assert (counted.entries, counted.bytes) == ns.store.subtree_size(folder), (step, op)
                assert counted.entries <= (max_entries or counted.entries)
                assert counted.bytes <= (max_bytes or counted.bytes)
    assert refused["create EDQUOT"] and refused["size EDQUOT"], refused  # (the limits were met)
    assert ns.quota("/c", (0, 0)) == Quota(c, 0, 0, *ns.store.subtree_size(c))  # no quota any more
    assert errno_of(ns.quota, "/a/b", (-1, 0)) == errno.EINVAL
