"""Mount sessions: open files are held while their mount keeps announcing itself."""

from __future__ import annotations

from fusedfs.master.sessions import MountSessions


def test_a_mount_holds_its_open_files_until_it_goes_silent() -> None:
    sessions = MountSessions(now=0.0, timeout=10.0)
    assert not sessions.settled(5.0) and sessions.settled(10.5)  # a restarted master waits for mounts
    sessions.announce("a", frozenset({7, 8}), now=1.0)
    sessions.announce("b", frozenset({9}), now=1.0)
    assert sessions.is_open(7, now=2.0) and sessions.is_open(9, now=2.0) and not sessions.is_open(10, now=2.0)
    sessions.announce("a", frozenset({8}), now=3.0)  # closed 7
    assert not sessions.is_open(7, now=3.0)
    assert not sessions.is_open(9, now=11.5)  # b is silent: what it holds counts for nothing
    assert sessions.expire(now=11.5) == ["b"] and sessions.count() == 1
    sessions.end("a")
    assert not sessions.is_open(8, now=11.5) and sessions.count() == 0
