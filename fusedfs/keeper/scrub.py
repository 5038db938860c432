"""Background scrubbing: every stored chunk is re-read and checked, one full pass per interval.

Bit rot and files lost behind the keeper's back are found here even when no client reads the
chunk. A bad replica is deleted and a missing one forgotten; either way the next heartbeat
reports it removed and the master copies a good replica to restore the goal (as MooseFS and
HDFS's block scanner do). Chunks are checked one at a time, paced so that a pass takes about
`interval` seconds: scrubbing never competes with clients for more than one chunk read at once.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fusedfs.errors import FsError
from fusedfs.keeper.chunkstore import ChunkStore

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 7 * 24 * 3600.0  # a week, as a default: HDFS's scanner takes three


def pause_after_chunk(interval: float, chunks: int, spent: float) -> float:
    """Seconds to rest after checking one chunk so that a pass over `chunks` takes about `interval`."""
    return max(0.0, interval / max(1, chunks) - spent)


@dataclass
class ScrubStats:
    checked: int = 0  # chunks verified since the keeper started
    bad: int = 0  # replicas that failed their checksums (deleted)
    missing: int = 0  # chunk files gone from the disk (forgotten)
    passes: int = 0  # full passes completed


class Scrubber:
    def __init__(
        self,
        store: ChunkStore,
        interval: float,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.interval = interval
        self.stop = stop
        self.clock = clock
        self.stats = ScrubStats()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.scrub_pass()
            except Exception:  # a bug must not end scrubbing for good
                log.exception("scrub pass failed")
                self.stop.wait(self.interval)

    def scrub_pass(self) -> None:
        chunk_ids = sorted(self.store.chunk_ids())
        if not chunk_ids:
            self.stop.wait(self.interval)
        for chunk_id in chunk_ids:
            if self.stop.is_set():
                return
            started = self.clock()
            self.check(chunk_id)
            self.stop.wait(pause_after_chunk(self.interval, len(chunk_ids), self.clock() - started))
        self.stats.passes += 1

    def check(self, chunk_id: str) -> None:
        if not self.store.has(chunk_id):  # deleted since the pass began
            return
        try:
            good = self.store.verify(chunk_id)
        except FsError as e:
            if e.errno == errno.ENOENT:  # (the store has already dropped it from its report)
                self.stats.missing += 1
                log.warning("scrub: chunk %s is gone from the disk; reported as lost here", chunk_id)
            return
        except OSError as e:  # (the pass goes on: one file must not keep the others unchecked)
            log.warning("scrub: chunk %s could not be checked: %s", chunk_id, e)
            return
        self.stats.checked += 1
        if not good:
            self.stats.bad += 1
            self.store.set_aside(chunk_id, f"scrub: chunk {chunk_id} fails its checksum")
