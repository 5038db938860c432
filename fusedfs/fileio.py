"""Writes to local files that either store every byte or fail: os.pwrite alone may store fewer
bytes than it was given (a disk that fills up midway returns a short count, not ENOSPC), and a
short write not noticed is a chunk or a cached write cut short without anyone knowing."""

from __future__ import annotations

import errno
import os


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Writes all of data at offset, or raises OSError (ENOSPC when the disk took no more)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]
        offset += written
