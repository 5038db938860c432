"""The master's live view of the cluster, kept in memory and rebuilt from keeper reports.

Owns: which keepers exist and whether they are alive, where every replica lives, the index of
chunk states (a cache of the durable chunk table), repair jobs in flight, and the commands
waiting for each keeper's next heartbeat. Decisions are delegated to the pure planners in
placement.py and replication.py; this class only keeps the books, under one lock.

Replica locations are never persisted: a keeper's registration carries its full chunk list, and
every heartbeat the chunks added and removed since the previous one (as in GFS).
"""

from __future__ import annotations

import enum
import errno
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from fusedfs.chunks import format_chunk_id, is_valid_chunk_id, parse_chunk_id
from fusedfs.errors import FsError
from fusedfs.master.placement import KeeperView, choose_keepers, failure_domain
from fusedfs.master.replication import plan_balance, plan_repairs
from fusedfs.master.store import ChunkRow, ChunkState

log = logging.getLogger(__name__)

BALANCE_EVERY = 3.0  # seconds between balancing rounds (each waits for the last one's copies)
# Seconds after a start before a chunk no keeper reported is called lost (keepers register again
# within a heartbeat or two of a restart; one down then still counts as down, not as gone).
LOST_AFTER_START = 10.0


@dataclass
class KeeperRecord:
    keeper_id: str
    address: str
    domain: str = ""  # failure domain: keepers that die together (one machine) share one
    capacity_bytes: int = 0
    used_bytes: int = 0
    free_bytes: int = 0
    load: int = 0
    last_seen: float = 0.0
    alive: bool = True
    scrub_checked: int = 0  # as the keeper reports: chunks its background scrub verified ...
    scrub_bad: int = 0  # ... and found bad or missing
    disk_stalled: float = 0.0  # seconds its disk has not answered, as it said (0: it answers)
    damaged_copies: int = 0  # copies it set aside as damaged, as it said
    chunks: set[int] = field(default_factory=set)
    # Commands waiting for the keeper's next heartbeat.
    deletes: set[int] = field(default_factory=set)
    copies: list[tuple[int, str]] = field(default_factory=list)  # (chunk, target keeper id)
    verifies: set[int] = field(default_factory=set)

    def view(self) -> KeeperView:
        return KeeperView(
            self.keeper_id,
            self.address,
            self.free_bytes,
            self.load,
            self.domain,
            self.capacity_bytes,
            stalled=self.disk_stalled > 0,
        )


@dataclass(frozen=True)
class Settings:
    goal: int = 3
    dead_after: float = 3.0  # seconds of silence before a keeper counts as dead
    chunk_size: int = 8 << 20
    gc_grace: float = 60.0  # seconds an unreferenced chunk is kept (for reads in progress)
    upload_lease: float = 3600.0  # seconds a reserved chunk id stays safe from collection
    max_jobs_per_keeper: int = 4  # concurrent repair copies per keeper (throttle)
    copy_timeout: float = 120.0
    trash_seconds: float = 0.0  # how long a deleted file is kept, chunks and all (0: no trash)
    reserve_bytes: int = 0  # room the metadata's disk keeps: below it only deletions are taken

    @property
    def min_copies(self) -> int:
        return min_copies(self.goal)


def min_copies(goal: int) -> int:
    """A write of a chunk kept at goal copies needs this many to count: 2, or the goal if lower."""
    return min(goal, 2)


@dataclass(frozen=True)
class Commands:
    reregister: bool = False
    deletes: list[int] = field(default_factory=list)
    copies: list[tuple[int, KeeperView]] = field(default_factory=list)
    verifies: list[int] = field(default_factory=list)


class Damage(enum.IntEnum):
    """How bad a chunk below its goal is, the worst first (the order fsck lists files in)."""

    LOST = 0  # no copy on any keeper, alive or dead
    UNAVAILABLE = 1  # copies only on keepers that are down
    UNDER_REPLICATED = 2  # alive copies, fewer than the goal


@dataclass(frozen=True)
class Health:
    total: int
    under_replicated: int
    over_replicated: int
    lost: int
    repairs_in_flight: int
    garbage: int
    misplaced: int  # copies enough, but in fewer failure domains than there are
    pending: int  # reserved for uploads not yet committed
    unavailable: int  # copies only on keepers that are down (or not registered again since a start)


