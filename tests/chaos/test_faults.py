"""Faults under a running workload, on a cluster whose every process has its own network namespace.

Each scenario checks, after the fault: every acknowledged upload downloads byte-identical (no
acknowledged byte lost), the cluster gets back to the replication goal by itself within a bound,
and no client operation took longer than the client's wait (30 s). The figures (fault to the
master noticing, time back to goal, failed and hung operations, bytes lost) are printed in the
run's summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.chaos.conftest import MakeCluster, ScenarioReport, log_lines, log_problems
from tests.chaos.netns import NetnsCluster
from tests.chaos.workload import CLIENT_WAIT, Sample, StatusMonitor, Workload, WorkloadResult, verify_acked

OP_BOUND = CLIENT_WAIT  # no operation may take longer than the client's wait
NOTICE_BOUND = 6.0  # dead after 3 s of silence, plus the master's 0.5 s tick and our polling
GOAL_BOUND = 45.0  # back at the goal this long after the fault was noticed (or undone)
WARMUP_FILES = 12
GOAL = 3


class Checks:
    """Collects failed expectations so that every figure is reported before the test fails."""

    def __init__(self, cluster: NetnsCluster) -> None:
        self.cluster = cluster
        self.failures: list[str] = []

    def expect(self, ok: bool, message: str) -> None:
        if not ok:
            self.failures.append(message)

    def done(self) -> None:
        if self.failures:
            events = "\n".join(f"  {t:.2f} {what}" for t, what in self.cluster.events)
            problems = "\n".join(log_problems(self.cluster)) or "  (none)"
            pytest.fail(
                "\n".join(self.failures)
                + f"\nharness events:\n{events}\nERROR lines in the logs:\n{problems}\nlogs: {self.cluster.log_dir}",
                pytrace=False,
            )


def keeper_index(cluster: NetnsCluster, address: str) -> int:
    return next(i for i, k in enumerate(cluster.keepers) if k.address == address)


def busiest_keepers(cluster: NetnsCluster) -> list[int]:
    """Alive keepers, the one holding most chunks first."""
    keepers = sorted((k for k in cluster.status().keepers if k.alive), key=lambda k: k.chunks, reverse=True)
    return [keeper_index(cluster, k.address) for k in keepers]


def is_dead(address: str) -> Callable[[Sample], bool]:
    return lambda s: s.alive(address) is False


def back_at_goal(alive: int) -> Callable[[Sample], bool]:
    return lambda s: s.alive_count() == alive and s.at_goal()


def report_repair(report: ScenarioReport, monitor: StatusMonitor, noticed_at: float, goal_at: float | None) -> None:
    """How many chunks had to be re-replicated, and how fast that went."""
    under = monitor.max_of(lambda s: s.reply.chunks.under_replicated if s.reply else 0, noticed_at)
    lost = monitor.max_of(lambda s: s.reply.chunks.lost if s.reply else 0, noticed_at)
    report.add("max under-replicated / lost chunks", f"{under} / {lost}")
    if goal_at is not None and goal_at > noticed_at and under:
        rate = under / (goal_at - noticed_at)
        report.add("repair rate", f"{under} chunks in {goal_at - noticed_at:.1f} s = {rate:.1f} chunks/s")


def settle(cluster: NetnsCluster, alive: int, timeout: float) -> float | None:
    """Seconds until the master reports `alive` keepers and every chunk exactly at the goal."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        s = Sample(time.monotonic(), cluster.status(wait=5))
        if s.alive_count() == alive and s.settled():
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def run_on(load: Workload, until: float) -> None:
    """Lets the workload run until the monotonic time `until`."""
    time.sleep(max(0.0, until - time.monotonic()))


def fmt(seconds: float | None) -> str:
    return "NEVER (bound exceeded)" if seconds is None else f"{seconds:.2f} s"


def report_workload(report: ScenarioReport, checks: Checks, result: WorkloadResult) -> None:
    uploads = [op for op in result.ops if op.kind == "upload"]
    downloads = [op for op in result.ops if op.kind == "download"]
    report.add("operations (uploads / downloads)", f"{len(uploads)} / {len(downloads)}")
    report.add("acknowledged files", f"{len(result.acked)} ({sum(a.size for a in result.acked) / 2**20:.1f} MiB)")
    report.add("failed operations", len(result.failed))
    for op in result.failed[:3]:
        report.add("  failure", f"{op.kind} {op.name} after {op.duration:.1f} s: {op.error[:150]}")
    report.add("hung operations (> bound)", len(result.hung))
    report.add("max operation duration", f"{result.max_duration:.2f} s")
    slow = result.slowest(1)
    if slow:
        report.add("  slowest", f"{slow[0].kind} {slow[0].name} {slow[0].duration:.1f} s {slow[0].error[:100]}")
    checks.expect(not result.corrupt_reads, f"reads returned wrong bytes: {result.corrupt_reads[:5]}")
    checks.expect(not result.hung, f"operations hung past {OP_BOUND:g} s: {result.hung}")
    checks.expect(
        result.max_duration <= OP_BOUND,
        f"an operation took {result.max_duration:.1f} s (bound {OP_BOUND:g} s): {result.slowest(3)}",
    )


