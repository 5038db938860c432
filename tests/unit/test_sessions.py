"""Mount sessions: open files are held while their mount keeps announcing itself."""

from __future__ import annotations

import stat
from pathlib import Path

from fusedfs.master.sessions import ConnectedMount, MountSessions
from fusedfs.master.store import SqliteStore


def test_a_mount_holds_its_open_files_until_it_has_been_silent_long() -> None:
    sessions = MountSessions(now=0.0, timeout=10.0, sustain=100.0)
    assert not sessions.settled(5.0) and sessions.settled(10.5)  # a restarted master waits for mounts
    sessions.announce("a", frozenset({7, 8}), now=1.0)
    sessions.announce("b", frozenset({9}), now=1.0)
    assert sessions.is_open(7, now=2.0) and sessions.is_open(9, now=2.0) and not sessions.is_open(10, now=2.0)
    sessions.announce("a", frozenset({8}), now=3.0)  # closed 7
    assert not sessions.is_open(7, now=3.0)
    # b goes silent (cut off, paused): no longer connected, but what it has open stays held
    sessions.announce("a", frozenset({8}), now=50.0)
    assert len(sessions.connected(now=50.0)) == 1 and sessions.expire(now=50.0) == []
    assert sessions.is_open(9, now=100.0)
    sessions.announce("b", frozenset({9}), now=100.0)  # back in time: it never lost the file
    sessions.announce("a", frozenset({8}), now=100.0)
    assert len(sessions.connected(now=100.0)) == 2
    assert sessions.is_open(9, now=200.0) and not sessions.is_open(9, now=200.5)  # silent for too long
    assert sessions.expire(now=200.5) == ["a", "b"]
    sessions.announce("a", frozenset({8}), now=201.0)
    sessions.end("a")  # unmounted: lets go at once
    assert not sessions.is_open(8, now=201.0) and sessions.connected(now=201.0) == []


def test_the_mounts_heard_from_are_listed_with_what_they_said_the_latest_first() -> None:
    sessions = MountSessions(now=0.0, timeout=10.0, sustain=100.0)
    sessions.restore("from-before", frozenset({5}), now=0.0)  # (not heard from since the restart)
    sessions.announce("a", frozenset({7, 8}), now=1.0, info="alpha")
    sessions.announce("b", frozenset(), now=2.0)  # (a mount that says nothing of itself)
    assert sessions.connected(now=4.0) == [
        ConnectedMount("b", 2.0, 0, None),
        ConnectedMount("a", 3.0, 2, "alpha"),
    ]
    sessions.announce("a", frozenset({7}), now=12.0, info="alpha, later")
    assert sessions.connected(now=12.5) == [ConnectedMount("a", 0.5, 1, "alpha, later")]  # b is silent


def test_what_mounts_had_open_is_saved_on_change_and_taken_back_after_a_restart(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.sqlite3", stat.S_IFDIR | 0o755, now_ns=1)
    sessions = MountSessions(now=0.0, timeout=10.0, sustain=100.0)
    assert sessions.announce("a", frozenset({7}), now=1.0)  # news: to be saved
    assert not sessions.announce("a", frozenset({7}), now=2.0)  # the same again: nothing to save
    assert sessions.announce("a", frozenset({7, 8}), now=3.0)
    store.save_session("a", frozenset({7, 8}))
    store.save_session("b", frozenset({2**40}))
    store.save_session("b", None)  # (ended)
    store.close()
    store = SqliteStore(tmp_path / "m.sqlite3", stat.S_IFDIR | 0o755, now_ns=2)
    with store.transaction():
        saved = store.saved_sessions()
    assert saved == {"a": frozenset({7, 8})}
    restarted = MountSessions(now=500.0, timeout=10.0, sustain=100.0)
    for session_id, inodes in saved.items():
        restarted.restore(session_id, inodes, now=500.0)
    # Held for the sustain from the restart, though not counted as connected (a paused mount).
    assert restarted.is_open(8, now=590.0) and not restarted.is_open(8, now=601.0)
    assert restarted.connected(now=500.0) == []
    assert restarted.expire(now=601.0) == ["a"]
    store.close()
