"""Mount sessions: which files each mount has open, as the mounts last told the master.

A mount announces its open files every second (and right before it removes a name); a mount
silent for `timeout` seconds is no longer counted as connected, yet what it had open stays held
for `sustain` seconds (as MooseFS sustains a session): a mount cut off from the master for a
few minutes, or paused, comes back to find the unlinked files it has open. A mount that
unmounts lets go at once. The namespace asks `is_open` when a file loses its last name: an
open file is then kept as an orphan until no session holds it. After a master restart nobody
holds anything until the mounts have had `timeout` seconds to announce themselves again, so
orphans are not freed in that window (`settled`).

In memory only, no I/O (the orphans themselves are in the metadata store); thread-safe, as the
gRPC handlers and the maintenance loop share it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

SESSION_TIMEOUT = 10.0
SESSION_SUSTAIN = 3600.0  # seconds a silent mount's open files stay held


@dataclass
class _Session:
    last_seen: float
    open_inodes: frozenset[int] = field(default_factory=frozenset)


class MountSessions:
    def __init__(self, now: float, timeout: float = SESSION_TIMEOUT, sustain: float = SESSION_SUSTAIN) -> None:
        self.timeout = timeout
        self.sustain = max(sustain, timeout)
        self.started = now
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def announce(self, session_id: str, open_inodes: frozenset[int], now: float) -> None:
        with self._lock:
            self._sessions[session_id] = _Session(now, open_inodes)

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

    def count(self, now: float) -> int:
        """Mounts heard from within the timeout."""
        with self._lock:
            return sum(1 for s in self._sessions.values() if now - s.last_seen <= self.timeout)