def verify(cluster: NetnsCluster, report: ScenarioReport, checks: Checks, result: WorkloadResult, when: str) -> None:
    bad = verify_acked(cluster.master_address, result.acked)
    lost = sum(item.size for item, _ in bad)
    report.add(f"acknowledged bytes lost ({when})", f"{lost} ({len(bad)} of {len(result.acked)} files)")
    for item, why in bad[:3]:
        report.add("  lost", f"{item.name}: {why[:150]}")
    checks.expect(
        not bad, f"{len(bad)} acknowledged files lost or changed ({when}): {[(i.name, w) for i, w in bad[:5]]}"
    )


def check_settled(cluster: NetnsCluster, report: ScenarioReport, checks: Checks, alive: int, what: str) -> None:
    took = settle(cluster, alive, GOAL_BOUND)
    report.add(f"settled at goal, {alive} keepers ({what})", fmt(took))
    if took is None:
        c = cluster.status().chunks
        checks.expect(
            False,
            f"not settled at the goal {GOAL_BOUND:g} s {what}: under {c.under_replicated}, over "
            f"{c.over_replicated}, lost {c.lost}, repairs {c.repairs_in_flight}",
        )


# --- (a) ------------------------------------------------------------------------------------------


def test_kill_keeper(make_cluster: MakeCluster, report: ScenarioReport) -> None:
    """kill -9 one keeper of 4: reads and writes go on, its chunks get back to 3 copies; it returns."""
    cluster = make_cluster(keepers=4)
    checks = Checks(cluster)
    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address).start()
        load.wait_acked(WARMUP_FILES, 30)
        victim = busiest_keepers(cluster)[0]
        address = cluster.keeper_address(victim)
        fault = cluster.kill_keeper(victim)
        noticed = monitor.wait_for(is_dead(address), fault, NOTICE_BOUND + 10)
        goal = monitor.wait_for(lambda s: is_dead(address)(s) and back_at_goal(3)(s), fault, GOAL_BOUND)
        run_on(load, fault + 8)
        result = load.stop(OP_BOUND)
    report.add("fault", f"kill -9 keeper {victim} of 4 (seed {load.seed})")
    report.add("fault -> master noticed keeper dead", fmt(noticed))
    report.add("fault -> every chunk back at goal", fmt(goal))
    if noticed is not None:
        report_repair(report, monitor, fault + noticed, None if goal is None else fault + goal)
    checks.expect(noticed is not None and noticed <= NOTICE_BOUND, f"dead keeper noticed after {fmt(noticed)}")
    checks.expect(goal is not None, f"goal not restored within {GOAL_BOUND:g} s of the kill")
    report_workload(report, checks, result)
    check_settled(cluster, report, checks, 3, "after the kill")
    verify(cluster, report, checks, result, "keeper dead")

    # It comes back with its old chunks: the extra copies are trimmed, nothing is lost.
    back = time.monotonic()
    cluster.start_keeper(victim)
    cluster.wait_ready(4, 20)
    report.add("restart -> keeper alive again", f"{time.monotonic() - back:.2f} s")
    check_settled(cluster, report, checks, 4, "after the restart")
    verify(cluster, report, checks, result, "keeper restarted")
    report.add("ERROR lines in logs", len(log_problems(cluster)))
    checks.done()


# --- (b) ------------------------------------------------------------------------------------------


