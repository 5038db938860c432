"""Mount sessions: which files each mount has open, as the mounts last told the master.

A mount announces its open files every second (and right before it removes a name); a mount
silent for `timeout` seconds is no longer counted as connected, yet what it had open stays held
for `sustain` seconds (as MooseFS sustains a session): a mount cut off from the master for a
few minutes, or paused, comes back to find the unlinked files it has open. A mount that
unmounts lets go at once. The namespace asks `is_open` when a file loses its last name: an
open file is then kept as an orphan until no session holds it. The master keeps each mount's
open files in its store as well (saved whenever they change: `announce` says so), and a
restarted master takes them back (`restore`): a mount paused across the restart still holds
what it had open for `sustain`. What was opened within a second before the restart may not be
saved yet, so orphans are not freed until the mounts have had `timeout` seconds to announce
themselves again (`settled`).

No I/O here; thread-safe, as the gRPC handlers and the maintenance loop share it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

SESSION_TIMEOUT = 10.0
SESSION_SUSTAIN = 3600.0  # seconds a silent mount's open files stay held


@dataclass
class _Session:
    last_seen: float
    open_inodes: frozenset[int] = field(default_factory=frozenset)
    heard: bool = True  # from this master (not only restored from before a restart)
    info: Any = None  # what the mount last said of itself (for status; not saved)


@dataclass(frozen=True)
class ConnectedMount:
    session_id: str
    silent: float  # seconds since it was last heard from
    open_files: int
    info: Any  # as announced (None: it said nothing of itself)


class MountSessions:
    def __init__(self, now: float, timeout: float = SESSION_TIMEOUT, sustain: float = SESSION_SUSTAIN) -> None:
        self.timeout = timeout
        self.sustain = max(sustain, timeout)
        self.started = now
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def announce(self, session_id: str, open_inodes: frozenset[int], now: float, info: Any = None) -> bool:
        """Records what a mount has open now, and what it says of itself; True if what it has
        open is news (to be saved)."""
        with self._lock:
            before = self._sessions.get(session_id)
            self._sessions[session_id] = _Session(now, open_inodes, info=info)
        return before is None or before.open_inodes != open_inodes

    def restore(self, session_id: str, open_inodes: frozenset[int], now: float) -> None:
        """A session saved before a restart: held for `sustain` from now, though not counted as
        connected until the mount is heard from."""
        with self._lock:
            self._sessions.setdefault(session_id, _Session(now, open_inodes, heard=False))

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def is_open(self, ino: int, now: float) -> bool:
        with self._lock:
            return any(ino in s.open_inodes for s in self._sessions.values() if now - s.last_seen <= self.sustain)

    def expire(self, now: float) -> list[str]:
        """Forgets mounts silent for longer than `sustain` (what they held goes); returns their ids."""
        with self._lock:
            gone = [sid for sid, s in self._sessions.items() if now - s.last_seen > self.sustain]
            for sid in gone:
                del self._sessions[sid]
        return gone

    def settled(self, now: float) -> bool:
        """True once every mount alive before a restart has had time to announce itself."""
        return now - self.started > self.timeout

    def connected(self, now: float) -> list[ConnectedMount]:
        """The mounts heard from within the timeout, the longest silent last."""
        with self._lock:
            heard = [(sid, s) for sid, s in self._sessions.items() if s.heard and now - s.last_seen <= self.timeout]
        heard.sort(key=lambda item: item[1].last_seen, reverse=True)
        return [ConnectedMount(sid, max(0.0, now - s.last_seen), len(s.open_inodes), s.info) for sid, s in heard]
