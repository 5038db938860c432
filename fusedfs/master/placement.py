"""Where new replicas go: pure functions, no I/O.

Keepers are drawn at random, weighted by free space and discounted by load, without replacement:
a chunk's replicas land on distinct keepers, full keepers are skipped, and data spreads evenly
without every writer piling onto the single emptiest keeper between two heartbeats. A keeper
whose disk does not answer (it says so in its heartbeats) is taken only when too few others can.

Keepers that die together (one machine's disks, each served by a keeper of its own) share a
failure domain. A chunk's replicas go to as many domains as there are before any domain gets a
second one, as HDFS spreads blocks over racks: with goal 2 and two machines of two disks each,
a chunk is never on both disks of one machine.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KeeperView:
    """What placement needs to know of an alive keeper."""

    keeper_id: str
    address: str
    free_bytes: int
    load: int = 0
    domain: str = ""  # its failure domain; "" (unknown) is a domain of its own
    capacity_bytes: int = 0  # its disk's size
    stalled: bool = False  # its disk does not answer: it refuses writes for now

    @property
    def fill(self) -> float:
        """How full its disk is, 0..1, with anything (other programs' files, the reserve kept
        free, as well as chunks): what decides how much more it can take. 0 when it says no
        capacity."""
        if self.capacity_bytes <= 0:
            return 0.0
        return min(1.0, max(0.0, 1 - self.free_bytes / self.capacity_bytes))

    @property
    def failure_domain(self) -> str:
        return failure_domain(self.keeper_id, self.domain)


def failure_domain(keeper_id: str, domain: str) -> str:
    """A keeper's failure domain: as it says, or one of its own if it does not say."""
    return domain or f"keeper:{keeper_id}"


def domains_of(keepers: Iterable[KeeperView]) -> set[str]:
    return {k.failure_domain for k in keepers}


def choose_keepers(
    keepers: Sequence[KeeperView],
    count: int,
    need_bytes: int,
    exclude: Collection[str] = (),
    rng: random.Random | None = None,
    taken_domains: Collection[str] = (),
) -> list[KeeperView]:
    """Up to `count` distinct keepers not in `exclude` with at least `need_bytes` free, best first.

    Keepers in domains not yet taken (by `taken_domains`, the other replicas' domains, or an
    earlier pick) come first; the rest only once every domain has a replica. Stalled keepers
    come after all others, whatever their domain.
    """
    rng = rng or random.Random()
    eligible = [k for k in keepers if k.keeper_id not in exclude and k.free_bytes >= need_bytes]

    def key(k: KeeperView) -> float:
        # Efraimidis-Spirakis weighted sampling: the largest log(u)/w win.
        weight = max(k.free_bytes, 1) / (1 + k.load)
        return math.log(rng.random() or 1e-300) / weight

    ranked = sorted(eligible, key=key, reverse=True)
    answering = spread_first([k for k in ranked if not k.stalled], taken_domains)
    return (answering + [k for k in ranked if k.stalled])[:count]


def spread_first(ranked: Sequence[KeeperView], taken_domains: Collection[str] = ()) -> list[KeeperView]:
    """`ranked` reordered: the first keeper of each domain not taken yet, then the rest, in order."""
    first: list[KeeperView] = []
    used = set(taken_domains)
    for keeper in ranked:
        if keeper.failure_domain not in used:
            first.append(keeper)
            used.add(keeper.failure_domain)
    return first + [k for k in ranked if k not in first]
