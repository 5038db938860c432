"""The master's in-memory cluster view: registration, heartbeats, deaths, repair and GC decisions."""

from __future__ import annotations

import errno
import random
from typing import Any

import pytest

from fusedfs.chunks import format_chunk_id as cid
from fusedfs.errors import FsError
from fusedfs.master.cluster import Cluster, Damage, Health, Settings
from fusedfs.master.store import ChunkRow, ChunkState

GiB = 1 << 30


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> int:
        return int(self.now * 1e9)


def make(
    rows: list[ChunkRow], next_id: int = 100, goals: dict[int, int] | None = None, **settings: Any
) -> tuple[Cluster, Clock]:
    clock = Clock()
    cluster = Cluster(
        Settings(**settings),
        rows,
        lambda: next_id,
        clock=clock,
        wall_clock=clock.wall,  # type: ignore[arg-type]
        rng=random.Random(0),
        goals=goals,
    )
    return cluster, clock


def live(chunk: int) -> ChunkRow:
    return ChunkRow(chunk, ChunkState.LIVE, 1, chunk, 10, 10, 0, 0)


def register(cluster: Cluster, keeper: str, chunks: list[int]) -> None:
    cluster.register(keeper, f"{keeper}:1", 100 * GiB, 0, 100 * GiB, [cid(c) for c in chunks])


def beat(cluster: Cluster, keeper: str, added: list[int] = (), removed: list[int] = ()):  # type: ignore[assignment,no-untyped-def]
    return cluster.heartbeat(keeper, 100 * GiB, 0, 100 * GiB, 0, [cid(c) for c in added], [cid(c) for c in removed], [])


def test_dead_keeper_triggers_copies_after_startup_grace() -> None:
    cluster, clock = make([live(1), live(2)])
    for k in ("a", "b", "c", "d"):
        register(cluster, k, [1, 2] if k != "d" else [])
    cluster.plan()
    assert cluster.health().under_replicated == 0
    clock.now += 2.0
    for k in ("a", "b", "d"):
        beat(cluster, k)
    clock.now += 2.0  # c silent for 4 s
    assert cluster.check_keepers() == ["c"]
    assert cluster.health().under_replicated == 2
    cluster.plan()
    copies = [cmd for k in ("a", "b") for cmd in beat(cluster, k).copies]
    assert sorted(chunk for chunk, _ in copies) == [1, 2]
    assert all(target.keeper_id == "d" for _, target in copies)
    beat(cluster, "d", added=[1, 2])
    assert cluster.health().under_replicated == 0 and cluster.health().repairs_in_flight == 0
    assert beat(cluster, "c").reregister  # a dead keeper must register again


def test_a_dead_keeper_whose_address_a_new_one_took_is_forgotten() -> None:
    """A keeper's disk replaced: it comes back under a new id at the same address. The old one,
    dead, went on being listed (DEAD, with its old figures) until the master restarted."""
    cluster, clock = make([live(1)])
    for k in ("a", "b", "c"):
        register(cluster, k, [1])
    clock.now += 4.0
    for k in ("a", "b"):
        beat(cluster, k)
    assert cluster.check_keepers() == ["c"]
    cluster.register("c2", "c:1", 100 * GiB, 0, 100 * GiB, [])
    assert sorted(r.keeper_id for r in cluster.keeper_records()) == ["a", "b", "c2"]
    assert cluster.health().under_replicated == 1  # (its copy went with it)
    cluster.register("d", "a:1", 100 * GiB, 0, 100 * GiB, [])  # an alive keeper's address: both kept
    assert len(cluster.keeper_records()) == 4


def test_a_copy_done_is_not_made_again_before_its_target_reports_it() -> None:
    # The source reports a copy done in the heartbeat it sends at once; the target's next
    # heartbeat comes up to a second later. Planned in between, the chunk must not look short.
    cluster, clock = make([live(1)], goal=3)
    for k, chunks in (("a", [1]), ("b", [1]), ("c", []), ("d", [])):
        register(cluster, k, chunks)
    clock.now += 4.0
    for k in "abcd":
        beat(cluster, k)
    cluster.plan()
    [(source, (chunk, target))] = [(k, cmd) for k in "ab" for cmd in beat(cluster, k).copies]
    done = [(cid(chunk), target.keeper_id, True)]
    commands = cluster.heartbeat(source, 100 * GiB, 0, 100 * GiB, 0, [], [], done)
    assert commands.copies == [] and all(beat(cluster, k).copies == [] for k in "abcd")
    assert cluster.health().repairs_in_flight == 0  # (no longer a job)
    assert target.keeper_id not in cluster.replicas[1]  # (counted once its holder says so)
    beat(cluster, target.keeper_id, added=[1])
    assert cluster.health() == Health(
        total=1,
        under_replicated=0,
        over_replicated=0,
        lost=0,
        repairs_in_flight=0,
        garbage=0,
        misplaced=0,
        pending=0,
        unavailable=0,
    )
    assert not cluster.landed


