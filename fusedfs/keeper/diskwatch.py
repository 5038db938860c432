"""Noticing a disk that stops answering: the age of the oldest disk operation in flight.

A failing disk (or its controller, or a network block device) often does not fail: its I/O just
never returns. The keeper's process stays up and goes on heartbeating, so without a watch the
master would go on sending it new chunks, each write hanging until the client gives up on it.
Every disk operation of a chunk write is timed here, and a probe written and fsynced every
second times the disk while no client writes (`ChunkStore.probe`). Once the oldest operation
in flight is older than STALL_AFTER, the keeper refuses new writes at once and tells the master,
which places no new chunks on it while others can take them; after FAIL_AFTER the keeper stops
heartbeating, so that the master counts it dead and copies its chunks elsewhere (HDFS's DataNode
likewise checks its volumes with a timeout and gives up a volume that does not answer).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STALL_AFTER = 5.0  # seconds a disk operation may take before the disk counts as not answering
FAIL_AFTER = 60.0  # seconds of that before the keeper leaves the cluster until its disk answers


class DiskWatch:
    """The disk operations in flight and when each began. Thread-safe."""

    def __init__(self, stall_after: float = STALL_AFTER, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after = stall_after
        self._clock = clock
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}
        self._tokens = itertools.count()

    @contextmanager
    def op(self) -> Iterator[None]:
        """Times the disk operation run inside."""
        token = next(self._tokens)
        with self._lock:
            self._started[token] = self._clock()
        try:
            yield
        finally:
            with self._lock:
                del self._started[token]

    def waiting_for(self) -> float:
        """Seconds the oldest operation in flight has been waiting (0: none in flight)."""
        with self._lock:
            oldest = min(self._started.values(), default=None)
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest)

    def stalled_for(self) -> float:
        """waiting_for(), once that is STALL_AFTER or more; else 0 (the disk answers)."""
        waiting = self.waiting_for()
        return waiting if waiting >= self.stall_after else 0.0