def test_kill_two_keepers_one_after_the_other(make_cluster: MakeCluster, report: ScenarioReport) -> None:
    """kill -9 a keeper, then a second while the first one's chunks are being repaired.

    5 keepers, so that 3 survive and the goal of 3 can be met again without them.
    """
    cluster = make_cluster(keepers=5)
    checks = Checks(cluster)
    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address).start()
        load.wait_acked(WARMUP_FILES, 30)
        first, second = busiest_keepers(cluster)[:2]
        a1, a2 = cluster.keeper_address(first), cluster.keeper_address(second)
        fault1 = cluster.kill_keeper(first)
        noticed1 = monitor.wait_for(is_dead(a1), fault1, NOTICE_BOUND + 10)
        # The second dies while the first one's chunks are still being copied back.
        monitor.wait_for(lambda s: s.reply is not None and s.reply.chunks.repairs_in_flight > 0, fault1, 3)
        fault2 = cluster.kill_keeper(second)
        noticed2 = monitor.wait_for(is_dead(a2), fault2, NOTICE_BOUND + 10)
        goal = monitor.wait_for(lambda s: is_dead(a2)(s) and back_at_goal(3)(s), fault2, GOAL_BOUND)
        run_on(load, fault2 + 8)
        result = load.stop(OP_BOUND)
    report.add("fault", f"kill -9 keeper {first}, then keeper {second} {fault2 - fault1:.1f} s later (5 keepers)")
    report.add("fault 1 -> master noticed dead", fmt(noticed1))
    report.add("fault 2 -> master noticed dead", fmt(noticed2))
    report.add("fault 2 -> every chunk back at goal", fmt(goal))
    if noticed1 is not None:
        report_repair(report, monitor, fault1 + noticed1, None if goal is None else fault2 + goal)
    checks.expect(noticed1 is not None and noticed1 <= NOTICE_BOUND, f"first dead keeper noticed after {fmt(noticed1)}")
    checks.expect(
        noticed2 is not None and noticed2 <= NOTICE_BOUND, f"second dead keeper noticed after {fmt(noticed2)}"
    )
    checks.expect(goal is not None, f"goal not restored within {GOAL_BOUND:g} s of the second kill")
    report_workload(report, checks, result)
    check_settled(cluster, report, checks, 3, "after both kills")
    verify(cluster, report, checks, result, "two keepers dead")
    report.add("ERROR lines in logs", len(log_problems(cluster)))
    checks.done()


# --- (c) ------------------------------------------------------------------------------------------

CUT_SECONDS = 7.0  # longer than the 3 s after which the master declares a keeper dead


@pytest.mark.parametrize("mode", ["drop", "down"])
def test_cut_keeper_off_and_back(make_cluster: MakeCluster, report: ScenarioReport, mode: str) -> None:
    """A keeper of 4 loses the network for longer than the dead timeout, then comes back.

    "drop": a silent partition (every packet dropped, link up); "down": its link goes down.
    """
    cluster = make_cluster(keepers=4)
    checks = Checks(cluster)
    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address).start()
        load.wait_acked(WARMUP_FILES, 30)
        victim = busiest_keepers(cluster)[0]
        address = cluster.keeper_address(victim)
        fault = cluster.cut(victim, mode)
        noticed = monitor.wait_for(is_dead(address), fault, NOTICE_BOUND + 10)
        run_on(load, fault + CUT_SECONDS)
        goal_during = monitor.first(lambda s: is_dead(address)(s) and back_at_goal(3)(s), fault)
        healed = cluster.restore(victim)
        rejoined = monitor.wait_for(lambda s: s.alive(address) is True, healed, 30)
        goal = monitor.wait_for(back_at_goal(4), healed, GOAL_BOUND)
        run_on(load, healed + 6)
        result = load.stop(OP_BOUND)
    report.add("fault", f"keeper {victim} of 4 cut off ({mode}) for {CUT_SECONDS:g} s")
    report.add("fault -> master noticed keeper dead", fmt(noticed))
    during = "not during the cut" if goal_during is None else f"{goal_during.t - fault:.2f} s"
    report.add("fault -> back at goal on 3 (while cut)", during)
    report.add("restore -> keeper alive again", fmt(rejoined))
    report.add("restore -> every chunk at goal", fmt(goal))
    checks.expect(noticed is not None and noticed <= NOTICE_BOUND, f"cut-off keeper noticed dead after {fmt(noticed)}")
    checks.expect(rejoined is not None, "the keeper did not rejoin within 30 s of the network coming back")
    checks.expect(goal is not None, f"goal not reached within {GOAL_BOUND:g} s of the restore")
    report_workload(report, checks, result)
    check_settled(cluster, report, checks, 4, "after the restore")
    verify(cluster, report, checks, result, "after the cut")
    report.add("ERROR lines in logs", len(log_problems(cluster)))
    checks.done()


# --- (d) ------------------------------------------------------------------------------------------

MASTER_DOWN_SECONDS = 2.0


