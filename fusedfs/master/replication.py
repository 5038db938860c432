"""Replication planning: given where replicas are, decide the copies and trims to make. No I/O.

Chunks with the fewest alive copies are handled first. Each keeper takes part in at most
`max_jobs_per_keeper` copies at a time (as source or target), which throttles repair so it
does not starve clients; the chunks that could not be scheduled now are returned to retry later.

Copies go to failure domains the chunk is not in yet; a chunk with enough copies but in fewer
domains than it could be (written while only one machine was up) gets a copy in a new domain,
and trims take extra copies from the most crowded domain, so it ends spread out.

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
) -> RepairPlan:
    """Copies that bring chunks up to `goal` alive replicas and trims that bring them down to it.

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
            sources = sorted((k for k in have if free(k)), key=lambda k: busy.get(k, 0))
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
        missing = goal - len(counted) - len(coming)
        size = chunk_bytes.get(chunk, 0)
        if missing > 0:
            # Targets that could take a copy at all; with too few keepers alive the chunk waits for
            # one to join (a registration re-checks every chunk), not for a free slot.
            schedule(chunk, have, choose_keepers(staying, missing, size, have | coming, rng, taken))
        elif coming:
            continue
        elif len(taken) < min(goal, domain_count):
            # Enough copies, too few domains: copy into new ones; the trims below follow.
            wanted = min(goal, domain_count) - len(taken)
            targets = choose_keepers(staying, wanted, size, have, rng, taken)
            schedule(chunk, have, [t for t in targets if t.failure_domain not in taken])
        elif len(counted) > goal:
            for keeper in _extra_copies(counted, alive, len(counted) - goal):
                plan.trims.append(Trim(chunk, keeper))
    return plan


def _extra_copies(have: set[str], alive: Mapping[str, KeeperView], count: int) -> list[str]:
    """The copies to drop: each from the domain holding the most, the fullest keeper there."""
    kept = set(have)
    dropped = []
    for _ in range(count):
        crowd: dict[str, int] = {}
        for k in kept:
            crowd[alive[k].failure_domain] = crowd.get(alive[k].failure_domain, 0) + 1
        keeper = max(kept, key=lambda k: (crowd[alive[k].failure_domain], -alive[k].free_bytes, k))
        kept.discard(keeper)
        dropped.append(keeper)
    return dropped
