"""`fusedfs -v mount` logs every request, its time, and the errno it failed with (how a partition
sweep told an EIO the mount gave from bad data SQLite read: SQLite calls a short read zeros)."""

from __future__ import annotations

import errno
import logging
from types import SimpleNamespace

import pyfuse3
import pytest
import trio

from fusedfs.errors import FsError
from fusedfs.mount.operations import translate_errors


class Handlers:
    master = SimpleNamespace(wait=1.0)

    @translate_errors
    async def read(self, fh: int, offset: int, size: int) -> bytes:
        if offset:
            raise FsError(errno.EIO, "no replica could be read")
        return b"x" * size

    @translate_errors
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, ctx: pyfuse3.RequestContext) -> None:
        pass


def test_each_request_is_logged_with_the_errno_it_failed_with(caplog: pytest.LogCaptureFixture) -> None:
    handlers = Handlers()
    caplog.set_level(logging.DEBUG, logger="fusedfs.mount.operations")
    assert trio.run(handlers.read, 7, 0, 4) == b"xxxx"
    with pytest.raises(pyfuse3.FUSEError):
        trio.run(handlers.read, 7, 16384, 4096)
    trio.run(handlers.setattr, 5, pyfuse3.EntryAttributes(), pyfuse3.RequestContext())
    ok, failed, asked = [r.getMessage() for r in caplog.records]
    assert ok.startswith("read(7, 0) ") and ok.endswith(" ms")
    assert failed.startswith("read(7, 16384) ") and failed.endswith(" ms EIO")
    assert asked.startswith("setattr(5) ")  # (not the objects: the attributes, who asked)