def test_a_draining_keeper_gets_no_new_chunks_and_says_when_it_is_empty() -> None:
    cluster, clock = make([live(1), live(2)], goal=2)
    for k, chunks in (("a", [1, 2]), ("b", [1]), ("c", [2]), ("d", [])):
        register(cluster, k, chunks)
    clock.now += 4.0
    cluster.set_draining("a", True)
    assert all("a" not in {k.keeper_id for k in cluster.choose_pipeline([], 10)} for _ in range(50))
    assert cluster.chunks_to_move("a") == 2 and cluster.health().under_replicated == 2
    cluster.plan()
    copies = beat(cluster, "a").copies + beat(cluster, "b").copies + beat(cluster, "c").copies
    assert sorted(chunk for chunk, _ in copies) == [1, 2] and "a" not in {t.keeper_id for _, t in copies}
    for chunk, target in copies:
        beat(cluster, target.keeper_id, added=[chunk])
    assert cluster.chunks_to_move("a") == 0 and cluster.health().under_replicated == 0
    assert cluster.chunks_to_move("b") == 0  # (not draining)
    cluster.plan()
    assert beat(cluster, "a").deletes == []  # its copies are kept while it drains
    # Undone: its copies count again, and the extra ones are trimmed.
    cluster.set_draining("a", False)
    assert cluster.health().over_replicated == 2
    cluster.plan()
    trims = sum(len(beat(cluster, k).deletes) for k in "abcd")
    assert trims == 2 and cluster.health().over_replicated == 0


def test_a_chunk_short_of_keepers_is_copied_once_one_registers() -> None:
    cluster, clock = make([live(1)], goal=3)

    def register_on_one_machine(keeper: str, chunks: list[int]) -> None:
        cluster.register(keeper, f"{keeper}:1", 100 * GiB, 0, 100 * GiB, [cid(c) for c in chunks], domain="box")

    register_on_one_machine("a", [1])
    register_on_one_machine("b", [1])
    clock.now += 4.0
    cluster.plan()
    assert beat(cluster, "a").copies == beat(cluster, "b").copies == []  # nowhere to copy to
    register_on_one_machine("c", [])  # (the one it was waiting for)
    cluster.plan()
    copies = beat(cluster, "a").copies + beat(cluster, "b").copies
    assert [(chunk, target.keeper_id) for chunk, target in copies] == [(1, "c")]


def test_nothing_is_planned_right_after_start() -> None:
    cluster, _ = make([live(1)])
    register(cluster, "a", [1])
    register(cluster, "b", [])
    register(cluster, "c", [])
    cluster.plan()
    assert beat(cluster, "a").copies == []


def test_garbage_waits_for_grace_and_unknown_ids_below_the_counter_go() -> None:
    cluster, clock = make([live(1)], next_id=100, gc_grace=60.0)
    clock.now += 10
    register(cluster, "a", [1, 50, 200])  # 50: ours but unknown (collected); 200: never issued by us
    cluster.apply([], [1], {}, {})
    cluster.plan()
    assert beat(cluster, "a").deletes == [50]
    clock.now += 61
    assert cluster.plan() == [1]  # deletion ordered, so the row can go ...
    cluster.purged([1])
    assert beat(cluster, "a").deletes == [1]
    register(cluster, "b", [1])  # ... because a copy that shows up later is ours-but-unknown: deleted too
    cluster.plan()
    assert beat(cluster, "b").deletes == [1]


