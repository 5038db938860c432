"""Placement and replication planning: pure functions, seeded randomness."""

from __future__ import annotations

import random
from collections import Counter

from fusedfs.master.placement import KeeperView, choose_keepers, spread_first
from fusedfs.master.replication import Copy, Trim, plan_balance, plan_repairs

GiB = 1 << 30


def keepers(*free_gib: int) -> dict[str, KeeperView]:
    return {f"k{i}": KeeperView(f"k{i}", f"host:{i}", free * GiB) for i, free in enumerate(free_gib)}


def test_choose_distinct_eligible_keepers() -> None:
    views = list(keepers(10, 10, 0, 10, 10).values())
    rng = random.Random(1)
    for _ in range(200):
        chosen = choose_keepers(views, 3, GiB, exclude={"k3"}, rng=rng)
        ids = [k.keeper_id for k in chosen]
        assert len(ids) == len(set(ids)) == 3
        assert "k2" not in ids and "k3" not in ids  # full, excluded


def test_choose_prefers_free_space_but_spreads() -> None:
    views = list(keepers(100, 100, 10).values())
    counts = Counter(k.keeper_id for _ in range(3000) for k in choose_keepers(views, 1, 1, rng=random.Random(_)))
    assert counts["k0"] > 5 * counts["k2"] > 0
    assert abs(counts["k0"] - counts["k1"]) < 300


def test_under_replicated_chunks_get_copies_fewest_first() -> None:
    alive = keepers(10, 10, 10, 10)
    replicas = {1: {"k0", "k1"}, 2: {"k0"}, 3: {"k0", "k1", "k2"}}
    plan = plan_repairs([1, 2, 3], replicas, alive, 3, {}, {}, 10, {}, random.Random(0))
    assert not plan.deferred and not plan.trims
    assert plan.copies[0].chunk_id == 2  # one copy left: most urgent
    copies = Counter(c.chunk_id for c in plan.copies)
    assert copies == {1: 1, 2: 2}
    for copy in plan.copies:
        assert copy.source in replicas[copy.chunk_id] and copy.target not in replicas[copy.chunk_id]
    assert len({c.target for c in plan.copies if c.chunk_id == 2}) == 2


def test_job_limit_defers_and_counts_in_flight() -> None:
    alive = keepers(10, 10, 10, 10)
    replicas = {c: {"k0", "k1"} for c in range(10)}
    plan = plan_repairs(range(10), replicas, alive, 3, {}, {}, 1, {}, random.Random(0))
    assert len(plan.copies) == 2  # k0 and k1 as sources, one job each
    assert len(plan.deferred) == 8
    # A copy already under way counts towards the goal and is not scheduled twice.
    plan = plan_repairs([0], replicas, alive, 3, {0: {"k2"}}, {"k0": 1, "k2": 1}, 2, {}, random.Random(0))
    assert plan.copies == [] and not plan.deferred


def test_too_few_keepers_waits_without_deferring() -> None:
    plan = plan_repairs([1], {1: {"k0", "k1"}}, keepers(10, 10), 3, {}, {}, 2, {}, random.Random(0))
    assert plan.copies == [] and not plan.deferred and not plan.lost


def test_trims_from_the_fullest_and_reports_lost() -> None:
    alive = keepers(5, 1, 9, 7)
    plan = plan_repairs([1, 2], {1: {"k0", "k1", "k2", "k3"}, 2: {"dead"}}, alive, 3, {}, {}, 2, {})
    assert plan.trims == [Trim(1, "k1")]
    assert plan.lost == {2}
    assert not any(isinstance(c, Copy) and c.chunk_id == 2 for c in plan.copies)


def boxes(**disks: int) -> dict[str, KeeperView]:
    """Keepers by machine: boxes(a=2, b=1) is a0 and a1 on machine a, b0 on machine b."""
    return {
        f"{box}{i}": KeeperView(f"{box}{i}", f"{box}:{i}", 10 * GiB, domain=box)
        for box, count in disks.items()
        for i in range(count)
    }


def test_replicas_go_to_distinct_domains_first() -> None:
    views = list(boxes(a=3, b=1, c=1).values())
    for seed in range(300):
        chosen = choose_keepers(views, 2, GiB, rng=random.Random(seed))
        assert len({k.failure_domain for k in chosen}) == 2
        chosen = choose_keepers(views, 4, GiB, rng=random.Random(seed))
        assert len(chosen) == 4 and {k.failure_domain for k in chosen} == {"a", "b", "c"}
    # The domains of replicas already made count as taken.
    assert all(
        choose_keepers(views, 1, GiB, taken_domains={"a", "b"}, rng=random.Random(seed))[0].domain == "c"
        for seed in range(50)
    )
    # Without domains each keeper is its own.
    assert len({k.failure_domain for k in keepers(1, 1, 1).values()}) == 3
    # Best first, one of each domain before any second one (the metadata copies' keepers).
    ranked = [views[i] for i in (0, 1, 3, 2, 4)]  # a0 a1 b0 a2 c0
    assert [k.keeper_id for k in spread_first(ranked)] == ["a0", "b0", "c0", "a1", "a2"]


