"""One process per data folder: a master's or keeper's --data (and a mount's write-back folder)
is locked while it runs, and private to the user it runs as.

Two masters on one metadata store would each trust their own view of the chunks and delete what
the other committed; two keepers on one folder would clear each other's partial writes at start.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import TextIO

from fusedfs.errors import FsError


def lock_data_dir(path: Path, role: str) -> TextIO:
    """Takes the folder's lock, held until the returned file is closed or the process ends;
    EBUSY, naming the holder, when another process holds it. The folder is made private to
    this process's user: it holds every file's bytes (a keeper's chunks) or every name (the
    master's metadata), which the mount shows other users only as their permissions allow.
    FsError naming the folder when it cannot be made or written (its disk full, a file there)."""
    try:
        return _lock(path, role)
    except OSError as e:
        raise FsError(e.errno or errno.EIO, f"cannot use {path} as the {role}'s folder: {e.strerror or e}") from None


def _lock(path: Path, role: str) -> TextIO:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    lock = open(path / "lock", "a+")  # noqa: SIM115 (held for the life of the process)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            message = f"{path} is in use by another {role} ({holder}): one {role} per data folder"
            raise FsError(errno.EBUSY, message) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
    except BaseException:
        lock.close()
        raise
    return lock


def in_use(path: Path) -> bool:
    """Whether a process holds the folder's lock (taken by lock_data_dir) now."""
    try:
        lock = open(path / "lock", "a+")  # noqa: SIM115 (closed below)
    except OSError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
