"""Copies of the master's metadata on the keepers, so that the namespace outlives the master's
disk: taken every few minutes (SQLite's online backup) and sent to the keepers with the most
free space; between copies, the JournalShipper sends those keepers every change as it is made
(the store's journal), a few times a second, as MooseFS's master feeds its metaloggers.
`fusedfs master --restore-from KEEPER` fetches the newest copy and the changes made after it
back into an empty --data.

A restored master has lost what changed after the last change the keeper got (a fraction of a
second's worth, unless the keepers were unreachable). So that nothing it still names is gone,
garbage is deleted only once a copy shows it unreferenced (Cluster.copy_taken_ns); and its
chunk and inode counters move on by RESTORE_ID_GAP, so that ids issued later (chunks keepers may
hold with other bytes, inodes mounts may still have open) are never issued again.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from fusedfs.chunks import MiB, crc32c, file_pieces
from fusedfs.errors import FsError, from_rpc_error
from fusedfs.grpcutil import ChannelPool
from fusedfs.master.store import JournalEntry, SqliteStore
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc

log = logging.getLogger(__name__)

COPIES = 3  # keepers each copy goes to
RESTORE_ID_GAP = 1 << 32
METADATA_FILE = "metadata.sqlite3"
MIN_COPY_RATE = 4 * MiB  # bytes/s a keeper taking a copy must keep up
FETCH_TIMEOUT = 3600.0
SHIP_BATCH = 500  # changes per call to a keeper (rows of a few hundred bytes; an xattr's 64 KiB at most)
SHIP_TIMEOUT = 5.0  # seconds a keeper gets to store a batch
# Seconds between copies while one is wanted sooner than --metadata-copies-every: the newest is
# on fewer keepers than it should be, or the master's disk is low on room.
COPY_SOON = 10.0
COPY_RETRY = 60.0  # seconds between attempts while no keeper takes a copy


def copy_interval(copy_every: float, *, short: bool, short_tries: int, low_on_room: bool, failed: bool) -> float:
    """Seconds between metadata copies. copy_every; COPY_SOON while the newest copy is `short`
    (on fewer keepers than COPIES, or than there are: one died, was drained, lost its disk,
    refused to take it, or more keepers joined since), doubling with each copy taken for that
    which fell short again (`short_tries`), so that a keeper that keeps refusing does not cost
    a snapshot every few seconds; COPY_SOON while the master's disk is low on room (the journal
    keeps every change since the last copy, so the pages deletions free are used again only
    after the next); COPY_RETRY at least while no keeper took the last (`failed`)."""
    every = copy_every
    if short:
        every = min(every, COPY_SOON * 2 ** min(short_tries, 16))
    if low_on_room:
        every = min(every, COPY_SOON)
    if failed:
        every = max(every, COPY_RETRY)
    return every


def copy_timeout(length: int) -> float:
    """Seconds a keeper gets to take a copy of `length` bytes: generous for a slow disk, yet a
    stuck keeper must not hold up the copies (and the garbage collection waiting for them)."""
    return 30.0 + length / MIN_COPY_RATE


def send_copy(
    snapshot: Path, cluster_id: str, taken_ns: int, journal_seq: int, keepers: list[str], pool: ChannelPool
) -> list[str]:
    """Sends a snapshot file (holding the journal up to journal_seq) to the keepers at these
    addresses, all at once; returns those that stored it."""
    crc = 0
    for piece in file_pieces(snapshot):
        crc = crc32c(piece, crc)
    length = snapshot.stat().st_size
    header = kp.MetadataCopyHeader(
        cluster_id=cluster_id, taken_ns=taken_ns, length=length, crc32c=crc, journal_seq=journal_seq
    )

    def messages() -> Iterator[kp.MetadataCopyPiece]:
        yield kp.MetadataCopyPiece(header=header)
        for piece in file_pieces(snapshot):
            yield kp.MetadataCopyPiece(data=piece)

    timeout = copy_timeout(length)
    calls = {
        address: pool.stub(address, keeper_pb2_grpc.KeeperStub).PutMetadataCopy.future(messages(), timeout=timeout)
        for address in keepers
    }
    stored = []
    for address, call in calls.items():
        try:
            call.result()
            stored.append(address)
        except grpc.RpcError as e:
            log.warning("metadata copy to keeper %s failed: %s", address, from_rpc_error(e).message)
    return stored


class JournalShipper:
    """Sends the store's changes, as they are made, to the keepers that took the newest copy
    (`follow`), each from the last change it holds on (as its answers say)."""

    def __init__(self, store: SqliteStore, pool: ChannelPool) -> None:
        self.store = store
        self.pool = pool
        self._cluster_id = store.cluster_id()
        self._lock = threading.Lock()
        self._copy_taken_ns = 0
        self._held: dict[str, int] = {}  # keeper address -> the seq of the last change it holds
        self._failing: set[str] = set()

    def follow(self, copy_taken_ns: int, journal_seq: int, keepers: list[str]) -> None:
        """From now on, ship to these keepers the changes after their copy (taken at
        copy_taken_ns, holding changes up to journal_seq)."""
        with self._lock:
            self._copy_taken_ns = copy_taken_ns
            self._held = dict.fromkeys(keepers, journal_seq)
            self._failing = set()

    def failing(self) -> set[str]:
        """The keepers that refused (or did not answer) the last changes sent them."""
        with self._lock:
            return set(self._failing)

    def unshipped(self) -> int:
        """Changes made that not every keeper following the newest copy holds yet: of those
        that take them (as copy holders are counted; one that failed, a keeper down, would
        otherwise leave every change unsent for good), or of all when none does."""
        with self._lock:
            taking = [seq for address, seq in self._held.items() if address not in self._failing]
            held = min(taking or self._held.values(), default=None)
        return 0 if held is None else max(0, self.store.journal_end() - held)

    def ship(self) -> bool:
        """Sends each keeper (at once) the next changes it lacks, and waits for the answers;
        True if there is a backlog: one took a full batch and lacks more."""
        with self._lock:
            taken, held = self._copy_taken_ns, dict(self._held)
        end = self.store.journal_end()
        behind = {address: seq for address, seq in held.items() if seq < end}
        if not behind:
            return False
        entries = [_message(e) for e in self.store.journal_after(min(behind.values()), SHIP_BATCH)]
        calls = {}
        for address, seq in behind.items():
            journal = kp.MetadataJournal(
                cluster_id=self._cluster_id, copy_taken_ns=taken, entries=[e for e in entries if e.seq > seq]
            )
            stub = self.pool.stub(address, keeper_pb2_grpc.KeeperStub)
            calls[address] = stub.AppendMetadataJournal.future(journal, timeout=SHIP_TIMEOUT)
        more = False
        for (address, call), seq in zip(calls.items(), behind.values(), strict=True):
            try:
                last = call.result().last_seq
            except grpc.RpcError as e:
                if address not in self._failing:
                    log.warning("metadata changes not stored on keeper %s: %s", address, from_rpc_error(e).message)
                    with self._lock:
                        self._failing.add(address)
                continue
            if address in self._failing:
                log.info("metadata changes stored on keeper %s again", address)
                with self._lock:
                    self._failing.discard(address)
            with self._lock:
                if self._copy_taken_ns == taken and address in self._held:
                    self._held[address] = last
            # Another round at once only for a backlog, not for changes made meanwhile (those
            # go with the next round: batching them is what keeps this cheap under load). One
            # that answers with a gap behind it must wait for a copy.
            more |= seq < last < end and len(entries) == SHIP_BATCH
        return more


def _message(entry: JournalEntry) -> kp.JournalEntry:
    values = []
    for value in entry.values:
        if value is None:
            values.append(kp.JournalValue())
        elif isinstance(value, bytes):
            values.append(kp.JournalValue(blob=value))
        elif isinstance(value, str):
            values.append(kp.JournalValue(text=value))
        else:
            values.append(kp.JournalValue(integer=value))
    return kp.JournalEntry(seq=entry.seq, table=entry.table, deleted=entry.deleted, values=values)


def _entry(message: kp.JournalEntry) -> JournalEntry:
    values = []
    for value in message.values:
        kind = value.WhichOneof("value")
        values.append(None if kind is None else getattr(value, kind))
    return JournalEntry(message.seq, message.table, message.deleted, tuple(values))


def fetch_newest_copy(
    keepers: list[str], data_dir: Path, pool: ChannelPool
) -> tuple[str, kp.MetadataCopyHeader, int, dict[str, str]]:
    """fetch_copy from each of these keepers, keeping the one that holds the most changes (the
    newest copy, for one that holds as many): a keeper that was down while others took newer
    copies and changes would give an older namespace, and the chunks written since would then
    be collected as unknown. Returns the keeper chosen, its copy's header and last change, and
    for each keeper that could not give one, why. FsError if none could."""
    candidates: list[tuple[int, int, int, str, kp.MetadataCopyHeader]] = []
    failed: dict[str, str] = {}
    for i, keeper in enumerate(keepers):
        folder = data_dir / f".restore-{i}"
        shutil.rmtree(folder, ignore_errors=True)
        try:
            header, applied = fetch_copy(keeper, folder, pool)
        except FsError as e:
            failed[keeper] = e.message
            continue
        candidates.append((applied, header.taken_ns, i, keeper, header))
    try:
        if not candidates:
            raise FsError(
                errno.ENOENT, "no keeper gave a metadata copy: " + "; ".join(f"{k}: {m}" for k, m in failed.items())
            )
        applied, _, i, keeper, header = max(candidates, key=lambda c: c[:2])
        dest = data_dir / METADATA_FILE
        if dest.exists():
            raise FsError(errno.EEXIST, f"{data_dir} already holds metadata: restore into an empty folder")
        os.replace(data_dir / f".restore-{i}" / METADATA_FILE, dest)
        return keeper, header, applied, failed
    finally:
        for j in range(len(keepers)):
            shutil.rmtree(data_dir / f".restore-{j}", ignore_errors=True)


def fetch_copy(keeper: str, data_dir: Path, pool: ChannelPool) -> tuple[kp.MetadataCopyHeader, int]:
    """Fetches the keeper's newest copy as data_dir's metadata (which must not exist yet),
    checked against its length and checksum, with the changes made after it that the keeper
    holds applied; returns the copy's header and the seq of the last change applied (the
    header's journal_seq: none). FsError when that cannot be done."""
    dest = data_dir / METADATA_FILE
    if dest.exists():
        raise FsError(errno.EEXIST, f"{data_dir} already holds metadata: restore into an empty folder")
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f"{METADATA_FILE}.restoring"
    try:
        replies = pool.stub(keeper, keeper_pb2_grpc.KeeperStub).GetMetadataCopy(cp.Empty(), timeout=FETCH_TIMEOUT)
        first = next(replies)
        if not first.HasField("header"):
            raise FsError(errno.EBADMSG, f"keeper {keeper} sent a copy without its header")
        header = first.header
        crc, length = 0, 0
        journal: list[kp.MetadataJournal] = []
        with open(tmp, "wb") as f:
            for message in replies:
                if message.HasField("journal"):
                    journal.append(message.journal)
                    break
                crc = crc32c(message.data, crc)
                length += len(message.data)
                f.write(message.data)
            f.flush()
            os.fsync(f.fileno())
        if (length, crc) != (header.length, header.crc32c):
            raise FsError(errno.EBADMSG, f"keeper {keeper}'s copy is damaged ({length} bytes): try another keeper")
        # The changes and the counter's move go in before the file takes its place: a restore is
        # whole or not at all.
        store = SqliteStore(tmp, stat.S_IFDIR | 0o755, now_ns=time.time_ns())
        try:
            applied = header.journal_seq
            if store.journal_end() == header.journal_seq:  # (the changes follow on from this copy)
                changes = itertools.chain(journal, (m.journal for m in replies))
                applied = store.apply_journal(_entry(e) for batch in changes for e in batch.entries) or applied
            store.skip_ids(RESTORE_ID_GAP)
        finally:
            store.close()
        os.replace(tmp, dest)
        return header, applied
    except grpc.RpcError as e:
        raise from_rpc_error(e, f"metadata copy from keeper {keeper}") from None
    finally:
        tmp.unlink(missing_ok=True)