def test_repair_copies_into_a_new_domain() -> None:
    alive = boxes(a=2, b=2)
    for seed in range(50):
        plan = plan_repairs([1], {1: {"a0"}}, alive, 2, {}, {}, 4, {}, random.Random(seed))
        assert [c.target[0] for c in plan.copies] == ["b"]


def test_copies_on_one_domain_are_spread_once_another_exists() -> None:
    alive = boxes(a=2, b=1)
    # Written while only machine a was up: enough copies, one domain. A copy goes to b ...
    plan = plan_repairs([1], {1: {"a0", "a1"}}, alive, 2, {}, {}, 4, {}, random.Random(0))
    assert [(c.chunk_id, c.target) for c in plan.copies] == [(1, "b0")] and not plan.trims
    # ... not again while it is under way ...
    plan = plan_repairs([1], {1: {"a0", "a1"}}, alive, 2, {1: {"b0"}}, {"b0": 1}, 4, {}, random.Random(0))
    assert plan.copies == [] and plan.trims == []
    # ... and once it is there, the extra copy goes from the crowded domain, not from b.
    alive = {**alive, "a1": KeeperView("a1", "a:1", 1 * GiB, domain="a")}  # the fullest of them
    plan = plan_repairs([1], {1: {"a0", "a1", "b0"}}, alive, 2, {}, {}, 4, {}, random.Random(0))
    assert plan.copies == [] and plan.trims == [Trim(1, "a1")]
    # Spread as far as it can be: nothing to do.
    plan = plan_repairs([1], {1: {"a0", "b0"}}, alive, 2, {}, {}, 4, {}, random.Random(0))
    assert plan.copies == [] and plan.trims == [] and not plan.deferred
    # One machine only: two copies on it are the best there is.
    plan = plan_repairs([1], {1: {"a0", "a1"}}, boxes(a=3), 2, {}, {}, 4, {}, random.Random(0))
    assert plan.copies == [] and plan.trims == [] and not plan.deferred


def test_a_draining_keeper_is_copied_from_but_neither_counted_nor_given_copies() -> None:
    alive = keepers(10, 10, 10, 10)
    rng = random.Random(0)
    # Three copies, one on the draining k0: a fourth goes to k3, the only other keeper.
    plan = plan_repairs([1], {1: {"k0", "k1", "k2"}}, alive, 3, {}, {}, 4, {}, rng, draining={"k0"})
    assert [(c.chunk_id, c.target) for c in plan.copies] == [(1, "k3")] and not plan.trims
    # Then it is done: k0's copy stays (it does not count, so it is not extra) until k0 goes.
    plan = plan_repairs([1], {1: {"k0", "k1", "k2", "k3"}}, alive, 3, {}, {}, 4, {}, rng, draining={"k0"})
    assert plan.copies == [] and plan.trims == [] and not plan.deferred
    # A draining keeper gets no copy ...
    for seed in range(20):
        plan = plan_repairs([2], {2: {"k1"}}, alive, 3, {}, {}, 4, {}, random.Random(seed), draining={"k0"})
        assert sorted(c.target for c in plan.copies) == ["k2", "k3"]
    # ... but is a source: a chunk only it holds is copied, not lost.
    plan = plan_repairs([3], {3: {"k0"}}, alive, 3, {}, {}, 4, {}, rng, draining={"k0"})
    assert sorted((c.source, c.target) for c in plan.copies) == [("k0", "k1"), ("k0", "k2"), ("k0", "k3")]
    assert not plan.lost


