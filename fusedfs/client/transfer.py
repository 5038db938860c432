"""Moving single chunks between a client and the keepers.

Writes: the client asks the master for a chunk id and a pipeline of keepers, sends the chunk
once to the first, and the keepers forward it down the pipeline (a chunk of one piece, 1 MiB or
less, goes to all of them at once instead: small files wait for one hop, not three). If any keeper fails, the chunk
is written again to a fresh set that leaves the failed one out; a write with fewer copies than
the pipeline is accepted only after that, and only with at least min_copies (the master tops up
the rest later).

Reads: a byte range of a chunk is fetched from one replica (one on this machine first, read
straight from its disk: shortcircuit.py), every block checked against its CRC-32C (and the
whole chunk against the master's checksum when it is read whole). A replica that fails or
returns bad data is reported to the master and the next one is tried; when all fail, the
locations are refreshed from the master until the wait runs out.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import Counter

from fusedfs.chunkfile import Piece
from fusedfs.chunks import BLOCK_SIZE, PIECE_SIZE, MiB, aligned_range, crc32c
from fusedfs.client.master import MasterClient
from fusedfs.client.shortcircuit import ShortCircuit
from fusedfs.errors import FsError
from fusedfs.grpcutil import ChannelPool
from fusedfs.logs import Repeating
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc
from fusedfs.rpc import master_pb2 as mp

log = logging.getLogger(__name__)
repeating = Repeating(log)  # (a keeper out of reach fails every write to it)

# What a slow link or a failing keeper looks like from a client (a mount's metrics show them).
KEEPER_FAILURES = Counter(
    "fusedfs_client_keeper_failures",
    "chunk reads and writes a keeper failed (each then went to another), by keeper, operation and cause",
    ["keeper", "op", "cause"],
)
HEDGED_READS = Counter(
    "fusedfs_client_hedged_reads",
    "reads of more than a piece (1 MiB) that asked another replica too: this keeper sent nothing in time",
    ["keeper"],
)


def keeper_failed(address: str, op: str, cause: object) -> None:
    """Counts a failure into KEEPER_FAILURES: cause a gRPC code, an errno, or a word."""
    if isinstance(cause, grpc.StatusCode):
        cause = cause.name
    elif isinstance(cause, int):
        cause = errno.errorcode.get(cause, str(cause))
    KEEPER_FAILURES.labels(address, op, str(cause)).inc()


WRITE_ATTEMPTS = 4
# Seconds (--wait if shorter) another attempt of a chunk may begin after one that sent bytes and
# then failed, though the wait is over; at most SENDING_ATTEMPTS times: one that fails after
# sending them, again and again (a keeper that takes a chunk, then fails it), is not made forever.
RETRY_GRACE = 5.0
SENDING_ATTEMPTS = 2 * WRITE_ATTEMPTS
# A keeper's read or write of a chunk: TRANSFER_STALL, and time for the bytes at MIN_TRANSFER_RATE.
TRANSFER_STALL = 10.0
MIN_TRANSFER_RATE = MiB
# Seconds a small chunk's last keeper gets once the others have answered (or LAGGARD_FACTOR times
# what they took, if longer): a keeper that lags that far behind them (its disk hangs, unnoticed so
# far) is given up, and the chunk goes elsewhere.
LAGGARD_WAIT = 2.0
LAGGARD_FACTOR = 4.0
# Seconds a chunk id reserved ahead is used: its keepers were chosen then, and one may have died
# since (the master notices in 3 s; a write to it waits for the failure before going elsewhere).
RESERVATION_MAX_AGE = 5.0
# Seconds what the master said of the keepers taking new chunks is trusted for a chunk derived on
# the keepers of its base without asking (a heartbeat's interval: the master learns no faster).
OPEN_MAX_AGE = 1.0
# Seconds a read waits for a keeper to say whether its chunks are on this machine, the first
# time it meets that keeper (a round trip; one that does not answer is read around anyway).
ASK_WAIT = 0.2
# Seconds a read from a disk on this machine may take (a whole chunk, on a slow disk) before the
# keeper is asked over the network instead: a disk that hangs must not hang the read.
LOCAL_READ_TIMEOUT = 5.0
# A read not answered within HEDGE_BASE seconds and time for its bytes at HEDGE_RATE (a normal one
# takes milliseconds) asks the next replica too, as HDFS's hedged reads do: a keeper whose disk
# hangs under one chunk answers gRPC's pings, but not the read. One whose pieces keep coming (a
# slow link, not a stuck disk) is left alone while they do: asking another replica too would
# halve what each link gives every read.
HEDGE_BASE = 1.0
HEDGE_RATE = 64 * MiB
# Seconds a chunk none of whose replicas could be read within the wait fails again at once: the
# kernel asks again right after a read fails (its read-ahead, then the page itself), and a read
# of a cluster out of reach took twice --wait. Short, so that a program's own retry waits again
# (with 1 s, a logger retrying every 0.3 s got 3 more EIOs at once, in a partition sweep).
UNREADABLE_KEPT = 0.25


def transfer_timeout(length: int) -> float:
    """Seconds a keeper (or a pipeline) gets to read or store `length` bytes of a chunk: generous
    for a slow or busy disk, yet short, because a transfer that meets a keeper whose disk hangs
    (its process still answering gRPC's pings) waits that long before it goes to another."""
    return TRANSFER_STALL + length / MIN_TRANSFER_RATE


def hedge_after(length: int) -> float:
    """Seconds a read of `length` bytes waits for its replica before the next one is asked too."""
    return HEDGE_BASE + length / HEDGE_RATE


def wait_but_for_a_laggard(calls: list[grpc.Future[Any]], grace: float) -> None:
    """Waits until every call (a gRPC future) is done, or (of two or more) all but one are and
    `grace` seconds have passed since, or LAGGARD_FACTOR times what the others took if that is
    longer (on a loaded machine every keeper is slow, and none is to be given up for it)."""
    started = time.monotonic()
    done = threading.Semaphore(0)
    for call in calls:
        call.add_done_callback(lambda _: done.release())
    for _ in range(len(calls) - 1):
        done.acquire()
    others = time.monotonic() - started
    done.acquire(timeout=max(grace, LAGGARD_FACTOR * others) if len(calls) > 1 else None)


@dataclass(frozen=True)
class _Reservation:
    """A chunk id the master reserved for us, and the keepers to write it to."""

    chunk_id: str
    pipeline: list[cp.KeeperRef]
    min_copies: int
    made: float  # time.monotonic()


class _ReservedAhead:
    """Chunk ids for small chunks, reserved many at a time: a writer of many small files then
    asks the master once per batch instead of once per file. The batch doubles (up to `limit`)
    each time the last one was used up while fresh and halves when ids go stale, so a slow
    writer reserves one at a time, as without this. Thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.batch = 1  # how many the next request to the master asks for
        self._lock = threading.Lock()
        self._ready: list[_Reservation] = []
        # The keepers that took new chunks when the last batch came (the master's open_keepers;
        # none from a master older than them), and when (time.monotonic()).
        self._open: tuple[frozenset[str], float] | None = None

    def take(self) -> tuple[_Reservation | None, list[str]]:
        """A fresh reservation (None when out), and the ids that grew too old to use."""
        stale = self.stale()
        with self._lock:
            if self._ready:
                return self._ready.pop(), stale
            if not stale:
                self.batch = min(self.limit, self.batch * 2)
            return None, stale

    def stale(self) -> list[str]:
        """Takes out the reservations grown too old to use and returns their ids (to give back)."""
        with self._lock:
            now = time.monotonic()
            stale = [r.chunk_id for r in self._ready if now - r.made > RESERVATION_MAX_AGE]
            if stale:
                self._ready = [r for r in self._ready if now - r.made <= RESERVATION_MAX_AGE]
                self.batch = max(1, self.batch // 2)
            return stale

    def keep(self, reservations: Iterable[_Reservation]) -> None:
        with self._lock:
            self._ready.extend(reservations)

    def opened(self, keeper_ids: frozenset[str]) -> None:
        """The keepers taking new chunks now, as a batch's reply said."""
        with self._lock:
            self._open = (keeper_ids, time.monotonic())

    def open_keepers(self) -> frozenset[str] | None:
        """The keepers known to take new chunks; None when not known in the last OPEN_MAX_AGE."""
        with self._lock:
            if self._open is None or time.monotonic() - self._open[1] > OPEN_MAX_AGE:
                return None
            return self._open[0]

    def close_keepers(self, keeper_ids: Iterable[str]) -> None:
        """Keepers that just failed us take no chunk derived here until the next batch says otherwise."""
        with self._lock:
            if self._open is not None:
                self._open = (self._open[0] - set(keeper_ids), self._open[1])

    def drop_keepers(self, keeper_ids: set[str]) -> list[str]:
        """Forgets reservations placed on keepers that just failed; returns their ids."""
        dropped: list[str] = []
        with self._lock:
            kept = []
            for r in self._ready:
                if any(k.keeper_id in keeper_ids for k in r.pipeline):
                    dropped.append(r.chunk_id)
                else:
                    kept.append(r)
            self._ready = kept
        return dropped

    def drop_all(self) -> list[str]:
        with self._lock:
            dropped, self._ready = self._ready, []
        return [r.chunk_id for r in dropped]


@dataclass
class _Attempt:
    chunk_id: str
    stored_on: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    full: bool = False  # a keeper answered RESOURCE_EXHAUSTED
    sent: bool = False  # bytes of it went out: a piece taken by gRPC, a copy stored


class ChunkTransfer:
    def __init__(
        self, master: MasterClient, pool: ChannelPool | None = None, reserve_ahead: int = 0, short_circuit: bool = True
    ) -> None:
        """reserve_ahead: at most this many chunk ids for small chunks per master call (0: one at
        a time). short_circuit: read the chunks of keepers on this machine from their disk."""
        self.master = master
        self.pool = pool or master.pool
        self._ahead = _ReservedAhead(reserve_ahead) if reserve_ahead > 1 else None
        self.local = ShortCircuit(self.pool, short_circuit)
        # Reads of a replica, so that a slow one can be left to itself while the next is asked
        # (one stuck on a disk that hangs is free again after its transfer_timeout).
        self._readers = concurrent.futures.ThreadPoolExecutor(32, thread_name_prefix="read")
        self._unreadable: dict[str, tuple[float, str]] = {}  # chunk id -> (when, why): see UNREADABLE_KEPT
        # When a write last moved bytes (time.monotonic()): a piece taken by gRPC, a chunk stored.
        # Who waits for writes bounds the silence by it, not the transfer: a slow network is slow.
        self.last_moved = time.monotonic()
        self._addresses: dict[str, str] = {}  # keeper id -> address, of the keepers written to

    def keeper(self, address: str) -> keeper_pb2_grpc.KeeperStub:
        return self.pool.stub(address, keeper_pb2_grpc.KeeperStub)

    # --- writing ---------------------------------------------------------------------------------

    def write(self, index: int, data: bytes, goal: int = 0) -> mp.NewChunk:
        """Stores data as a new chunk for slot `index` of a file whose own goal is `goal` (0:
        the cluster's); returns what to commit to the master."""
        crc = crc32c(data)
        exclude: set[str] = set()
        attempts: list[_Attempt] = []
        deadline = self.master.deadline().at
        try:
            while True:
                try:
                    reservation = self._reserve(exclude, len(data), goal)
                except FsError as e:
                    # The master's "retry later": too few keepers alive, or left once those that
                    # failed us are excluded. It may not have noticed a failure (or a keeper's
                    # return) yet: ask again, letting it choose anew, until the deadline.
                    if e.errno == errno.EIO and time.monotonic() < deadline:
                        exclude.clear()
                        time.sleep(0.5)
                        continue
                    raise
                attempt = self._push(reservation, data, crc)
                attempts.append(attempt)
                # The wait bounds a silence, not a transfer: over a slow link one attempt outlasts
                # it, and one that sent bytes and then failed (its connection's ping timed out
                # behind seconds of data, or a pipeline's keeper's) gets another. (Not the whole
                # wait again: a cluster cut off mid-transfer fails the operation about when the
                # wait ends, not twice as late.)
                if attempt.sent and len(attempts) <= SENDING_ATTEMPTS:
                    deadline = max(deadline, time.monotonic() + min(self.master.wait, RETRY_GRACE))
                if len(attempt.stored_on) == len(reservation.pipeline):
                    return self._accept(attempt, attempts, index, data, crc)
                exclude.update(attempt.failed)
                if self._ahead is not None:  # reserved on a failing keeper: would fail the same way
                    self.abandon(self._ahead.drop_keepers(set(attempt.failed)))
                if len(attempts) % WRITE_ATTEMPTS and time.monotonic() < deadline:
                    continue
                best = max(attempts, key=lambda a: len(a.stored_on))
                if len(best.stored_on) >= max(reservation.min_copies, 1):
                    return self._accept(best, attempts, index, data, crc)
                if all(a.full for a in attempts):
                    raise FsError(errno.ENOSPC, "no space left on enough keepers for another chunk")
                if time.monotonic() >= deadline:
                    raise FsError(
                        errno.EIO,
                        f"could not store a chunk on {reservation.min_copies} keepers in {len(attempts)} attempts"
                        f" over {self.master.wait:g} s",
                    )
                # Keepers this side cannot reach (their connections refused at once): they may
                # answer again within the wait, as a cluster that is down is waited for.
                exclude.clear()
                time.sleep(0.5)
        except BaseException:
            self.abandon([a.chunk_id for a in attempts])
            raise

    def derive(
        self,
        index: int,
        base: str,
        base_kept: int,
        length: int,
        patches: list[tuple[int, bytes]],
        goal: int = 0,
        holders: Sequence[cp.KeeperRef] = (),
    ) -> mp.NewChunk:
        """Stores a new chunk for slot `index`, made on each keeper holding chunk `base` from its
        first base_kept bytes, zeros up to `length` and the patches (offset, bytes) written over:
        a small write into a big chunk sends its bytes, not the chunk. FsError when that cannot
        be done on a goal's worth of those keepers: the caller writes the chunk whole instead.

        holders: the keepers the writer knows hold `base`. When a goal's worth of them take new
        chunks (as the master said with the last ids it reserved ahead), the chunk is made there
        under such an id, without asking the master first: a database's commit is then two round
        trips, not three. Otherwise, or when that fails, the master chooses the keepers."""
        message = kp.DeriveChunkRequest(
            length=length,
            base_chunk_id=base,
            base_kept=base_kept,
            patches=[kp.ChunkPatch(offset=offset, data=data, crc32c=crc32c(data)) for offset, data in patches],
        )
        here = self._derive_here(holders, goal)
        if here is not None:
            chunk_id, keepers = here
            failed: list[str] = []
            try:
                return self._derive_on(index, chunk_id, keepers, message, failed)
            except FsError as e:
                assert self._ahead is not None
                self._ahead.close_keepers(failed)
                log.info("a chunk derived from %s is placed by the master: %s", base, e.message)
        request = mp.AllocateChunksRequest(length=length, goal=goal, derive_from=base)
        allocation = self.master.call("AllocateChunks", request).chunks[0]
        self._learn(allocation.pipeline)
        return self._derive_on(index, allocation.chunk_id, list(allocation.pipeline), message, [])

    def _derive_here(self, holders: Sequence[cp.KeeperRef], goal: int) -> tuple[str, list[cp.KeeperRef]] | None:
        """An id reserved ahead and a goal's worth of holders that take new chunks, or None."""
        ahead = self._ahead
        if ahead is None or goal or not holders:  # (ids are reserved ahead at the cluster's goal only)
            return None
        # (Asking for a batch when the open keepers are not known: its reply says which.)
        reservation = self._reserve(set(), PIECE_SIZE, 0, fresh=ahead.open_keepers() is None)
        open_now = ahead.open_keepers() or frozenset()
        usable = [k for k in holders if k.keeper_id in open_now]  # (its pipeline's length: the goal)
        if len(usable) < len(reservation.pipeline):
            ahead.keep([reservation])  # (for the next small chunk)
            return None
        self._learn(usable)
        return reservation.chunk_id, usable[: len(reservation.pipeline)]

    def _derive_on(
        self, index: int, chunk_id: str, keepers: list[cp.KeeperRef], message: kp.DeriveChunkRequest, failed: list[str]
    ) -> mp.NewChunk:
        """Has each of the keepers derive chunk_id as `message` says; FsError (the chunk given
        back, the ids of the keepers that failed in `failed`) unless every one did, alike."""
        message.chunk_id = chunk_id
        timeout = transfer_timeout(message.length)
        calls = [self.keeper(k.address).DeriveChunk.future(message, timeout=timeout) for k in keepers]
        wait_but_for_a_laggard(calls, LAGGARD_WAIT)
        crcs, stored_on, failures = set(), [], []
        for keeper, call in zip(keepers, calls, strict=True):
            if not call.done():
                call.cancel()
                failures.append(f"{keeper.address} did not answer")
                failed.append(keeper.keeper_id)
                keeper_failed(keeper.address, "derive", "laggard")
                continue
            try:
                reply = call.result()
            except grpc.RpcError as e:
                failures.append(f"{keeper.address}: {e.details() if isinstance(e, grpc.Call) else e}")
                failed.append(keeper.keeper_id)
                keeper_failed(keeper.address, "derive", e.code() if isinstance(e, grpc.Call) else "unknown")
                continue
            crcs.add(reply.crc32c)
            stored_on.extend(reply.stored_on)
            self.last_moved = time.monotonic()
        if failures or len(crcs) != 1:
            self.abandon([chunk_id])
            raise FsError(errno.EIO, "; ".join(failures) or "the keepers' derived chunks differ")
        crc = crcs.pop()
        return mp.NewChunk(index=index, chunk_id=chunk_id, length=message.length, crc32c=crc, stored_on=stored_on)

    def stored_ref(self, chunk: mp.NewChunk) -> mp.ChunkRef:
        """A chunk this transfer just stored, as a chunk list names it: with the keepers it is on
        (those whose address it knows: every one, unless a keeper moved meanwhile)."""
        addresses = self._addresses
        return mp.ChunkRef(
            index=chunk.index,
            chunk_id=chunk.chunk_id,
            length=chunk.length,
            stored_length=chunk.length,
            crc32c=chunk.crc32c,
            replicas=[cp.KeeperRef(keeper_id=k, address=addresses[k]) for k in chunk.stored_on if k in addresses],
        )

    def _learn(self, keepers: Iterable[cp.KeeperRef]) -> None:
        for keeper in keepers:
            self._addresses[keeper.keeper_id] = keeper.address

    def _accept(self, chosen: _Attempt, attempts: list[_Attempt], index: int, data: bytes, crc: int) -> mp.NewChunk:
        self.abandon([a.chunk_id for a in attempts if a is not chosen])
        return mp.NewChunk(
            index=index, chunk_id=chosen.chunk_id, length=len(data), crc32c=crc, stored_on=chosen.stored_on
        )

    def _reserve(self, exclude: set[str], length: int, goal: int, fresh: bool = False) -> _Reservation:
        """A chunk id and its keepers: reserved ahead for a small chunk's first attempt (of a
        file kept at the cluster's goal). fresh: from a batch asked for now."""
        ahead = self._ahead if not exclude and length <= PIECE_SIZE and not goal else None
        if ahead is not None and not fresh:
            reservation, stale = ahead.take()
            self.abandon(stale)
            if reservation is not None:
                return reservation
        count, length = (ahead.batch, PIECE_SIZE) if ahead is not None else (1, length)
        request = mp.AllocateChunksRequest(exclude_keepers=sorted(exclude), length=length, count=count, goal=goal)
        reply = self.master.call("AllocateChunks", request)
        now = time.monotonic()
        made = [_Reservation(c.chunk_id, list(c.pipeline), reply.min_copies, now) for c in reply.chunks]
        for chunk in reply.chunks:
            self._learn(chunk.pipeline)
        if not made:
            raise FsError(errno.EIO, "the master reserved no chunk")
        if ahead is not None:
            ahead.keep(made[1:])
            ahead.opened(frozenset(reply.open_keepers))
        return made[0]

    def stale_reservations(self) -> list[str]:
        """The chunk ids reserved ahead that grew too old to use, taken out: for abandon(). (A
        writer that stopped leaves them; the master counts them as uploads in progress.)"""
        return self._ahead.stale() if self._ahead is not None else []

    def close(self) -> None:
        """Gives back the chunk ids reserved ahead and not used."""
        if self._ahead is not None:
            self.abandon(self._ahead.drop_all())

    def abandon(self, chunk_ids: list[str]) -> None:
        """Gives back reserved chunks that will not be committed (best effort; leases expire anyway)."""
        if chunk_ids:
            with contextlib.suppress(FsError):  # the upload lease expires on its own
                self.master.call("AbandonChunks", mp.AbandonChunksRequest(chunk_ids=chunk_ids), wait=5)

    def _push(self, reservation: _Reservation, data: bytes, crc: int) -> _Attempt:
        """Sends the chunk: small ones to every keeper at once, others down the pipeline."""
        attempt = _Attempt(reservation.chunk_id)
        header = kp.WriteChunkHeader(chunk_id=reservation.chunk_id, length=len(data), crc32c=crc)
        if len(data) <= PIECE_SIZE:
            # One message each: the latency of one hop instead of len(pipeline), for little bandwidth.
            message = kp.WriteChunkMessage(header=header, data=data)
            timeout = transfer_timeout(len(data))
            calls = [
                (keeper, self.keeper(keeper.address).WriteSmallChunk.future(message, timeout=timeout))
                for keeper in reservation.pipeline
            ]
        else:
            first = reservation.pipeline[0]
            header.downstream.extend(reservation.pipeline[1:])

            def messages() -> Iterator[kp.WriteChunkMessage]:
                view = memoryview(data)
                yield kp.WriteChunkMessage(header=header, data=bytes(view[:PIECE_SIZE]))
                for start in range(PIECE_SIZE, len(data), PIECE_SIZE):
                    # (gRPC asks for a piece once the last one went)
                    self.last_moved, attempt.sent = time.monotonic(), True
                    yield kp.WriteChunkMessage(data=bytes(view[start : start + PIECE_SIZE]))

            timeout = transfer_timeout(len(data))
            calls = [(first, self.keeper(first.address).WriteChunk.future(messages(), timeout=timeout))]
        wait_but_for_a_laggard([call for _, call in calls], LAGGARD_WAIT)
        for keeper, call in calls:
            if not call.done():  # the laggard (its write, if it ends, is of a chunk id given up)
                call.cancel()
                repeating.info(
                    ("laggard", keeper.address),
                    "write to %s: given up, the other keepers answered long before",
                    keeper.address,
                )
                keeper_failed(keeper.address, "write", "laggard")
                attempt.failed.append(keeper.keeper_id)
                continue
            try:
                reply = call.result()
            except grpc.RpcError as e:
                # Whatever went wrong (dead, full, data damaged on the way), try another set of keepers.
                code = e.code() if isinstance(e, grpc.Call) else None
                repeating.info(("write", keeper.address, code), "write to %s failed: %s", keeper.address, code)
                keeper_failed(keeper.address, "write", code or "unknown")
                attempt.failed.append(keeper.keeper_id)
                attempt.full = attempt.full or code == grpc.StatusCode.RESOURCE_EXHAUSTED
                continue
            attempt.stored_on.extend(reply.stored_on)
            self.last_moved, attempt.sent = time.monotonic(), True
            for failure in reply.failures:
                address = failure.keeper.address
                repeating.info(
                    ("pipeline", address, failure.code),
                    "pipeline keeper %s failed: %s %s",
                    address,
                    failure.code,
                    failure.message,
                )
                keeper_failed(address, "write", failure.code)
                attempt.failed.append(failure.keeper.keeper_id)
                attempt.full = attempt.full or failure.code == "RESOURCE_EXHAUSTED"
        return attempt

    # --- reading ---------------------------------------------------------------------------------

    def read(self, inode: int, ref: mp.ChunkRef, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes [offset, offset + length) of a chunk (its logical length bounds them), verified."""
        return b"".join(self.read_parts(inode, ref, offset, length))

    def read_parts(self, inode: int, ref: mp.ChunkRef, offset: int = 0, length: int | None = None) -> list[memoryview]:
        """Like read(), as the pieces received, sparing a copy for callers that write them out."""
        end = read_end(ref, offset, length)
        if offset >= end:
            return []
        self.fail_if_just_unreadable(ref.chunk_id)
        deadline = self.master.deadline().at
        errors: list[str] = []
        while True:
            if ref.lost:  # (its keepers are not down: none has it, so no wait brings it back)
                raise FsError(
                    errno.EIO,
                    f"chunk {ref.chunk_id} is lost: no keeper holds a good copy"
                    f"{' (' + '; '.join(errors[-3:]) + ')' if errors else ''}; fsck lists the files it is in",
                )
            pieces = self._read_hedged(self.replica_order(ref, wait=ASK_WAIT)[0], RangeRead(ref, offset, end), errors)
            if pieces is not None:
                return pieces
            if time.monotonic() >= deadline:
                why = f"chunk {ref.chunk_id}: no replica could be read ({'; '.join(errors[-3:]) or 'none known'})"
                self._note_unreadable(ref.chunk_id, why)
                raise FsError(errno.EIO, why)
            time.sleep(0.5)
            ref = self._refresh(inode, ref)

    def fail_if_just_unreadable(self, chunk_id: str) -> None:
        """EIO if no replica of the chunk could be read within the wait UNREADABLE_KEPT s ago."""
        when, why = self._unreadable.get(chunk_id, (-math.inf, ""))
        if time.monotonic() - when < UNREADABLE_KEPT:
            raise FsError(errno.EIO, f"{why}, {time.monotonic() - when:.1f} s ago")

    def _note_unreadable(self, chunk_id: str, why: str) -> None:
        now = time.monotonic()
        for old in [c for c, (when, _) in self._unreadable.items() if now - when >= UNREADABLE_KEPT]:
            self._unreadable.pop(old, None)  # (threads note them too)
        self._unreadable[chunk_id] = (now, why)

    def _read_hedged(self, replicas: list[cp.KeeperRef], read: RangeRead, errors: list[str]) -> list[memoryview] | None:
        """The range from the first of the replicas that answers, or None if all fail (each
        failure noted in errors; a bad copy reported). The next replica is asked when those asked
        so far have all failed, or none has answered within hedge_after: a read left behind
        runs on in its thread, and what it gets is dropped."""
        waiting: dict[concurrent.futures.Future[list[memoryview]], _Reading] = {}
        left = list(replicas)
        ask_next = True
        while True:
            if ask_next and left:
                reading = _Reading(left.pop(0))
                waiting[self._readers.submit(self._read_from, reading, read)] = reading
            if not waiting:
                return None
            patience = hedge_after(read.size) if left else None
            done, _ = concurrent.futures.wait(waiting, patience, concurrent.futures.FIRST_COMPLETED)
            # None answered in time: ask the next one too, unless one's pieces are still coming.
            quiet = min(time.monotonic() - r.last_piece for r in waiting.values())
            ask_next = not done and quiet >= hedge_after(PIECE_SIZE)
            if ask_next and left:
                for reading in waiting.values():
                    HEDGED_READS.labels(reading.replica.address).inc()
            for future in done:
                replica = waiting.pop(future).replica
                try:
                    return future.result()
                except FsError as e:
                    errors.append(f"{replica.address}: {e.message}")
                    keeper_failed(replica.address, "read", e.errno)
                    if e.errno == errno.EBADMSG:
                        self.report_bad(read.ref.chunk_id, replica.keeper_id, e.message)
                    ask_next = True

    def _refresh(self, inode: int, ref: mp.ChunkRef) -> mp.ChunkRef:
        reply = self.master.call("GetChunks", mp.GetChunksRequest(inode=inode, first_index=ref.index, count=1))
        for fresh in reply.chunks:
            if fresh.index == ref.index and fresh.chunk_id == ref.chunk_id:
                return fresh
        raise FsError(errno.ESTALE, f"chunk {ref.chunk_id} is no longer part of the file")

    def report_bad(self, chunk_id: str, keeper_id: str, reason: str) -> None:
        """Tells the master a replica failed its checksum, so that it is replaced (best effort)."""
        try:
            request = mp.BadReplicaRequest(chunk_id=chunk_id, keeper_id=keeper_id, reason=reason)
            self.master.call("ReportBadReplica", request, wait=5)
        except FsError:
            pass

    def replica_order(self, ref: mp.ChunkRef, wait: float = 0.0) -> tuple[list[cp.KeeperRef], bool]:
        """The replicas of a chunk in the order to try them: one on this machine first (read
        from its disk), then spread so that a file's chunks come from every keeper; and whether
        every replica's keeper has said whether it is on this machine (waiting up to `wait`
        seconds for the first answers: a round trip, once per keeper)."""
        spread = spread_order(ref)
        asked = [self.local.ask(r) for r in spread]
        known = all(a.done() for a in asked) or not concurrent.futures.wait(asked, timeout=wait).not_done
        return sorted(spread, key=lambda r: self.local.folder(r) is None), known

    def _read_from(self, reading: _Reading, read: RangeRead) -> list[memoryview]:
        replica = reading.replica
        if self.local.folder(replica) is not None:
            from_disk = self.local.submit(replica, read.ref, read.start, read.size)
            try:
                return read.check(from_disk.result(timeout=LOCAL_READ_TIMEOUT))
            except TimeoutError:  # (its thread stays with the disk; this read goes on without it)
                log.warning(
                    "chunk %s: its disk here takes over %g s; asking keeper %s",
                    read.ref.chunk_id,
                    LOCAL_READ_TIMEOUT,
                    replica.address,
                )
            except FsError as e:
                if e.errno == errno.EBADMSG:
                    raise
                # not readable here after all: ask the keeper
        try:
            keeper = self.keeper(replica.address)
            # Within one piece a plain call does (random reads); longer ranges stream.
            timeout = transfer_timeout(read.size)
            pieces = (
                [keeper.ReadSmallRange(read.request, timeout=timeout)]
                if read.one_piece
                else reading.noting(keeper.ReadChunk(read.request, timeout=timeout))
            )
            return read.check(pieces)
        except grpc.RpcError as e:
            raise read_error(e) from None


@dataclass
class _Reading:
    """A read of one replica, for _read_hedged to see whether its pieces still come."""

    replica: cp.KeeperRef
    last_piece: float = field(default_factory=time.monotonic)  # (or when it was asked)

    def noting(self, pieces: Iterable[kp.ChunkPiece]) -> Iterator[kp.ChunkPiece]:
        for piece in pieces:
            self.last_piece = time.monotonic()
            yield piece


def read_end(ref: mp.ChunkRef, offset: int, length: int | None) -> int:
    """Where a read of `length` bytes (None: to the end) from offset stops: the chunk's
    logical length bounds it."""
    return ref.length if length is None else min(ref.length, offset + length)


def spread_order(ref: mp.ChunkRef) -> list[cp.KeeperRef]:
    """The replicas of a chunk in the order that spreads a file's chunks over keepers."""
    replicas = list(ref.replicas)
    return [replicas[(ref.index + i) % len(replicas)] for i in range(len(replicas))]


def read_error(error: grpc.RpcError) -> FsError:
    """A failed read call as an FsError: EBADMSG when the keeper found its copy damaged."""
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    return FsError(errno.EBADMSG if code == grpc.StatusCode.DATA_LOSS else errno.EIO, f"{code}: {details}")


def _not_this_chunk(first: kp.ChunkPiece | Piece, ref: mp.ChunkRef) -> bool:
    """A keeper's first piece says what its file holds: another chunk's bytes, whole and agreeing
    with their own block checksums (a file misplaced), must not pass for this chunk's. (A file
    read here was checked so before it was read: shortcircuit.py.)"""
    return isinstance(first, kp.ChunkPiece) and (first.chunk_length, first.chunk_crc32c) != (
        ref.stored_length,
        ref.crc32c,
    )


class RangeRead:
    """A read of bytes [offset, end) of a chunk from one replica: the request (whole checksum
    blocks) and the checks of what comes back."""

    def __init__(self, ref: mp.ChunkRef, offset: int, end: int) -> None:
        self.ref = ref
        self.offset = offset
        self.end = end
        self.start, self.size = aligned_range(offset, end - offset, ref.stored_length)
        self.request = kp.ReadChunkRequest(chunk_id=ref.chunk_id, offset=self.start, length=self.size)
        self.one_piece = self.size <= PIECE_SIZE  # one unary call (ReadSmallRange); longer ranges stream

    def check(self, pieces: Iterable[kp.ChunkPiece | Piece]) -> list[memoryview]:
        """The bytes asked for, every block checked against its CRC-32C (and a whole chunk
        against the master's checksum); EBADMSG for anything damaged or missing."""
        ref, start, size = self.ref, self.start, self.size
        whole = self.offset == 0 and self.end == ref.stored_length
        parts: list[memoryview] = []
        running_crc = 0
        expected = start
        for piece in pieces:
            if piece.offset != expected or piece.block_size != BLOCK_SIZE:
                raise FsError(errno.EBADMSG, "keeper sent an unexpected piece")
            if expected == start and _not_this_chunk(piece, ref):
                raise FsError(errno.EBADMSG, f"the keeper's file of {ref.chunk_id} is not the chunk the master knows")
            view = memoryview(piece.data)
            crcs = piece.block_crc32c
            if len(crcs) != -(-len(view) // BLOCK_SIZE):
                raise FsError(errno.EBADMSG, "piece and checksums disagree")
            for i, expected_crc in enumerate(crcs):
                if crc32c(view[i * BLOCK_SIZE : (i + 1) * BLOCK_SIZE]) != expected_crc:
                    raise FsError(errno.EBADMSG, f"block at {piece.offset + i * BLOCK_SIZE} damaged in transit")
            parts.append(view)
            running_crc = crc32c(view, running_crc) if whole else 0
            expected += len(view)
        if expected != start + size:
            raise FsError(errno.EBADMSG, f"keeper sent {expected - start} of {size} bytes")
        if whole and running_crc != ref.crc32c:
            raise FsError(errno.EBADMSG, "chunk does not match the master's checksum")
        # Trim the block alignment off both ends.
        parts[0] = parts[0][self.offset - start :]
        parts[-1] = parts[-1][: len(parts[-1]) - (start + size - self.end)]
        return parts