def test_kill_master_mid_write(make_cluster: MakeCluster, report: ScenarioReport) -> None:
    """kill -9 the master while uploads are in flight and restart it: acknowledged files survive,
    clients wait and go on, keepers re-register and the replicas are at the goal again."""
    cluster = make_cluster(keepers=3)
    checks = Checks(cluster)
    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address).start()
        load.wait_acked(WARMUP_FILES, 30)
        deadline = time.monotonic() + 5
        while load.uploads_in_flight() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        in_flight = load.uploads_in_flight()
        acked_before = load.acked_count()
        fault = cluster.kill_master()
        time.sleep(MASTER_DOWN_SECONDS)
        restarted = time.monotonic()
        cluster.start_master()
        answering = monitor.wait_for(lambda s: s.up, restarted, 30)
        registered = monitor.wait_for(lambda s: s.alive_count() == 3, restarted, 30)
        goal = monitor.wait_for(back_at_goal(3), restarted, GOAL_BOUND)
        run_on(load, restarted + 6)
        result = load.stop(OP_BOUND)
    report.add("fault", f"kill -9 master with {in_flight} uploads in flight, restarted {MASTER_DOWN_SECONDS:g} s later")
    report.add("kill -> restarted master answers", fmt(None if answering is None else answering + restarted - fault))
    report.add("restart -> all 3 keepers registered", fmt(registered))
    report.add("restart -> every chunk at goal", fmt(goal))
    if registered is not None:
        # Chunks written while only some keepers had re-registered got shorter pipelines.
        report_repair(report, monitor, restarted + registered, None if goal is None else restarted + goal)
    report.add("uploads acknowledged before / after the kill", f"{acked_before} / {len(result.acked) - acked_before}")
    checks.expect(in_flight > 0, "no upload was in flight when the master was killed")
    checks.expect(registered is not None, "keepers did not all re-register within 30 s")
    checks.expect(goal is not None, f"goal not reached within {GOAL_BOUND:g} s of the restart")
    checks.expect(len(result.acked) > acked_before, "no upload succeeded after the master came back")
    report_workload(report, checks, result)
    check_settled(cluster, report, checks, 3, "after the master restart")
    verify(cluster, report, checks, result, "master restarted")
    report.add("ERROR lines in logs", len(log_problems(cluster)))
    checks.done()


# --- (e) ------------------------------------------------------------------------------------------

DEGRADED_SECONDS = 15.0


def test_slow_lossy_keeper_link(make_cluster: MakeCluster, report: ScenarioReport) -> None:
    """One keeper of 3 on a slow lossy link: operations stay bounded, nothing is lost, and the
    keeper is not declared dead over and over (no flapping)."""
    cluster = make_cluster(keepers=3)
    checks = Checks(cluster)
    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address).start()
        load.wait_acked(WARMUP_FILES, 30)
        victim = busiest_keepers(cluster)[0]
        address = cluster.keeper_address(victim)
        fault = time.monotonic()
        applied = cluster.degrade(victim, delay_ms=50, loss=0.05, rate_mbit=40)
        run_on(load, fault + DEGRADED_SECONDS)
        drops = cluster.drops(victim)
        healed = cluster.restore(victim)
        flaps = monitor.transitions(address, fault)
        noticed = monitor.first(is_dead(address), fault)
        goal = monitor.wait_for(back_at_goal(3), healed, GOAL_BOUND)
        run_on(load, healed + 3)
        during = load.ops_started_between(fault, healed)
        result = load.stop(OP_BOUND)
    report.add("fault", f"keeper {victim} of 3: {applied}, for {DEGRADED_SECONDS:g} s")
    report.add("packets dropped on its link", drops)
    report.add("times declared dead (flaps)", flaps)
    report.add("fault -> first declared dead", "never" if noticed is None else f"{noticed.t - fault:.2f} s")
    report.add("ops while degraded (failed)", f"{len(during)} ({sum(1 for op in during if op.error)})")
    report.add("max op duration while degraded", f"{max((op.duration for op in during), default=0):.2f} s")
    report.add("restore -> every chunk at goal", fmt(goal))
    report.add("keeper warnings while degraded", len(log_lines(cluster, r"unreachable|WARNING", 100)))
    checks.expect(goal is not None, f"goal not reached within {GOAL_BOUND:g} s of the restore")
    report_workload(report, checks, result)
    check_settled(cluster, report, checks, 3, "after the restore")
    verify(cluster, report, checks, result, "after the lossy link")
    report.add("ERROR lines in logs", len(log_problems(cluster)))
    checks.done()
