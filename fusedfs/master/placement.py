"""Where new replicas go: pure functions, no I/O.

Keepers are drawn at random, weighted by free space and discounted by load, without replacement:
a chunk's replicas land on distinct keepers, full keepers are skipped, and data spreads evenly
without every writer piling onto the single emptiest keeper between two heartbeats.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class KeeperView:
    """What placement needs to know of an alive keeper."""

    keeper_id: str
    address: str
    free_bytes: int
    load: int = 0


def choose_keepers(
    keepers: Sequence[KeeperView],
    count: int,
    need_bytes: int,
    exclude: Collection[str] = (),
    rng: random.Random | None = None,
) -> list[KeeperView]:
    """Up to `count` distinct keepers not in `exclude` with at least `need_bytes` free, best first."""
    rng = rng or random.Random()
    eligible = [k for k in keepers if k.keeper_id not in exclude and k.free_bytes >= need_bytes]

    def key(k: KeeperView) -> float:
        # Efraimidis-Spirakis weighted sampling: the largest log(u)/w win.
        weight = max(k.free_bytes, 1) / (1 + k.load)
        return math.log(rng.random() or 1e-300) / weight

    return sorted(eligible, key=key, reverse=True)[:count]