def test_with_metadata_copies_garbage_waits_for_a_copy_that_shows_it_unreferenced() -> None:
    cluster, clock = make([live(1)], next_id=100, gc_grace=60.0)
    cluster.copy_taken_ns = 0  # copies are on, none taken yet
    clock.now += 10
    register(cluster, "a", [1])
    cluster.apply([], [1], {}, {})
    became_garbage = clock.wall()
    clock.now += 61
    for copy_taken in (None, became_garbage - 1):  # none yet; one that still shows it in a file
        if copy_taken is not None:
            cluster.copy_taken_ns = copy_taken
        assert cluster.plan() == [] and beat(cluster, "a").deletes == []
    cluster.copy_taken_ns = became_garbage + 1  # a copy restored from now on does not name it
    cluster.plan()
    assert beat(cluster, "a").deletes == [1]


def test_pending_chunks_are_safe_until_their_lease_ends() -> None:
    cluster, clock = make([ChunkRow(7, ChunkState.PENDING, None, None, 0, 0, 0, 0)], upload_lease=100.0)
    clock.now = 50.0
    register(cluster, "a", [7])
    cluster.plan()
    assert beat(cluster, "a").deletes == []
    assert cluster.expired_pending() == [] and cluster.health().pending == 1  # (status shows it)
    clock.now = 101.0
    assert cluster.expired_pending() == [7]


def test_pipeline_needs_min_copies() -> None:
    cluster, clock = make([], goal=3)
    clock.now += 10  # past the start-up wait for keepers to register
    with pytest.raises(FsError, match="alive"):
        cluster.choose_pipeline([], 0)
    register(cluster, "a", [])
    register(cluster, "b", [])
    assert len(cluster.choose_pipeline([], 0)) == 2
    with pytest.raises(FsError):
        cluster.choose_pipeline(["a"], 0)


def test_a_chunk_is_derived_on_a_goals_worth_of_sound_holders_of_its_base_or_not_at_all() -> None:
    cluster, clock = make([live(1)], goal=2)
    for k, chunks in (("a", [1]), ("b", [1]), ("c", [1]), ("d", [])):
        register(cluster, k, chunks)
    clock.now += 4.0
    for _ in range(20):
        chosen = {k.keeper_id for k in cluster.derive_pipeline(1, [], 10)}
        assert len(chosen) == 2 and chosen <= {"a", "b", "c"}
    assert {k.keeper_id for k in cluster.derive_pipeline(1, ["a"], 10, goal=2)} == {"b", "c"}
    cluster.set_draining("b", True)
    with pytest.raises(FsError) as e:  # the writer writes the chunk whole instead
        cluster.derive_pipeline(1, ["a"], 10)
    assert e.value.errno == errno.EAGAIN
    with pytest.raises(FsError):
        cluster.derive_pipeline(1, [], 10, goal=3)
    with pytest.raises(FsError):
        cluster.derive_pipeline(2, [], 10)  # a chunk no keeper holds


def test_over_replication_is_trimmed_and_a_report_racing_the_trim_is_not_counted() -> None:
    cluster, clock = make([live(1)])
    clock.now += 10
    for k in ("a", "b", "c", "d"):
        register(cluster, k, [1])
    cluster.plan()
    [trimmed] = [k for k in ("a", "b", "c", "d") if 1 in cluster.keepers[k].deletes]
    # A commit counts a new chunk on its keepers before they report it; trimmed in between, a
    # keeper's report of it comes in the heartbeat whose reply deletes it: not counted.
    assert beat(cluster, trimmed, added=[1]).deletes == [1]
    assert trimmed not in cluster.replicas[1] and len(cluster.replicas[1]) == 3
    assert sum(len(beat(cluster, k).deletes) for k in ("a", "b", "c", "d") if k != trimmed) == 0
    assert cluster.health().over_replicated == 0 and cluster.health().under_replicated == 0


def test_a_copy_the_target_reported_and_deleted_before_its_source_said_done_is_not_counted() -> None:
    cluster, clock = make([live(1)], goal=2)
    register(cluster, "a", [1])
    register(cluster, "b", [])
    clock.now += 4.0
    cluster.plan()
    [(_, target)] = beat(cluster, "a").copies
    assert target.keeper_id == "b"
    beat(cluster, "b", added=[1])  # the target reports the copy first ...
    with cluster._lock:
        cluster._schedule_delete(1, "b")  # ... then it is trimmed (say, one too many by then) ...
    assert beat(cluster, "b").deletes == [1]
    beat(cluster, "b", removed=[1])  # ... deleted, and that reported, before the source's report:
    cluster.heartbeat("a", 100 * GiB, 0, 100 * GiB, 0, [], [], [(cid(1), "b", True)])
    assert cluster.replicas[1] == {"a"}  # b is not counted as holding it


