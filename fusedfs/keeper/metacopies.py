"""Copies of the master's metadata kept on a keeper's disk, so that the namespace outlives the
master's disk (restored with `fusedfs master --restore-from KEEPER`).

Each copy is one file, `metadata/<taken_ns>-<crc32c>.sqlite3`, written under a temporary name,
checked against the length and CRC-32C its header announces, fsynced and renamed into place; the
newest `KEEP` stay. The CRC in the name is sent with the copy, so a copy rotten on this disk is
found out by whoever restores it. Only copies of this keeper's own cluster are taken. No gRPC here.

Beside each copy, `<same name>.journal` takes the changes the master makes after it, as they
come (so a restore loses a second of changes, not all since the copy): the seq of the last
change the copy holds (8 bytes), then one record per change, each its length, its CRC-32C and
the JournalEntry, fdatasynced before it is acknowledged. Only a change that follows on from the
last one held is appended; a record torn by a crash ends the journal and is cut off.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
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
JOURNAL_SUFFIX = ".journal"
_JOURNAL_BASE = struct.Struct(">Q")  # the seq of the last change the copy holds
_RECORD = struct.Struct(">II")  # a journal record's length and CRC-32C; the entry follows
FUTURE_SLACK_NS = 86_400 * 10**9  # how far ahead of this keeper's clock a copy's time may be
MAX_COPY = 64 << 30  # bytes: far beyond any real namespace, below what would fill a disk by mistake


class MetadataCopies:
    def __init__(self, root: Path, cluster_id: Callable[[], str]) -> None:
        self.folder = root / "metadata"
        self.folder.mkdir(exist_ok=True)
        for leftover in self.folder.glob("*.tmp"):  # a copy cut short by a crash
            leftover.unlink()
        for journal in self.folder.glob(f"*{JOURNAL_SUFFIX}"):  # its copy never took its place
            if not journal.with_suffix(SUFFIX).exists():
                journal.unlink()
        self._cluster_id = cluster_id
        self._journal_lock = threading.Lock()
        self._journal_ends: dict[Path, int] = {}  # journal -> the seq of the last change it holds

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
        with self._journal_lock:
            for old in self._copies()[:-KEEP]:
                old.unlink(missing_ok=True)
                old.with_suffix(JOURNAL_SUFFIX).unlink(missing_ok=True)
                self._journal_ends.pop(old.with_suffix(JOURNAL_SUFFIX), None)

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
        name = self.folder / f"{header.taken_ns:020d}-{crc:08x}{SUFFIX}"
        with open(name.with_suffix(JOURNAL_SUFFIX), "wb") as f:
            f.write(_JOURNAL_BASE.pack(header.journal_seq))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name)
        fsync_dir(self.folder)

    def append_journal(self, journal: kp.MetadataJournal) -> int:
        """Appends the changes that follow on from the last one the journal of the copy taken at
        journal.copy_taken_ns holds (durably); returns the seq of the last one it now holds.
        FsError if there is no such copy, or it is of another cluster."""
        ours = self._cluster_id()
        if not ours or journal.cluster_id != ours:
            raise FsError(
                errno.EXDEV, f"a metadata journal of cluster {journal.cluster_id!r}; this keeper is of {ours!r}"
            )
        with self._journal_lock:
            copies = [c for c in self._copies() if c.name.startswith(f"{journal.copy_taken_ns:020d}-")]
            path = copies[0].with_suffix(JOURNAL_SUFFIX) if copies else None
            if path is None or not path.exists():
                raise FsError(errno.ENOENT, f"no metadata copy taken at {journal.copy_taken_ns} here")
            last = self._journal_ends.get(path)
            if last is None:
                last = self._journal_end(path)
            records = []
            for entry in journal.entries:
                if entry.seq > last + 1:
                    break  # a gap: the master sends what is missing next
                if entry.seq == last + 1:
                    payload = entry.SerializeToString()
                    records.append(_RECORD.pack(len(payload), crc32c(payload)) + payload)
                    last = entry.seq
            if records:
                try:
                    with open(path, "ab") as f:
                        f.write(b"".join(records))
                        f.flush()
                        os.fdatasync(f.fileno())
                except OSError as e:
                    self._journal_ends.pop(path, None)  # what made it to the disk is read back next time
                    raise FsError(e.errno or errno.EIO, f"metadata journal not stored: {e.strerror or e}") from None
            self._journal_ends[path] = last
            return last

    def _journal_end(self, path: Path) -> int:
        """The seq of the last change the journal holds; cuts off a record torn by a crash."""
        last, end = _journal_base(path), _JOURNAL_BASE.size
        for entry, end in _journal_entries(path):  # noqa: B007 (the last is what counts)
            last = entry.seq
        if end < path.stat().st_size:
            os.truncate(path, end)
        return last

    def newest(self) -> tuple[kp.MetadataCopyHeader, Iterator[bytes], Iterator[kp.JournalEntry]] | None:
        """The newest copy's header, its bytes in pieces and the changes made after it, or None."""
        copies = self._copies()
        if not copies:
            return None
        path = copies[-1]
        taken, crc = path.stem.split("-")
        journal = path.with_suffix(JOURNAL_SUFFIX)
        header = kp.MetadataCopyHeader(
            cluster_id=self._cluster_id(),
            taken_ns=int(taken),
            length=path.stat().st_size,
            crc32c=int(crc, 16),
            journal_seq=_journal_base(journal),
        )
        return header, file_pieces(path), (entry for entry, _ in _journal_entries(journal))

    def _copies(self) -> list[Path]:
        """Oldest first (the names are zero-padded times)."""
        return sorted(self.folder.glob(f"{'[0-9]' * 20}-{'[0-9a-f]' * 8}{SUFFIX}"))


def _journal_base(path: Path) -> int:
    """The seq of the last change the journal's copy holds (0 for a copy without a journal)."""
    try:
        with open(path, "rb") as f:
            base = f.read(_JOURNAL_BASE.size)
    except FileNotFoundError:
        return 0
    return _JOURNAL_BASE.unpack(base)[0] if len(base) == _JOURNAL_BASE.size else 0


def _journal_entries(path: Path) -> Iterator[tuple[kp.JournalEntry, int]]:
    """Each whole change the journal holds, in order, with the offset just past its record."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        offset = f.seek(_JOURNAL_BASE.size)
        while len(head := f.read(_RECORD.size)) == _RECORD.size:
            length, crc = _RECORD.unpack(head)
            payload = f.read(length)
            if len(payload) < length or crc32c(payload) != crc:
                return  # torn by a crash (or rotten): the journal ends before it
            offset += _RECORD.size + length
            yield kp.JournalEntry.FromString(payload), offset
