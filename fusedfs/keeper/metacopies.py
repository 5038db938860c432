"""Copies of the master's metadata kept on a keeper's disk, so that the namespace outlives the
master's disk (restored with `fusedfs master --restore-from KEEPER`).

Each copy is one file, `metadata/<taken_ns>-<crc32c>.sqlite3`, written under a temporary name,
checked against the length and CRC-32C its header announces, fsynced and renamed into place; the
newest `KEEP` stay. The CRC in the name is sent with the copy, so a copy rotten on this disk is
found out by whoever restores it. Only copies of this keeper's own cluster are taken. No gRPC here.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from fusedfs.chunks import crc32c, file_pieces
from fusedfs.errors import FsError
from fusedfs.keeper.chunkstore import fsync_dir
from fusedfs.rpc import keeper_pb2 as kp

KEEP = 3
SUFFIX = ".sqlite3"
FUTURE_SLACK_NS = 86_400 * 10**9  # how far ahead of this keeper's clock a copy's time may be
MAX_COPY = 64 << 30  # bytes: far beyond any real namespace, below what would fill a disk by mistake


class MetadataCopies:
    def __init__(self, root: Path, cluster_id: Callable[[], str]) -> None:
        self.folder = root / "metadata"
        self.folder.mkdir(exist_ok=True)
        for leftover in self.folder.glob("*.tmp"):  # a copy cut short by a crash
            leftover.unlink()
        self._cluster_id = cluster_id

    def put(self, header: kp.MetadataCopyHeader, data: Iterable[bytes]) -> None:
        """Stores a copy whose bytes arrive in pieces; FsError (nothing kept) if it is not whole
        and right, or not of this keeper's cluster."""
        ours = self._cluster_id()
        if not ours or header.cluster_id != ours:
            raise FsError(errno.EXDEV, f"a metadata copy of cluster {header.cluster_id!r}; this keeper is of {ours!r}")
        # (a time far ahead would stay "newest" for good, and push the real copies out)
        if not 0 < header.length <= MAX_COPY or not 0 < header.taken_ns < time.time_ns() + FUTURE_SLACK_NS:
            raise FsError(errno.EINVAL, "a metadata copy's header is out of range")
        tmp = self.folder / f"{uuid.uuid4().hex}.tmp"
        try:
            self._write(header, data, tmp)
        except OSError as e:  # a full disk above all
            raise FsError(e.errno or errno.EIO, f"metadata copy not stored: {e.strerror or e}") from None
        finally:
            tmp.unlink(missing_ok=True)
        for old in self._copies()[:-KEEP]:
            old.unlink(missing_ok=True)

    def _write(self, header: kp.MetadataCopyHeader, data: Iterable[bytes], tmp: Path) -> None:
        crc, size = 0, 0
        with open(tmp, "wb") as f:
            for piece in data:
                size += len(piece)
                if size > header.length:
                    raise FsError(errno.EINVAL, "a metadata copy longer than its header says")
                crc = crc32c(piece, crc)
                f.write(piece)
            if size != header.length or crc != header.crc32c:
                raise FsError(errno.EINVAL, f"a metadata copy arrived damaged or cut short ({size} bytes)")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / f"{header.taken_ns:020d}-{crc:08x}{SUFFIX}")
        fsync_dir(self.folder)

    def newest(self) -> tuple[kp.MetadataCopyHeader, Iterator[bytes]] | None:
        """The newest copy's header and its bytes in pieces, or None."""
        copies = self._copies()
        if not copies:
            return None
        path = copies[-1]
        taken, crc = path.stem.split("-")
        header = kp.MetadataCopyHeader(
            cluster_id=self._cluster_id(), taken_ns=int(taken), length=path.stat().st_size, crc32c=int(crc, 16)
        )
        return header, file_pieces(path)

    def _copies(self) -> list[Path]:
        """Oldest first (the names are zero-padded times)."""
        return sorted(self.folder.glob(f"{'[0-9]' * 20}-{'[0-9a-f]' * 8}{SUFFIX}"))