class Cluster:
    def __init__(
        self,
        settings: Settings,
        chunks: Iterable[ChunkRow],
        next_chunk_id: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
        goals: Mapping[int, int] | None = None,
    ) -> None:
        """goals: chunk -> its file's own goal, for the files that have one."""
        self.settings = settings
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()
        self._next_chunk_id = next_chunk_id
        self._lock = threading.RLock()  # plan() also runs inside heartbeat()
        self.keepers: dict[str, KeeperRecord] = {}
        self.replicas: dict[int, set[str]] = {}
        self.live: dict[int, int] = {}  # chunk -> stored length
        self.goals: dict[int, int] = {}  # chunk -> its file's own goal, where it has one (see goal_of)
        self.pending: dict[int, int] = {}  # chunk -> lease start (wall ns)
        self.garbage: dict[int, int] = {}  # chunk -> unreferenced since (wall ns)
        self.in_flight: dict[tuple[int, str], tuple[str, float]] = {}  # (chunk, target) -> (source, started)
        # Copies their source reported done, until their target reports the chunk (its next
        # heartbeat): still coming, so no plan in between copies the chunk again, but no longer
        # a job, and not counted as a replica before its holder says so.
        self.landed: dict[tuple[int, str], float] = {}  # (chunk, target) -> when reported done
        self.dirty: set[int] = set()  # chunks whose replica count may be off the goal
        # Keepers being emptied before they are taken away: their copies do not count towards
        # the goal and they get no new ones (the caller keeps the set durable).
        self.draining: set[str] = set()
        # What each dead keeper held when it died: its chunks are down, not lost, while it may
        # come back (a keeper cut off from the master may still serve them to the mounts).
        self.dead_holdings: dict[str, set[int]] = {}
        self.started = clock()
        self._balanced_at = self.started  # (the first round comes BALANCE_EVERY after a start)
        # With metadata copies on the keepers: when the newest was taken (wall ns; 0: none yet).
        # Garbage is deleted only once a copy shows it unreferenced, so that a master restored
        # from that copy finds every chunk its files name. None: no such wait (no copies, or
        # none can be stored at the moment).
        self.copy_taken_ns: int | None = None
        self.last_copy_ns = 0  # when the newest copy on the keepers was taken (0: none)
        self.copy_keepers = 0  # how many keepers hold it
        self.changes_unsent: Callable[[], int] = lambda: 0  # changes made since that some of them lack yet
        for row in chunks:
            if row.state == ChunkState.LIVE:
                self.live[row.id] = row.stored_length
            elif row.state == ChunkState.PENDING:
                self.pending[row.id] = row.since_ns
            else:
                self.garbage[row.id] = row.since_ns
        self.goals.update((c, g) for c, g in (goals or {}).items() if c in self.live)

    # --- keepers ---------------------------------------------------------------------------------

    def register(
        self, keeper_id: str, address: str, capacity: int, used: int, free: int, chunk_ids: list[str], domain: str = ""
    ) -> None:
        with self._lock:
            for gone in [r for r in self.keepers.values() if r.address == address and r.keeper_id != keeper_id]:
                if not gone.alive:  # its disk replaced (or moved): a keeper of another id took its place
                    self._forget_replicas(gone)
                    del self.keepers[gone.keeper_id]
                    self.dead_holdings.pop(gone.keeper_id, None)
                    log.info("dead keeper %s forgotten: keeper %s took its address", gone.keeper_id, keeper_id)
            record = self.keepers.get(keeper_id)
            self.dead_holdings.pop(keeper_id, None)
            if record is not None:
                self._forget_replicas(record)
            else:
                record = KeeperRecord(keeper_id, address)
                self.keepers[keeper_id] = record
            record.address, record.domain = address, failure_domain(keeper_id, domain)
            record.capacity_bytes, record.used_bytes, record.free_bytes = capacity, used, free
            record.last_seen = self.clock()
            record.alive = True
            record.deletes.clear()
            record.copies.clear()
            record.verifies.clear()
            for text in chunk_ids:
                if is_valid_chunk_id(text):
                    self._add_replica(parse_chunk_id(text), record)
            # A new keeper may be what under-replicated chunks, or ones crowded into too few
            # failure domains, were waiting for.
            domains = self._domain_count()
            self.dirty.update(
                c
                for c in self.live
                if len(self._counted_holders(c)) < self.goal_of(c)
                or len(self._counted_domains(c)) < min(self.goal_of(c), domains)
            )
            log.info(
                "keeper %s at %s (failure domain %s) registered with %d chunks",
                keeper_id,
                address,
                record.domain,
                len(record.chunks),
            )

    def heartbeat(
        self,
        keeper_id: str,
        capacity: int,
        used: int,
        free: int,
        load: int,
        added: list[str],
        removed: list[str],
        copies_done: list[tuple[str, str, bool]],
        scrub: tuple[int, int] = (0, 0),
        disk_stalled: float = 0.0,
        damaged_copies: int = 0,
    ) -> Commands:
        with self._lock:
            record = self.keepers.get(keeper_id)
            if record is None or not record.alive:
                return Commands(reregister=True)
            record.capacity_bytes, record.used_bytes, record.free_bytes, record.load = capacity, used, free, load
            record.scrub_checked, record.scrub_bad = scrub
            record.damaged_copies = damaged_copies
            if (disk_stalled > 0) != (record.disk_stalled > 0):
                news = f"has not answered for {disk_stalled:.0f} s" if disk_stalled else "answers again"
                log.warning("keeper %s at %s: its disk %s", keeper_id, record.address, news)
            record.disk_stalled = disk_stalled
            record.last_seen = self.clock()
            for text in added:
                if is_valid_chunk_id(text):
                    self._add_replica(parse_chunk_id(text), record)
            for text in removed:
                if is_valid_chunk_id(text):
                    self._remove_replica(parse_chunk_id(text), record)
            for chunk_text, target, ok in copies_done:
                if is_valid_chunk_id(chunk_text):
                    chunk = parse_chunk_id(chunk_text)
                    self.dirty.add(chunk)
                    if self.in_flight.pop((chunk, target), None) is not None and ok:
                        self.landed[(chunk, target)] = self.clock()  # (unless the target reported it already)
                    if not ok:
                        log.warning("copy of %s from %s to %s failed", chunk_text, keeper_id, target)
            if copies_done:
                self.plan()  # the next copies go out in this reply, not a heartbeat later
            if disk_stalled:
                # Its disk would hold up the deletes in its heartbeat (and copies from it): they
                # wait until it answers, or go with the keeper if it never does.
                return Commands()
            commands = Commands(
                deletes=sorted(record.deletes),
                copies=[(c, self.keepers[t].view()) for c, t in record.copies if t in self.keepers],
                verifies=sorted(record.verifies),
            )
            record.deletes.clear()
            record.copies.clear()
            record.verifies.clear()
            return commands

    def _add_replica(self, chunk: int, record: KeeperRecord) -> None:
        self.in_flight.pop((chunk, record.keeper_id), None)
        self.landed.pop((chunk, record.keeper_id), None)
        self.dirty.add(chunk)
        if chunk in record.deletes:
            # Its deletion goes out in the reply to this keeper's next heartbeat (this one's, for
            # a heartbeat's report): the copy is as good as gone, so it must not be counted.
            return
        record.chunks.add(chunk)
        self.replicas.setdefault(chunk, set()).add(record.keeper_id)

    def _remove_replica(self, chunk: int, record: KeeperRecord) -> None:
        record.chunks.discard(chunk)
        holders = self.replicas.get(chunk)
        if holders is not None:
            holders.discard(record.keeper_id)
            if not holders:
                del self.replicas[chunk]
        self.dirty.add(chunk)

    def _forget_replicas(self, record: KeeperRecord) -> None:
        for chunk in list(record.chunks):
            self._remove_replica(chunk, record)

    def _alive_holders(self, chunk: int) -> set[str]:
        return {k for k in self.replicas.get(chunk, ()) if self.keepers[k].alive}

    def _counted_holders(self, chunk: int) -> set[str]:
        """The copies that count towards the goal: on alive keepers not being drained."""
        return self._alive_holders(chunk) - self.draining

    def _counted_domains(self, chunk: int) -> set[str]:
        return {self.keepers[k].domain for k in self._counted_holders(chunk)}

    def goal_of(self, chunk: int) -> int:
        """How many copies of the chunk to keep: its file's own goal, or the cluster's."""
        return self.goals.get(chunk, self.settings.goal)

    def _domain_count(self) -> int:
        """How many failure domains there are to spread copies over (a chunk should be in its
        goal's worth of them, or all there are)."""
        return len({r.domain for r in self.keepers.values() if r.alive and r.keeper_id not in self.draining})

    def set_draining(self, keeper_id: str, draining: bool) -> None:
        """Starts (or ends) emptying a keeper: each of its chunks gets the goal's worth of copies
        elsewhere, after which it can be taken away without any chunk going below the goal."""
        with self._lock:
            (self.draining.add if draining else self.draining.discard)(keeper_id)
            record = self.keepers.get(keeper_id)
            if record is not None:
                self.dirty.update(record.chunks)
                log.warning("keeper %s at %s %s", keeper_id, record.address, "draining" if draining else "not draining")

    def chunks_to_move(self, keeper_id: str) -> int:
        """Of a draining keeper's chunks, how many lack the goal's worth of copies elsewhere."""
        with self._lock:
            record = self.keepers.get(keeper_id)
            if record is None or keeper_id not in self.draining:
                return 0
            return sum(1 for c in record.chunks if c in self.live and len(self._counted_holders(c)) < self.goal_of(c))

    # --- chunks ----------------------------------------------------------------------------------

    def choose_pipeline(self, exclude: Iterable[str], length: int, goal: int = 0) -> list[KeeperView]:
        """Keepers for a new chunk: the goal's worth (the cluster's, or goal), or at least
        min_copies of it, or an error."""
        need, goal = length or self.settings.chunk_size, goal or self.settings.goal
        least = min_copies(goal)
        alive = self.placeable()
        # Just started: keepers are still registering. Wait for them rather than write fewer copies.
        registering_until = time.monotonic() + self.settings.dead_after - (self.clock() - self.started)
        while len(alive) < goal and time.monotonic() < registering_until:
            time.sleep(0.05)
            alive = self.placeable()
        chosen = choose_keepers(alive, goal, need, set(exclude), self.rng)
        if len(chosen) >= least:
            return chosen
        if len(alive) < least:
            raise FsError(errno.EIO, f"only {len(alive)} keeper(s) alive; a write needs {least}")
        if len([k for k in alive if k.free_bytes >= need]) < least:
            full = "the cluster is full: too few keepers have space for another chunk"
            if self.settings.trash_seconds:
                hours = self.settings.trash_seconds / 3600
                full += f" (the trash keeps deleted files {hours:g} h: `trash purge /` frees them)"
            raise FsError(errno.ENOSPC, full)
        raise FsError(errno.EIO, "too few healthy keepers for this write; retry later")

    def derive_pipeline(self, base: int, exclude: Iterable[str], length: int, goal: int = 0) -> list[KeeperView]:
        """Keepers for a chunk derived from chunk `base` on the keepers holding it: a goal's
        worth of its holders (alive, not drained, with room), or EAGAIN when fewer hold it (the
        writer then writes the chunk whole, to keepers chosen as for any new chunk)."""
        goal = goal or self.settings.goal
        with self._lock:
            holders = [self.keepers[k].view() for k in self._counted_holders(base)]
        chosen = choose_keepers(holders, goal, length or self.settings.chunk_size, set(exclude), self.rng)
        if len(chosen) < goal or any(k.stalled for k in chosen):
            raise FsError(errno.EAGAIN, f"chunk {format_chunk_id(base)} is on too few sound keepers to derive from")
        return chosen

    def placeable(self) -> list[KeeperView]:
        """Keepers new chunks (and metadata copies) may go to: alive and not being drained."""
        with self._lock:
            return [k.view() for k in self.keepers.values() if k.alive and k.keeper_id not in self.draining]

    def reserved(self, chunk: int, since_ns: int) -> None:
        with self._lock:
            self.pending[chunk] = since_ns

    def apply(
        self,
        live: Iterable[int],
        garbage: Iterable[int],
        lengths: dict[int, int],
        stored_on: dict[int, list[str]],
        goals: Mapping[int, int] | None = None,
    ) -> None:
        """Reflects a committed namespace change: chunks that became part of files (goals: those
        of files with a goal of their own) or garbage."""
        now = self.wall_clock()
        with self._lock:
            for chunk in live:
                self.pending.pop(chunk, None)
                self.live[chunk] = lengths.get(chunk, 0)
                if goals and chunk in goals:
                    self.goals[chunk] = goals[chunk]
                for keeper_id in stored_on.get(chunk, ()):
                    record = self.keepers.get(keeper_id)
                    if record is not None and record.alive:
                        self._add_replica(chunk, record)
                self.dirty.add(chunk)
            for chunk in garbage:
                self.live.pop(chunk, None)
                self.goals.pop(chunk, None)
                self.pending.pop(chunk, None)
                self.garbage[chunk] = now
                self.dirty.add(chunk)

    def set_goals(self, goals: Mapping[int, int]) -> None:
        """Chunks whose file's goal changed: chunk -> its goal (0: the cluster's)."""
        with self._lock:
            for chunk, goal in goals.items():
                if chunk not in self.live:
                    continue
                if goal:
                    self.goals[chunk] = goal
                else:
                    self.goals.pop(chunk, None)
                self.dirty.add(chunk)

    def locations(self, chunk: int) -> list[KeeperView]:
        """Alive keepers holding chunk, least loaded first; those whose disk does not answer only
        when no other holds it (readers spread their reads over the replicas they are given)."""
        with self._lock:
            holders = [self.keepers[k].view() for k in self._alive_holders(chunk)]
        holders = [v for v in holders if not v.stalled] or holders
        self.rng.shuffle(holders)
        return sorted(holders, key=lambda v: v.load)

    def lost(self, chunk: int) -> bool:
        """No keeper, alive or dead, holds chunk: no wait brings it back. (Until LOST_AFTER_START
        after a start, keepers may still be re-registering what they hold; a keeper dead to the
        master may only be cut off from it, and still serve the mounts.)"""
        with self._lock:
            return chunk not in self.replicas and self._without_copies(chunk) is Damage.LOST

    def _without_copies(self, chunk: int) -> Damage:
        """How bad a chunk no alive keeper holds is: lost, or unavailable (the lock held)."""
        if self.clock() - self.started < LOST_AFTER_START:
            return Damage.UNAVAILABLE
        held = any(chunk in holding for holding in self.dead_holdings.values())
        return Damage.UNAVAILABLE if held else Damage.LOST

    def request_verify(self, chunk: int, keeper_id: str) -> None:
        with self._lock:
            record = self.keepers.get(keeper_id)
            if record is not None and chunk in record.chunks:
                record.verifies.add(chunk)

    # --- maintenance -----------------------------------------------------------------------------

    def check_keepers(self) -> list[str]:
        """Marks keepers silent for longer than dead_after as dead; returns their ids."""
        now = self.clock()
        dead = []
        with self._lock:
            for record in self.keepers.values():
                if record.alive and now - record.last_seen > self.settings.dead_after:
                    record.alive = False
                    held, record.chunks = record.chunks, set()  # (kept, not copied: a big keeper holds millions)
                    for chunk in held:
                        self._remove_replica(chunk, record)
                    self.dead_holdings[record.keeper_id] = held
                    involved = [k for k, (source, _) in self.in_flight.items() if record.keeper_id in (k[1], source)]
                    for key in involved:
                        self.in_flight.pop(key)
                        self.dirty.add(key[0])
                    for key in [k for k in self.landed if k[1] == record.keeper_id]:
                        self.landed.pop(key)
                        self.dirty.add(key[0])
                    dead.append(record.keeper_id)
                    log.warning(
                        "keeper %s at %s is dead (silent for %.1f s)",
                        record.keeper_id,
                        record.address,
                        now - record.last_seen,
                    )
        return dead

    def expired_pending(self) -> list[int]:
        """Reserved chunk ids whose upload lease ran out (the caller makes them garbage)."""
        cutoff = self.wall_clock() - int(self.settings.upload_lease * 1e9)
        with self._lock:
            return [c for c, since in self.pending.items() if since < cutoff]

    def plan(self) -> list[int]:
        """Schedules repairs, trims and deletions for dirty chunks; returns garbage ids to purge."""
        now, wall = self.clock(), self.wall_clock()
        grace_ns = int(self.settings.gc_grace * 1e9)
        with self._lock:
            for key, (_, started) in list(self.in_flight.items()):
                if now - started > self.settings.copy_timeout:
                    self.in_flight.pop(key)
                    self.dirty.add(key[0])
            for key, landed in list(self.landed.items()):
                if now - landed > self.settings.dead_after:  # (its heartbeat would have said by now)
                    self.landed.pop(key)
                    self.dirty.add(key[0])
            alive = {k: r.view() for k, r in self.keepers.items() if r.alive}
            dirty, self.dirty = self.dirty, set()
            next_id = self._next_chunk_id()
            live_dirty = []
            for chunk in dirty:
                if chunk in self.live:
                    live_dirty.append(chunk)
                elif chunk in self.pending:
                    continue
                elif chunk in self.garbage:
                    since = self.garbage[chunk]
                    if wall - since >= grace_ns and (self.copy_taken_ns is None or since < self.copy_taken_ns):
                        self._delete_everywhere(chunk)
                    else:
                        self.dirty.add(chunk)  # look again once the grace period (and a copy) is over
                elif chunk < next_id:
                    self._delete_everywhere(chunk)  # ours, but unknown: long-collected garbage
                # Ids we never issued are left alone: they may belong to another master's data.
            purge = [c for c, since in self.garbage.items() if wall - since >= grace_ns and not self.replicas.get(c)]
            if now - self.started < self.settings.dead_after:
                # Just started: keepers are still reporting what they hold. Decide nothing yet.
                self.dirty.update(live_dirty)
                return purge
            jobs: dict[str, int] = {}
            targets: dict[int, set[str]] = {}
            for chunk, target in self.landed:
                targets.setdefault(chunk, set()).add(target)
            for (chunk, target), (source, _) in self.in_flight.items():
                jobs[source] = jobs.get(source, 0) + 1
                jobs[target] = jobs.get(target, 0) + 1
                targets.setdefault(chunk, set()).add(target)
            plan = plan_repairs(
                live_dirty,
                self.replicas,
                alive,
                self.settings.goal,
                targets,
                jobs,
                self.settings.max_jobs_per_keeper,
                self.live,
                self.rng,
                self.draining,
                self.goals,
            )
            for copy in plan.copies:
                self.keepers[copy.source].copies.append((copy.chunk_id, copy.target))
                self.in_flight[(copy.chunk_id, copy.target)] = (copy.source, now)
            for trim in plan.trims:
                self._schedule_delete(trim.chunk_id, trim.keeper)
            self.dirty.update(plan.deferred)
            # Balancing only when there is nothing to repair, and a few heartbeats after the
            # last round's copies, so the keepers' reports show their trims.
            busy = plan.copies or plan.deferred or self.in_flight or self.landed
            if not busy and now - self._balanced_at >= BALANCE_EVERY:
                self._balanced_at = now
                holdings = {k: r.chunks for k, r in self.keepers.items() if r.alive}
                moves = plan_balance(
                    alive,
                    holdings,
                    self.replicas,
                    {},
                    jobs,
                    self.settings.max_jobs_per_keeper,
                    self.live,
                    self.draining,
                )
                for copy in moves:
                    self.keepers[copy.source].copies.append((copy.chunk_id, copy.target))
                    self.in_flight[(copy.chunk_id, copy.target)] = (copy.source, now)
                if moves:
                    log.info("balancing: %d chunks to move to emptier keepers", len(moves))
            return purge

    def _delete_everywhere(self, chunk: int) -> None:
        for keeper_id in list(self.replicas.get(chunk, ())):
            self._schedule_delete(chunk, keeper_id)

    def _schedule_delete(self, chunk: int, keeper_id: str) -> None:
        record = self.keepers[keeper_id]
        record.deletes.add(chunk)
        self._remove_replica(chunk, record)
        self.dirty.discard(chunk)

    def purged(self, chunks: Iterable[int]) -> None:
        with self._lock:
            for chunk in chunks:
                self.garbage.pop(chunk, None)

    # --- reporting -------------------------------------------------------------------------------

    def health(self) -> Health:
        with self._lock:
            under = over = lost = unavailable = misplaced = 0
            domains = self._domain_count()
            for chunk in self.live:
                n, goal = len(self._counted_holders(chunk)), self.goal_of(chunk)
                if not self._alive_holders(chunk):
                    if self._without_copies(chunk) is Damage.LOST:
                        lost += 1
                    else:
                        unavailable += 1
                elif n < goal:
                    under += 1
                else:
                    over += n > goal
                    misplaced += len(self._counted_domains(chunk)) < min(goal, domains)
            garbage, pending = len(self.garbage), len(self.pending)
            in_flight = len(self.in_flight)
            return Health(len(self.live), under, over, lost, in_flight, garbage, misplaced, pending, unavailable)

    def damaged(self) -> dict[int, Damage]:
        """Chunks of files with fewer copies counting towards the goal than it, and how bad."""
        with self._lock:
            damaged = {}
            for chunk in self.live:
                if len(self._counted_holders(chunk)) >= self.goal_of(chunk):
                    continue
                alive = self._alive_holders(chunk)
                damaged[chunk] = Damage.UNDER_REPLICATED if alive else self._without_copies(chunk)
            return damaged

    def keeper_records(self) -> list[KeeperRecord]:
        with self._lock:
            return sorted(self.keepers.values(), key=lambda r: r.address)