def test_balancing_moves_chunks_from_the_fullest_to_the_emptiest_without_overshooting() -> None:
    def keeper(name: str, used: int, domain: str = "") -> KeeperView:
        return KeeperView(name, f"{name}:1", 100 - used, domain=domain, capacity_bytes=100)

    # Two keepers half full with the same 5 chunks (goal 2), and a new empty one.
    alive = {"k0": keeper("k0", 50), "k1": keeper("k1", 50), "k2": keeper("k2", 0)}
    holdings = {"k0": [1, 2, 3, 4, 5], "k1": [1, 2, 3, 4, 5], "k2": []}
    replicas = {c: {"k0", "k1"} for c in range(1, 6)}
    sizes = dict.fromkeys(range(1, 6), 10)
    moves = plan_balance(alive, holdings, replicas, {}, {}, 10, sizes)
    assert all(m.target == "k2" for m in moves) and len({m.chunk_id for m in moves}) == len(moves) == 3
    # (a fourth would leave k2 fuller than its source: 40 against 30)
    assert sorted(m.source for m in moves).count("k0") >= 1 and sorted(m.source for m in moves).count("k1") >= 1
    # Within the threshold of the mean, nothing moves; nor while a chunk is being copied, or
    # beyond the job limit, or onto a domain that holds a copy already.
    even = {k: keeper(k, 33) for k in ("k0", "k1", "k2")}
    assert plan_balance(even, holdings, replicas, {}, {}, 10, sizes) == []
    assert plan_balance(alive, holdings, replicas, {c: {"k2"} for c in sizes}, {}, 10, sizes) == []
    assert len(plan_balance(alive, holdings, replicas, {}, {"k2": 9}, 10, sizes)) == 1
    boxes_ = {"k0": keeper("k0", 50, "a"), "k1": keeper("k1", 50, "b"), "k2": keeper("k2", 0, "b")}
    assert {m.source for m in plan_balance(boxes_, holdings, replicas, {}, {}, 10, sizes)} == {"k1"}
    # A draining keeper is left to the repairs.
    assert plan_balance(alive, holdings, replicas, {}, {}, 10, sizes, draining={"k2"}) == []
    # A keeper with few chunks on a disk other files fill up is no taker (a CI run saw chunks
    # copied onto such a disk until it was full, and one of them cut short).
    crowded = {**alive, "k2": keeper("k2", 95)}
    assert all(m.target != "k2" for m in plan_balance(crowded, holdings, replicas, {}, {}, 10, sizes))


def test_the_extra_copy_after_a_move_is_trimmed_from_the_fullest() -> None:
    alive = {
        "k0": KeeperView("k0", "k0:1", 50, capacity_bytes=100),
        "k1": KeeperView("k1", "k1:1", 60, capacity_bytes=100),
        "k2": KeeperView("k2", "k2:1", 80, capacity_bytes=100),
    }
    plan = plan_repairs([1], {1: {"k0", "k1", "k2"}}, alive, 2, {}, {}, 4, {}, random.Random(0))
    assert plan.trims == [Trim(1, "k0")]


def test_balancing_within_one_machine() -> None:
    alive = {
        k: KeeperView(k, f"{k}:1", 100 - u, domain="box", capacity_bytes=100)
        for k, u in [("k0", 40), ("k1", 40), ("k2", 0)]
    }
    replicas = {c: {"k0", "k1"} for c in range(1, 5)}
    holdings = {"k0": [1, 2, 3, 4], "k1": [1, 2, 3, 4]}
    moves = plan_balance(alive, holdings, replicas, {}, {}, 10, dict.fromkeys(range(1, 5), 10))
    assert moves and all(m.target == "k2" for m in moves)  # (the copies stay on one machine: all there is)


def test_a_keeper_whose_disk_does_not_answer_is_the_last_resort() -> None:
    stalled = KeeperView("k9", "host:9", 1000 * GiB, stalled=True)  # the emptiest, and its own domain
    views = [*keepers(10, 10, 10).values(), stalled]
    rng = random.Random(1)
    assert all(stalled not in choose_keepers(views, 3, GiB, rng=rng) for _ in range(200))
    assert choose_keepers(views, 4, GiB, rng=rng)[-1] == stalled  # when nothing else will do
    # As a repair's source too; and balancing neither sends nor takes chunks through it.
    alive = {**keepers(10, 10, 10), "k9": stalled}
    plan = plan_repairs([1], {1: {"k9", "k0"}}, alive, 3, {}, {}, 10, {}, random.Random(0))
    assert [c.source for c in plan.copies] == ["k0"]
    empty = KeeperView("k9", "host:9", 100, capacity_bytes=100, stalled=True)
    full = {k: KeeperView(k, f"{k}:1", 10, capacity_bytes=100) for k in ("k0", "k1")}
    sizes = dict.fromkeys(range(1, 6), 10)
    holdings = {"k0": list(sizes), "k1": list(sizes)}
    replicas = {c: {"k0", "k1"} for c in sizes}
    assert plan_balance({**full, "k9": empty}, holdings, replicas, {}, {}, 10, sizes) == []
    answering = KeeperView("k9", "host:9", 100, capacity_bytes=100)
    assert plan_balance({**full, "k9": answering}, holdings, replicas, {}, {}, 10, sizes)
