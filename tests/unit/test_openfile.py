"""An open file's view of the master's attributes: what it takes from a getattr, and what not."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from fusedfs.mount.openfile import MountShared, OpenFile
from fusedfs.mount.writeback import WriteBack
from fusedfs.rpc import master_pb2 as mp


def open_file(tmp_path: Path, attr: mp.Attr) -> OpenFile:
    none = cast(Any, None)  # (seen() uses none of the cluster clients)
    shared = MountShared(none, none, none, WriteBack(tmp_path / "mount-1", 1 << 20), none, none)
    return OpenFile.from_attr(attr, shared)


def test_a_getattr_answered_before_our_commit_does_not_shrink_the_file(tmp_path: Path) -> None:
    f = open_file(tmp_path, mp.Attr(inode=5, size=100, mtime_ns=10, ctime_ns=10, chunk_size=1 << 20))
    f.attr = mp.Attr(inode=5, size=200, mtime_ns=20, ctime_ns=20)  # our commit's reply ...
    f.size = 200
    f.seen(mp.Attr(inode=5, size=100, mtime_ns=10, ctime_ns=10))  # ... overtook an older getattr's
    assert f.size == 200 and f.attr.ctime_ns == 20
    f.seen(mp.Attr(inode=5, size=200, mtime_ns=20, ctime_ns=20))  # the same state: nothing to do
    assert f.size == 200
    f.refs = {}
    f.seen(mp.Attr(inode=5, size=50, mtime_ns=30, ctime_ns=30))  # another mount truncated it since
    assert f.size == 50 and f.refs is None and f.attr.ctime_ns == 30


def test_our_own_unsaved_writes_stand_against_any_getattr(tmp_path: Path) -> None:
    f = open_file(tmp_path, mp.Attr(inode=5, size=100, mtime_ns=10, ctime_ns=10, chunk_size=1 << 20))
    f.writes, f.size = 1, 150  # written here, not committed yet
    f.seen(mp.Attr(inode=5, size=80, mtime_ns=30, ctime_ns=30))
    assert f.size == 150