def test_each_chunk_is_kept_at_its_files_goal() -> None:
    cluster, clock = make([live(1), live(2), live(3)], goals={1: 1, 2: 4})  # 3: the cluster's (3)
    clock.now += 10
    for k in ("a", "b", "c"):
        register(cluster, k, [1, 2, 3])
    register(cluster, "d", [])
    assert cluster.health().under_replicated == 1 and cluster.health().over_replicated == 1
    cluster.plan()
    replies = {k: beat(cluster, k) for k in ("a", "b", "c", "d")}
    assert sorted(c for r in replies.values() for c in r.deletes) == [1, 1]  # down to one copy
    copies = [(chunk, target.keeper_id) for r in replies.values() for chunk, target in r.copies]
    assert copies == [(2, "d")]  # up to four
    beat(cluster, "d", added=[2])
    health = cluster.health()
    assert (health.under_replicated, health.over_replicated) == (0, 0) and cluster.damaged() == {}
    cluster.set_goals({1: 0, 3: 4})  # chunk 1 back to the cluster's goal, 3 up to 4
    assert cluster.goal_of(1) == 3 and cluster.goal_of(3) == 4 and set(cluster.damaged()) == {1, 3}
    cluster.plan()
    copies = [(chunk, target.keeper_id) for k in ("a", "b", "c") for chunk, target in beat(cluster, k).copies]
    assert sorted(c for c, _ in copies) == [1, 1, 3] and (3, "d") in copies
    cluster.apply([], [2], {}, {})  # garbage: its goal goes with it
    assert 2 not in cluster.goals


def test_a_keeper_whose_disk_does_not_answer_gets_no_chunks_and_no_commands_meanwhile() -> None:
    cluster, clock = make([live(1)], goal=2)
    clock.now += 10
    for k in ("a", "b", "c"):
        register(cluster, k, [1])
    cluster.plan()  # one copy too many: a trim goes out with a heartbeat
    [trimmed] = [k for k in "abc" if 1 in cluster.keepers[k].deletes]

    def stalled_beat(keeper: str, seconds: float) -> Any:
        return cluster.heartbeat(keeper, 100 * GiB, 0, 100 * GiB, 0, [], [], [], disk_stalled=seconds)

    # Its disk stalls: the delete (which its heartbeat would hang on) waits, and writes go elsewhere.
    assert stalled_beat(trimmed, 6.0).deletes == []
    assert all(trimmed not in {k.keeper_id for k in cluster.choose_pipeline([], 0)} for _ in range(50))
    # It answers again: the delete goes out.
    assert stalled_beat(trimmed, 0.0).deletes == [1]
    # A holder whose disk does not answer is not read from, unless no other holds the chunk.
    holder, other = sorted(cluster.replicas[1])
    stalled_beat(holder, 6.0)
    assert [k.keeper_id for k in cluster.locations(1)] == [other]
    stalled_beat(other, 6.0)
    assert sorted(k.keeper_id for k in cluster.locations(1)) == [holder, other]


def test_a_chunk_whose_keepers_are_dead_is_down_not_lost() -> None:
    """Lost (a read fails at once) only when no keeper, alive or dead, holds it: a keeper dead
    to the master may only be cut off from it, and still serve the mounts (a partition sweep
    saw reads fail at once, and fsck say lost, during a 3 s cut between master and keepers).
    Status and fsck count them unavailable."""
    cluster, clock = make([live(1), live(2), live(3)], goal=1)
    register(cluster, "a", [1, 2])
    register(cluster, "b", [3])
    clock.now += 30
    beat(cluster, "b")
    assert cluster.check_keepers() == ["a"]
    assert not cluster.lost(1) and not cluster.lost(2)  # (a is down: its chunks may come back)
    assert (cluster.health().lost, cluster.health().unavailable) == (0, 2)
    assert cluster.damaged() == {1: Damage.UNAVAILABLE, 2: Damage.UNAVAILABLE}
    register(cluster, "a", [1])  # back, without 2 (its copy went while it was away)
    assert not cluster.lost(1) and cluster.lost(2) and not cluster.lost(3)
    assert cluster.lost(99)  # (nobody ever held it)
    assert (cluster.health().lost, cluster.health().unavailable) == (1, 0)
    assert cluster.damaged() == {2: Damage.LOST}
