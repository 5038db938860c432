"""Log lines that repeat: during an outage a mount fails the same way many times a second (a
partition sweep's mount logged 1,996 failed writes to keepers in 90 s), and the line that says
what went wrong drowns in them. `Repeating` lets one line a key through every few seconds, and
says how many it held back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable

EVERY = 10.0  # seconds between two lines of one key


class Repeating:
    """A logger's lines by key (a keeper's address and what failed, a file): the first at once,
    then at most one every `every` seconds, with the count of those held back meanwhile.
    Thread-safe: uploads and reads log from worker threads."""

    def __init__(self, logger: logging.Logger, every: float = EVERY) -> None:
        self.logger = logger
        self.every = every
        self._lock = threading.Lock()
        self._last: dict[Hashable, tuple[float, int]] = {}  # key -> (when last logged, held back since)

    def log(self, level: int, key: Hashable, message: str, *args: object) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = time.monotonic()
        with self._lock:
            last, held = self._last.get(key, (-self.every, 0))
            if now - last < self.every:
                self._last[key] = (last, held + 1)
                return
            self._last[key] = (now, 0)
            if len(self._last) > 10_000:  # keys of the past (inodes): forget those logged long ago
                self._last = {k: v for k, v in self._last.items() if now - v[0] < self.every}
        if held:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, held, now - last)
        self.logger.log(level, message, *args)

    def info(self, key: Hashable, message: str, *args: object) -> None:
        self.log(logging.INFO, key, message, *args)

    def warning(self, key: Hashable, message: str, *args: object) -> None:
        self.log(logging.WARNING, key, message, *args)
