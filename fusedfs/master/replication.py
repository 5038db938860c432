"""Replication planning: given where replicas are, decide the copies and trims to make. No I/O.

Chunks with the fewest alive copies are handled first. Each keeper takes part in at most
`max_jobs_per_keeper` copies at a time (as source or target), which throttles repair so it
does not starve clients; the chunks that could not be scheduled now are returned to retry later.

Copies go to failure domains the chunk is not in yet; a chunk with enough copies but in fewer
domains than it could be (written while only one machine was up) gets a copy in a new domain,
and trims take extra copies from the most crowded domain, so it ends spread out.

Balancing: when some keepers are much fuller than others (a new machine joined), chunks are
copied from the fullest to the emptiest, and the extra copy is then trimmed from the fullest
holder, so a chunk never has fewer copies than before while it moves (HDFS's balancer moves
blocks the same way, within a threshold of the mean).

A draining keeper (one being emptied before it is taken away) serves as a source, but its copies
do not count towards the goal, it gets no new ones, and none of its copies is trimmed: each of
its chunks gets the goal's worth elsewhere, and then it can go.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from fusedfs.master.placement import KeeperView, choose_keepers, domains_of


@dataclass(frozen=True)
class Copy:
    chunk_id: int
    source: str
    target: str


@dataclass(frozen=True)
class Trim:
    chunk_id: int
    keeper: str


@dataclass
class RepairPlan:
    copies: list[Copy] = field(default_factory=list)
    trims: list[Trim] = field(default_factory=list)
    deferred: set[int] = field(default_factory=set)  # need work but hit a limit; retry later
    lost: set[int] = field(default_factory=set)  # no alive copy: nothing to copy from


def plan_repairs(
    chunks: Iterable[int],
    replicas: Mapping[int, set[str]],
    alive: Mapping[str, KeeperView],
    goal: int,
    in_flight: Mapping[int, set[str]],
    jobs: Mapping[str, int],
    max_jobs_per_keeper: int,
    chunk_bytes: Mapping[int, int],
    rng: random.Random | None = None,
    draining: Collection[str] = (),
    goals: Mapping[int, int] | None = None,
) -> RepairPlan:
    """Copies that bring chunks up to their goal of alive replicas and trims that bring them
    down to it: `goal`, or for the chunks in `goals` (of files with a goal of their own) theirs.

    in_flight: chunk -> targets of copies already under way; jobs: keeper -> copies it is in now.
    """
    plan = RepairPlan()
    busy = dict(jobs)
    leaving = set(draining)
    staying = [k for k in alive.values() if k.keeper_id not in leaving]
    domain_count = len(domains_of(staying))

    def free(keeper: str) -> bool:
        return busy.get(keeper, 0) < max_jobs_per_keeper

    def held(chunk: int) -> set[str]:
        return {k for k in replicas.get(chunk, ()) if k in alive}

    def schedule(chunk: int, have: set[str], targets: list[KeeperView]) -> None:
        scheduled = 0
        for target in targets:
            # (A stalled keeper's disk may not answer the copy's reads either: the last resort.)
            sources = sorted((k for k in have if free(k)), key=lambda k: (alive[k].stalled, busy.get(k, 0)))
            if not sources or not free(target.keeper_id):
                continue
            plan.copies.append(Copy(chunk, sources[0], target.keeper_id))
            busy[sources[0]] = busy.get(sources[0], 0) + 1
            busy[target.keeper_id] = busy.get(target.keeper_id, 0) + 1
            scheduled += 1
        if scheduled < len(targets):
            plan.deferred.add(chunk)

    for chunk in sorted(chunks, key=lambda c: len(held(c) - leaving)):
        have = held(chunk)
        coming = in_flight.get(chunk, set())
        if not have:
            plan.lost.add(chunk)
            continue
        counted = have - leaving
        taken = domains_of(alive[k] for k in counted | coming if k in alive)
        want = goals.get(chunk, goal) if goals else goal
        missing = want - len(counted) - len(coming)
        size = chunk_bytes.get(chunk, 0)
        if missing > 0:
            # Targets that could take a copy at all; with too few keepers alive the chunk waits for
            # one to join (a registration re-checks every chunk), not for a free slot.
            schedule(chunk, have, choose_keepers(staying, missing, size, have | coming, rng, taken))
        elif coming:
            continue
        elif len(taken) < min(want, domain_count):
            # Enough copies, too few domains: copy into new ones; the trims below follow.
            wanted = min(want, domain_count) - len(taken)
            targets = choose_keepers(staying, wanted, size, have, rng, taken)
            schedule(chunk, have, [t for t in targets if t.failure_domain not in taken])
        elif len(counted) > want:
            for keeper in _extra_copies(counted, alive, len(counted) - want):
                plan.trims.append(Trim(chunk, keeper))
    return plan


def _extra_copies(have: set[str], alive: Mapping[str, KeeperView], count: int) -> list[str]:
    """The copies to drop: each from the domain holding the most, the fullest keeper there (by
    how full its disk is, then by free space)."""
    kept = set(have)
    dropped = []
    for _ in range(count):
        crowd: dict[str, int] = {}
        for k in kept:
            crowd[alive[k].failure_domain] = crowd.get(alive[k].failure_domain, 0) + 1
        keeper = max(kept, key=lambda k: (crowd[alive[k].failure_domain], alive[k].fill, -alive[k].free_bytes, k))
        kept.discard(keeper)
        dropped.append(keeper)
    return dropped


BALANCE_THRESHOLD = 0.05  # keepers within this of the mean fill (of all their disks) are left alone


def plan_balance(
    alive: Mapping[str, KeeperView],
    holdings: Mapping[str, Collection[int]],
    replicas: Mapping[int, set[str]],
    in_flight: Mapping[int, set[str]],
    jobs: Mapping[str, int],
    max_jobs_per_keeper: int,
    chunk_bytes: Mapping[int, int],
    draining: Collection[str] = (),
    threshold: float = BALANCE_THRESHOLD,
) -> list[Copy]:
    """Copies that move chunks from keepers fuller than the mean towards emptier ones, while one
    of the two is more than threshold away from the mean. Each copy counts as moved (its source
    will be trimmed as the fullest holder) for the next choice, so one round does not overshoot.

    holdings: keeper -> the chunks it holds (only those in chunk_bytes, i.e. of files, move).
    """
    # (A keeper whose disk does not answer neither sends nor takes chunks meanwhile.)
    part = {k: v for k, v in alive.items() if k not in draining and v.capacity_bytes > 0 and not v.stalled}
    if len(part) < 2:
        return []
    used = {k: v.fill * v.capacity_bytes for k, v in part.items()}  # the disk's, not only chunks
    mean = sum(used.values()) / sum(v.capacity_bytes for v in part.values())
    busy = dict(jobs)
    moving: set[int] = set()
    moves: list[Copy] = []

    def fill(k: str) -> float:
        return used[k] / part[k].capacity_bytes

    def free(k: str) -> bool:
        return busy.get(k, 0) < max_jobs_per_keeper

    def movable(chunk: int, source: str, target: str) -> bool:
        if chunk in moving or in_flight.get(chunk) or chunk not in chunk_bytes:
            return False
        size = chunk_bytes[chunk]
        if (used[target] + size) / part[target].capacity_bytes > (used[source] - size) / part[source].capacity_bytes:
            return False  # it would only turn the two round (and the next round move it back)
        holders = {k for k in replicas.get(chunk, ()) if k in alive}
        if target in holders:
            return False
        # Never onto fewer failure domains than the chunk is in now.
        after = domains_of(alive[k] for k in holders - {source}) | {part[target].failure_domain}
        return len(after) >= len(domains_of(alive[k] for k in holders))

    while True:
        donors = sorted((k for k in part if fill(k) > mean and free(k)), key=fill, reverse=True)
        takers = sorted((k for k in part if fill(k) < mean and free(k)), key=fill)
        move = None
        for donor in donors:
            for taker in takers:
                if fill(donor) - mean <= threshold and mean - fill(taker) <= threshold:
                    continue
                chunk = next((c for c in holdings.get(donor, ()) if movable(c, donor, taker)), None)
                if chunk is not None:
                    move = Copy(chunk, donor, taker)
                    break
            if move is not None:
                break
        if move is None:
            return moves
        moves.append(move)
        moving.add(move.chunk_id)
        size = chunk_bytes[move.chunk_id]
        used[move.source] -= size
        used[move.target] += size
        busy[move.source] = busy.get(move.source, 0) + 1
        busy[move.target] = busy.get(move.target, 0) + 1
