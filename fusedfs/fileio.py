"""Writes to local files that either store every byte or fail: os.pwrite alone may store fewer
bytes than it was given (a disk that fills up midway returns a short count, not ENOSPC), and a
short write not noticed is a chunk or a cached write cut short without anyone knowing. And what
a failed write of a local disk tells the caller: ENOSPC when it is full, else EIO."""

from __future__ import annotations

import errno
import os

from fusedfs.errors import FsError


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Writes all of data at offset, or raises OSError (ENOSPC when the disk took no more)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]
        offset += written


def disk_error(e: OSError, disk: str) -> FsError:
    """The error to give for a failed write of `disk` (as "keeper disk"): out of space or
    inodes, or over a quota, is ENOSPC; anything else EIO."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return FsError(errno.ENOSPC, f"{disk} is full")
    return FsError(errno.EIO, f"{disk} failed: {e.strerror or e}")
