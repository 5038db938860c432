"""Faults under a running workload, on a cluster whose every process has its own network namespace.

Each scenario checks, after the fault: every acknowledged upload downloads byte-identical (no
acknowledged byte lost), the cluster gets back to the replication goal by itself within a bound,
and no client operation took longer than the client's wait (30 s). The figures (fault to the
master noticing, time back to goal, failed and hung operations, bytes lost) are printed in the
run's summary.

Scenarios: (a) kill -9 a keeper, (b) two, (c) cut one off, (d) kill -9 the master, (e) a slow
lossy link; (a) and (d) also write and read through a fusedfs mount. The disk faults: (f) a
keeper's disk fills up, (g) bit rot and chunk files vanishing under the scrubber, (h) a keeper
restarted over leftovers of interrupted writes, (i) a keeper's disk stops answering. Those also
audit the disks: every replica the master counts for an acknowledged file must be a whole chunk
file on that keeper's disk, and every chunk must have the goal's worth of them (the master's
"at goal" could hide a bad copy).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from fusedfs.chunkfile import KEEPER_ID_FILE
from fusedfs.chunks import MiB, crc32c
from fusedfs.client.files import FileClient
from fusedfs.client.master import MasterClient
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc
from fusedfs.rpc import master_pb2 as mp
from tests.chaos.chunkfiles import check_file, chunk_files, chunk_path, flip_bytes, write_truncated
from tests.chaos.conftest import MakeCluster, ScenarioReport, log_lines, log_problems
from tests.chaos.netns import NetnsCluster, is_mounted
from tests.chaos.workload import (
    CLIENT_WAIT,
    Acked,
    Sample,
    StatusMonitor,
    Workload,
    WorkloadResult,
    sha256,
    verify_acked,
)

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
    down = monitor.max_of(lambda s: s.reply.chunks.unavailable if s.reply else 0, noticed_at)
    lost = monitor.max_of(lambda s: s.reply.chunks.lost if s.reply else 0, noticed_at)
    report.add("max under-replicated / unavailable / lost chunks", f"{under} / {down} / {lost}")
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
    uploads, downloads = result.of_kind("upload"), result.of_kind("download")
    report.add("operations (uploads / downloads)", f"{len(uploads)} / {len(downloads)}")
    if result.of_kind("mount-write") or result.of_kind("mount-read"):
        writes, reads = result.of_kind("mount-write"), result.of_kind("mount-read")
        report.add(
            "  through the mount (writes / reads)",
            f"{len(writes)} / {len(reads)}, failed {sum(1 for op in writes + reads if op.error)}, "
            f"max {max((op.duration for op in writes + reads), default=0):.2f} s",
        )
    by_mount = [a for a in result.acked if a.via == "mount"]
    report.add(
        "acknowledged files",
        f"{len(result.acked)} ({sum(a.size for a in result.acked) / 2**20:.1f} MiB)"
        + (f", {len(by_mount)} written through the mount" if by_mount else ""),
    )
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


def start_mount(cluster: NetnsCluster) -> Path:
    """A `fusedfs mount` of the cluster in the root namespace (unmounted by the cluster's teardown)."""
    return cluster.mount(cluster.mountpoint())


def end_mount(cluster: NetnsCluster, report: ScenarioReport, checks: Checks, mountpoint: Path) -> None:
    """Checks the mount process survived the scenario, then unmounts it (fusermount3 -u)."""
    alive = cluster.mount_alive(mountpoint)
    how = cluster.unmount(mountpoint)
    report.add("mount process alive at the end / unmount", f"{alive} / {how}")
    checks.expect(alive, f"the mount process died during the scenario; see {cluster.log_dir}")
    checks.expect(not is_mounted(mountpoint), f"{mountpoint} is still mounted after unmounting")


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
            f"{c.over_replicated}, unavailable {c.unavailable}, lost {c.lost}, repairs {c.repairs_in_flight}",
        )


# --- (a) ------------------------------------------------------------------------------------------


def test_kill_keeper(make_cluster: MakeCluster, report: ScenarioReport) -> None:
    """kill -9 one keeper of 4: reads and writes go on (also through a mount), its chunks get back
    to 3 copies; it returns."""
    cluster = make_cluster(keepers=4)
    checks = Checks(cluster)
    mountpoint = start_mount(cluster)
    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address, mountpoint=mountpoint).start()
        load.wait_acked(WARMUP_FILES, 30)
        victim = busiest_keepers(cluster)[0]
        address = cluster.keeper_address(victim)
        fault = cluster.kill_keeper(victim)
        noticed = monitor.wait_for(is_dead(address), fault, NOTICE_BOUND + 10)
        goal = monitor.wait_for(lambda s: is_dead(address)(s) and back_at_goal(3)(s), fault, GOAL_BOUND)
        run_on(load, fault + 8)
        result = load.stop(OP_BOUND)
    end_mount(cluster, report, checks, mountpoint)
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
# A call to a cut-off keeper fails once gRPC's keepalive ping goes unanswered for 2 s; with the
# retry elsewhere, an operation should not stall much longer (it was 5.5 s with a 5 s timeout).
CUT_STALL_BOUND = 4.0


@pytest.mark.parametrize("mode", ["drop", "down"])
def test_cut_keeper_off_and_back(make_cluster: MakeCluster, report: ScenarioReport, mode: str) -> None:
    """A keeper of 4 loses the network for longer than the dead timeout, then comes back; no
    operation (client or mount) stalls for more than a few seconds meanwhile.

    "drop": a silent partition (every packet dropped, link up); "down": its link goes down.
    """
    cluster = make_cluster(keepers=4)
    checks = Checks(cluster)
    mountpoint = start_mount(cluster)
    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address, mountpoint=mountpoint).start()
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
    end_mount(cluster, report, checks, mountpoint)
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
    checks.expect(
        result.max_duration <= CUT_STALL_BOUND,
        f"an operation stalled {result.max_duration:.1f} s on the cut (bound {CUT_STALL_BOUND:g} s): "
        f"{result.slowest(3)}",
    )
    check_settled(cluster, report, checks, 4, "after the restore")
    verify(cluster, report, checks, result, "after the cut")
    report.add("ERROR lines in logs", len(log_problems(cluster)))
    checks.done()


# --- (d) ------------------------------------------------------------------------------------------

MASTER_DOWN_SECONDS = 2.0


def test_kill_master_mid_write(make_cluster: MakeCluster, report: ScenarioReport) -> None:
    """kill -9 the master while uploads are in flight (client and mount) and restart it: acknowledged
    files survive, clients and the mount wait and go on, keepers re-register and the replicas are at
    the goal again."""
    cluster = make_cluster(keepers=3)
    checks = Checks(cluster)
    mountpoint = start_mount(cluster)
    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address, mountpoint=mountpoint).start()
        load.wait_acked(WARMUP_FILES, 30)
        # Preferably with a write through the mount among those in flight.
        in_mount = load.wait_in_flight(5, ("mount-write",))
        in_flight = load.wait_in_flight(5)
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
    end_mount(cluster, report, checks, mountpoint)
    report.add(
        "fault",
        f"kill -9 master with {in_flight} uploads in flight ({in_mount} through the mount), "
        f"restarted {MASTER_DOWN_SECONDS:g} s later",
    )
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
    after = [a for a in result.acked[acked_before:] if a.via == "mount"]
    checks.expect(bool(after), "no write through the mount succeeded after the master came back")
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


SLOW_LINK_MBIT = 48  # 6 MiB/s into and out of each keeper: 1.5 MiB/s for each of 4 uploads
SLOW_COPY_MIB = 48


def test_mount_copies_over_slow_links(make_cluster: MakeCluster, report: ScenarioReport, tmp_path: Path) -> None:
    """A `cp` into a mount whose write-back cache holds a fraction of the file, every keeper on a
    slow link: room is made only as uploads end, each taking longer than --wait. The copy waits
    while bytes move (--wait bounds silences, not the length of a transfer) and comes out whole;
    so does reading it back through a fresh mount, still over the slow links."""
    cluster = make_cluster(keepers=3, master_args=["--chunk-size", "8"])  # (pieces of 1 MiB stream)
    checks = Checks(cluster)
    wait = 2.0
    args = ["--wait", f"{wait:g}", "--writeback-mib", "32"]
    mountpoint = cluster.mount(cluster.mountpoint(), args)
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(SLOW_COPY_MIB * MiB))
    applied = ""
    for i in range(3):
        applied = cluster.throttle(i, SLOW_LINK_MBIT)
    started = time.monotonic()
    copy = subprocess.run(["cp", str(source), str(mountpoint / "copy.bin")], capture_output=True, text=True)
    took = time.monotonic() - started
    cluster.unmount(mountpoint)
    mountpoint = cluster.mount(mountpoint, args)  # (nothing of the file in its caches)
    started = time.monotonic()
    back = subprocess.run(["cmp", str(source), str(mountpoint / "copy.bin")], capture_output=True, text=True)
    read_took = time.monotonic() - started
    for i in range(3):
        cluster.restore(i)
    end_mount(cluster, report, checks, mountpoint)
    report.add("fault", f"every keeper's link: {applied}; mount --wait {wait:g}, write-back 32 MiB, 8 MiB chunks")
    report.add(f"cp of {SLOW_COPY_MIB} MiB", f"{took:.1f} s, exit {copy.returncode} {copy.stderr.strip()[:150]}")
    report.add("read back (cmp)", f"{read_took:.1f} s, exit {back.returncode} {back.stdout.strip()[:100]}")
    checks.expect(copy.returncode == 0, f"cp failed after {took:.1f} s: {copy.stderr.strip()}")
    checks.expect(back.returncode == 0, f"read back: {back.stdout.strip()} {back.stderr.strip()}")
    # Each keeper takes in the whole file over its link: this long at least, so writers did wait.
    checks.expect(took > SLOW_COPY_MIB / (SLOW_LINK_MBIT / 8) * 0.8, f"cp took {took:.1f} s: the links were not slow")
    checks.done()


# --- what is on the disks -------------------------------------------------------------------------


def chunk_map(cluster: NetnsCluster, names: Iterable[str]) -> dict[str, mp.ChunkRef]:
    """The master's chunk refs (with the alive replicas it counts) of the named files, by chunk id."""
    client = MasterClient(cluster.master_address, wait=10)
    found: dict[str, mp.ChunkRef] = {}
    try:
        for name in names:
            attr = client.call("ResolvePath", mp.PathRequest(path=name))
            for ref in client.call("GetChunks", mp.GetChunksRequest(inode=attr.inode)).chunks:
                found[ref.chunk_id] = ref
    finally:
        client.pool.close()
    return found


@dataclass
class Audit:
    """The master's replica map of the acknowledged files checked against the keepers' disks."""

    chunks: int = 0
    replicas: int = 0
    bad: list[str] = field(default_factory=list)  # replicas the master counts whose file is not whole
    short: list[str] = field(default_factory=list)  # chunks with fewer whole counted replicas than the goal

    @property
    def clean(self) -> bool:
        return not self.bad and not self.short

    def summary(self) -> str:
        return f"{self.chunks} chunks, {self.replicas} replicas: {len(self.bad)} bad, {len(self.short)} below goal"


def audit(cluster: NetnsCluster, acked: list[Acked]) -> Audit:
    """The problems found twice, the second time with a fresh map: the balancer moves chunks
    all the time (a copy, then the trim of an old one), and a replica in the map may be
    trimmed before its file is checked (CI runs failed so). A real fault is found both times."""
    first = _audit_once(cluster, acked)
    if first.clean:
        return first
    second = _audit_once(cluster, acked)

    def key(problem: str) -> str:  # the chunk (and the keeper): what the problem is may change
        return problem.split(":")[0]

    second.bad = [p for p in second.bad if key(p) in {key(q) for q in first.bad}]
    second.short = [p for p in second.short if key(p) in {key(q) for q in first.short}]
    return second


def _audit_once(cluster: NetnsCluster, acked: list[Acked]) -> Audit:
    dirs = {k.address: cluster.keeper_dir(i) for i, k in enumerate(cluster.keepers)}
    result = Audit()
    for chunk_id, ref in chunk_map(cluster, (a.name for a in acked)).items():
        result.chunks += 1
        good = 0
        for replica in ref.replicas:
            result.replicas += 1
            check = check_file(chunk_path(dirs[replica.address], chunk_id), ref.crc32c, ref.stored_length)
            if check.ok:
                good += 1
            else:
                result.bad.append(f"{chunk_id} on {replica.address}: {check.why}")
        if good < GOAL:
            result.short.append(f"{chunk_id}: {good} whole of {len(ref.replicas)} counted")
    return result


def wait_audit_clean(cluster: NetnsCluster, acked: list[Acked], timeout: float) -> tuple[float | None, Audit]:
    """Seconds until the audit finds every counted replica whole and every chunk at the goal."""
    start = time.monotonic()
    while True:
        result = audit(cluster, acked)
        if result.clean:
            return time.monotonic() - start, result
        if time.monotonic() - start > timeout:
            return None, result
        time.sleep(0.5)


def check_audit(report: ScenarioReport, checks: Checks, result: Audit, took: float | None, what: str) -> None:
    report.add(f"disk audit ({what})", f"{result.summary()} ({fmt(took)})")
    for line in (result.bad + result.short)[:3]:
        report.add("  audit", line)
    checks.expect(
        result.clean,
        f"disk audit {what}: the master counts replicas that are not whole on disk, or chunks have fewer "
        f"than {GOAL} whole copies: {(result.bad + result.short)[:6]}",
    )


def keeper_status(sample: Sample, address: str) -> mp.KeeperStatus | None:
    if sample.reply is None:
        return None
    return next((k for k in sample.reply.keepers if k.address == address), None)


class LogCounter(logging.Handler):
    """Counts this process's log records (the client library's) that match a predicate."""

    def __init__(self, logger: str, match: Callable[[str], bool]) -> None:
        super().__init__(logging.INFO)
        self.logger = logging.getLogger(logger)
        self.match = match
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if self.match(text):
            self.lines.append(text)

    def __enter__(self) -> LogCounter:
        self._level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)


# --- (f) a keeper's disk fills up ------------------------------------------------------------------

SMALL_DISK_MIB = 40
BIG_DISK_MIB = 256
FULL_SECONDS = 10.0


def fill(path: Path, chunk: int = MiB) -> int:
    """Writes a ballast file until the file system is full (ENOSPC); returns its size."""
    size = 0
    block = memoryview(b"\xa5" * chunk)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                size += f.write(block[:chunk])
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if chunk <= 4096:
                    break
                chunk //= 16  # fill the last bytes in smaller writes
    return size


def fill_inodes(folder: Path) -> int:
    """Creates empty files in folder until the file system has no inode left; returns how many."""
    folder.mkdir()
    count = 0
    while True:
        try:
            (folder / f"{count:06d}").touch()
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            return count
        count += 1


DISK_FULL = [
    "space",
    "inodes",  # out of inodes is disk full too (was: gRPC UNKNOWN and a traceback)
]


@pytest.mark.parametrize("what", DISK_FULL)
def test_keeper_disk_fills_up(make_cluster: MakeCluster, report: ScenarioReport, what: str) -> None:
    """One keeper of 4 runs out of disk: writes go on to the other keepers or fail cleanly with
    ENOSPC, never hang, nothing acknowledged is lost, the goal holds without it, and once there is
    room again it takes chunks again.

    "space": its 40 MiB tmpfs fills with chunks, then another program's file takes the rest to the
    last byte; the master sees its free space fall at the next heartbeat.
    "inodes": its tmpfs runs out of inodes (another program's many small files) with bytes to spare:
    the free space the master weighs placement by says nothing, so writes keep being sent to it.

    Every keeper gets a tmpfs (the others 256 MiB): placement weighs keepers by free space, so
    beside disks with tens of GiB free a 40 MiB keeper would never be picked and never fill.
    Chunks of 4 MiB, so that writes also go down pipelines (1 MiB chunks go to all keepers at once).
    """
    cluster = make_cluster(keepers=4, start=False, master_args=["--chunk-size", "4"])
    cluster.mount_tmpfs(cluster.keeper_dir(0), f"{SMALL_DISK_MIB}m" + (",nr_inodes=2048" if what == "inodes" else ""))
    for i in range(1, 4):
        cluster.mount_tmpfs(cluster.keeper_dir(i), BIG_DISK_MIB)
    cluster.start()
    checks = Checks(cluster)
    small = cluster.keeper_address(0)
    ballast = cluster.keeper_dir(0) / "ballast"  # beside the keeper's folders: another program's files

    def refused(text: str) -> bool:  # the client's log of a write a keeper failed
        return f"write to {small} failed" in text or f"pipeline keeper {small} failed" in text

    def small_status(s: Sample) -> mp.KeeperStatus:
        k = keeper_status(s, small)
        return k if k is not None else mp.KeeperStatus(free_bytes=1 << 62)

    with StatusMonitor(cluster.master_address) as monitor, LogCounter("fusedfs.client.transfer", refused) as refusals:
        load = Workload(cluster.master_address).start()
        load.wait_acked(WARMUP_FILES, 30)
        run_on(load, time.monotonic() + 8)  # the keeper fills with chunks
        used_by_chunks = sum(p.stat().st_size for p in chunk_files(cluster.keeper_dir(0)).values())
        # ... then another program takes the rest.
        taken = f"{fill(ballast) / MiB:.1f} MiB ballast" if what == "space" else f"{fill_inodes(ballast)} empty files"
        fault = cluster._note(f"keeper 0 disk full: {taken}")
        noticed = monitor.wait_for(lambda s: small_status(s).free_bytes < MiB, fault, NOTICE_BOUND)
        goal_full = monitor.wait_for(back_at_goal(4), fault, GOAL_BOUND)
        run_on(load, fault + FULL_SECONDS)
        refused_while_full = list(refusals.lines)
        # (A write under way has a file there: a leftover is one still there long after.)
        partial = set((cluster.keeper_dir(0) / "tmp").iterdir())
        chunks_before = small_status(monitor.latest() or Sample(0, None)).chunks
        if what == "space":
            ballast.unlink()
        else:
            for path in ballast.iterdir():
                path.unlink()
            ballast.rmdir()
        freed = cluster._note("keeper 0 disk space freed")
        taking = monitor.wait_for(lambda s: small_status(s).chunks > chunks_before, freed, GOAL_BOUND)
        run_on(load, freed + 4)
        result = load.stop(OP_BOUND)
        leftovers = sorted(partial & set((cluster.keeper_dir(0) / "tmp").iterdir()))
        min_free = min((small_status(s).free_bytes for s in monitor.samples if s.t >= fault and s.reply), default=-1)
    report.add(
        "fault",
        f"keeper 0 of 4: {SMALL_DISK_MIB} MiB disk, {used_by_chunks / MiB:.1f} MiB of chunks, "
        f"then {taken} to ENOSPC for {FULL_SECONDS:g} s",
    )
    report.add("fault -> master sees < 1 MiB free", fmt(noticed))
    report.add("least free space the master saw", f"{min_free} bytes")
    codes = sorted({line.split("failed: ")[-1].split()[0] for line in refused_while_full})
    report.add("writes the full keeper failed (client log)", f"{len(refused_while_full)} {codes}")
    for line in refused_while_full[:2]:
        report.add("  failed", line[:150])
    report.add("fault -> every chunk at goal (while full)", fmt(goal_full))
    report.add("partial files left in its tmp/ (while full, and still after)", len(leftovers))
    report.add("space freed -> it stores chunks again", fmt(taking))
    not_enospc = [op for op in result.failed if "ENOSPC" not in op.error and f"FsError({errno.ENOSPC})" not in op.error]
    report.add("failed operations other than ENOSPC", len(not_enospc))
    if what == "space":
        checks.expect(noticed is not None, "the master never saw the keeper's disk full")
    checks.expect(goal_full is not None, f"the goal was not held with the keeper full ({GOAL_BOUND:g} s)")
    checks.expect(not leftovers, f"refused writes left partial files: {leftovers[:5]}")
    unclean = [line for line in refused_while_full if "RESOURCE_EXHAUSTED" not in line]
    checks.expect(not unclean, f"the full keeper refused writes otherwise than with ENOSPC: {unclean[:3]}")
    checks.expect(not not_enospc, f"writes failed otherwise than with ENOSPC: {[op.error for op in not_enospc[:3]]}")
    checks.expect(taking is not None, "the keeper did not store chunks again once it had room")
    cluster.check_running()  # the keeper survived its full disk
    report_workload(report, checks, result)
    check_settled(cluster, report, checks, 4, "after the space was freed")
    check_audit(report, checks, audit(cluster, result.acked), 0.0, "after the space was freed")
    verify(cluster, report, checks, result, "after the disk filled")
    report.add("ERROR lines in logs", len(log_problems(cluster)))
    for line in log_problems(cluster, 2):
        report.add("  ERROR", line[:150])
    checks.done()


# --- (g) bit rot and vanished chunk files -----------------------------------------------------------

ROT_FILES = 4  # chunk files damaged of each kind on each of two keepers


def test_bit_rot_found_by_scrub(make_cluster: MakeCluster, report: ScenarioReport) -> None:
    """Bytes flip in some chunk files and others vanish behind the keepers' backs (two keepers of
    3, never two replicas of one chunk): the scrubbers (a pass every 2 s) find them, the master
    copies good replicas back, readers never get a wrong byte, and every acknowledged file reads
    back identical."""
    cluster = make_cluster(keepers=3, keeper_args=["--scrub-interval", "2"])
    checks = Checks(cluster)
    rng = random.Random()
    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address).start()
        load.wait_acked(WARMUP_FILES * 2, 30)
        first, second = busiest_keepers(cluster)[:2]
        # A file per keeper that no reader reads: damage to it only the scrub can find.
        cold = [upload_cold(cluster, cluster.keeper_address(i), f"/cold/k{i}-") for i in (first, second)]
        refs = chunk_map(cluster, (a.name for a in list(load.acked)))
        damaged: dict[int, dict[str, str]] = {first: {}, second: {}}  # keeper -> chunk -> what
        taken: set[str] = {chunk_id for _, chunk_id in cold}
        for (_, chunk_id), index, kind in zip(cold, (first, second), ("flip", "delete"), strict=True):
            path = chunk_path(cluster.keeper_dir(index), chunk_id)
            if kind == "flip":
                flip_bytes(path, rng)
            else:
                path.unlink()
            damaged[index][chunk_id] = f"{kind} (cold)"
        for index, kinds in ((first, ["flip"] * ROT_FILES + ["delete"]), (second, ["delete"] * ROT_FILES + ["flip"])):
            address = cluster.keeper_address(index)
            on_disk = chunk_files(cluster.keeper_dir(index))
            held = [
                c
                for c, ref in refs.items()
                if c in on_disk and c not in taken and any(r.address == address for r in ref.replicas)
            ]
            for chunk_id, kind in zip(rng.sample(held, min(len(held), len(kinds))), kinds, strict=False):
                taken.add(chunk_id)
                if kind == "flip":
                    flip_bytes(on_disk[chunk_id], rng)
                else:
                    on_disk[chunk_id].unlink()
                damaged[index][chunk_id] = kind
        fault = cluster._note(f"damaged chunk files: {damaged}")
        a1, a2 = cluster.keeper_address(first), cluster.keeper_address(second)

        def scrub_bad(address: str) -> Callable[[Sample], bool]:
            return lambda s: (k := keeper_status(s, address)) is not None and k.scrub_bad > 0

        noticed1 = monitor.wait_for(scrub_bad(a1), fault, 20)
        noticed2 = monitor.wait_for(scrub_bad(a2), fault, 20)
        cold_files = [acked for acked, _ in cold]
        repaired, found = wait_audit_clean(cluster, list(load.acked) + cold_files, GOAL_BOUND)
        run_on(load, fault + 6)
        result = load.stop(OP_BOUND)
    final = cluster.status()
    scrub = {k.address: (k.scrub_checked, k.scrub_bad) for k in final.keepers}
    report.add(
        "fault",
        f"keeper {first}: {ROT_FILES + 1} chunk files with flipped bytes (1 of a file no reader reads) + 1 "
        f"deleted; keeper {second}: {ROT_FILES + 1} deleted (1 cold) + 1 flipped (scrub pass every 2 s)",
    )
    report.add(f"fault -> keeper {first} reports scrub_bad > 0", fmt(noticed1))
    report.add(f"fault -> keeper {second} reports scrub_bad > 0", fmt(noticed2))
    for index in (first, second):
        checked, bad = scrub[cluster.keeper_address(index)]
        report.add(f"keeper {index} scrub checked / bad (damaged)", f"{checked} / {bad} ({len(damaged[index])})")
    found_by_reads = log_lines(cluster, r"this copy is set aside", 100)
    report.add("damage found by reads (not the scrub)", len([x for x in found_by_reads if "scrub:" not in x]))
    report.add("fault -> every counted replica whole, at goal", fmt(repaired))
    report_repair(report, monitor, fault, None if repaired is None else fault + repaired)
    checks.expect(all(len(d) == ROT_FILES + 2 for d in damaged.values()), f"could not damage enough: {damaged}")
    checks.expect(noticed1 is not None, f"keeper {first}'s scrub_bad never rose above 0")
    checks.expect(noticed2 is not None, f"keeper {second}'s scrub_bad never rose above 0")
    check_audit(report, checks, found, repaired, "after the damage")
    report_workload(report, checks, result)
    check_settled(cluster, report, checks, 3, "after the repair")
    verify(cluster, report, checks, result, "after bit rot")
    lost_cold = verify_acked(cluster.master_address, cold_files)
    checks.expect(not lost_cold, f"files no reader read were lost or changed: {lost_cold}")
    report.add("ERROR lines in logs", len(log_problems(cluster)))
    checks.done()


# --- (i) a keeper's disk stops answering -----------------------------------------------------------

DISK_TIMEOUT = 15.0  # the keepers' --disk-timeout here (60 s by default), to keep the scenario short
STALL_NOTICE_BOUND = 9.0  # the keeper's 5 s, its probe's second, a heartbeat, the monitor's polling
SLOW = 3.0  # an operation slower than this was held up by the fault
# A write that met the keeper before it knew: 2 s after the other keepers' answers (a small chunk),
# or the keeper's 5 s before it gives up a streamed write on its disk (a pipeline), and a retry.
HELD_UP_BOUND = 10.0


def test_keeper_disk_stops_answering(make_cluster: MakeCluster, report: ScenarioReport) -> None:
    """A keeper's disk stops answering while its process runs on and heartbeats (its file system
    frozen: every write and fsync waits), as a failing disk or controller often does. The keeper
    notices within seconds and says so; the master places no new chunks on it, writes that met it
    go elsewhere within seconds (they waited 60 s each before); after --disk-timeout it leaves the
    cluster and its chunks are copied back to the goal; once the disk answers it rejoins, and
    nothing acknowledged is lost.

    Every keeper's data dir is an ext4 image of the same size (a tmpfs cannot be frozen), so that
    placement treats them alike.
    """
    cluster = make_cluster(keepers=4, start=False, keeper_args=["--disk-timeout", f"{DISK_TIMEOUT:g}"])
    for i in range(4):
        cluster.mount_disk_image(cluster.keeper_dir(i), 1024)
    cluster.start()
    checks = Checks(cluster)
    mountpoint = start_mount(cluster)

    def stalled(address: str) -> Callable[[Sample], bool]:
        def check(s: Sample) -> bool:
            k = keeper_status(s, address)
            return k is not None and k.alive and k.disk_stalled_seconds > 0

        return check

    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address, mountpoint=mountpoint).start()
        load.wait_acked(WARMUP_FILES, 30)
        victim = busiest_keepers(cluster)[0]
        address = cluster.keeper_address(victim)
        fault = cluster.freeze(cluster.keeper_dir(victim))
        noticed = monitor.wait_for(stalled(address), fault, STALL_NOTICE_BOUND + 5)
        left = monitor.wait_for(is_dead(address), fault, DISK_TIMEOUT + NOTICE_BOUND + 10)
        goal = monitor.wait_for(lambda s: is_dead(address)(s) and back_at_goal(3)(s), fault, DISK_TIMEOUT + GOAL_BOUND)
        run_on(load, fault + DISK_TIMEOUT + 10)
        thawed = cluster.thaw(cluster.keeper_dir(victim))
        rejoined = monitor.wait_for(lambda s: s.alive(address) is True, thawed, 15)
        run_on(load, thawed + 6)
        result = load.stop(OP_BOUND)
    end_mount(cluster, report, checks, mountpoint)
    known_at = fault + (noticed if noticed is not None else STALL_NOTICE_BOUND)
    before = [op for op in result.ops if fault - op.duration < op.start < known_at]  # under way or begun
    after = [op for op in result.ops if op.start >= known_at + 1]  # (a second for the master's answer)
    held_before, held_after = ([op for op in ops if op.duration > SLOW] for ops in (before, after))
    report.add("fault", f"froze keeper {victim}'s file system (of 4; --disk-timeout {DISK_TIMEOUT:g})")
    report.add("fault -> master hears its disk does not answer", fmt(noticed))
    report.add("fault -> it left the cluster (dead)", fmt(left))
    report.add("fault -> its chunks back at goal on 3", fmt(goal))
    report.add("thawed -> it rejoined", fmt(rejoined))
    report.add(
        f"operations over {SLOW:g} s, before / after the master knew",
        f"{len(held_before)} of {len(before)} (max {max((op.duration for op in before), default=0):.2f} s) / "
        f"{len(held_after)} of {len(after)}",
    )
    for op in (held_before + held_after)[:3]:
        report.add("  held up", f"{op.kind} {op.name} {op.duration:.1f} s {op.error[:100]}")
    checks.expect(noticed is not None and noticed <= STALL_NOTICE_BOUND, f"stalled disk noticed after {fmt(noticed)}")
    checks.expect(left is not None, f"the keeper did not leave the cluster after --disk-timeout {DISK_TIMEOUT:g} s")
    checks.expect(goal is not None, "its chunks did not get back to the goal on the other keepers")
    checks.expect(rejoined is not None, "the keeper did not rejoin once its disk answered")
    checks.expect(
        all(op.duration <= HELD_UP_BOUND for op in before),
        f"operations that met the disk before it was known took over {HELD_UP_BOUND:g} s: {held_before[:3]}",
    )
    checks.expect(not held_after, f"operations were held up after the master knew: {held_after[:3]}")
    report_workload(report, checks, result)
    check_settled(cluster, report, checks, 4, "after the disk answered again")
    check_audit(report, checks, audit(cluster, result.acked), 0.0, "after the disk answered again")
    verify(cluster, report, checks, result, "after the disk answered again")
    report.add("ERROR lines in logs", len(log_problems(cluster)))
    checks.done()


PIPELINE_CHUNK = 8 * MiB
GIVES_UP_BOUND = 9.0  # the keeper's 5 s (STALL_AFTER), and time for 8 MiB to cross two hops


def test_pipeline_meets_a_disk_that_stops_answering(make_cluster: MakeCluster, report: ScenarioReport) -> None:
    """A chunk streamed down a pipeline meets a keeper whose disk has just stopped answering
    (before the keeper has noticed, so the write is not refused at once). That keeper gives the
    write up within seconds and says it was its disk; the keepers upstream store their copies and
    name it in their answer. Before, every keeper upstream and the writer waited for the writer's
    timeout (18 s for 8 MiB: `close()` of a 64 MiB file took 18.5 s) and the writer blamed the
    first keeper, a sound one. The same when the hung keeper is the first of the pipeline."""
    cluster = make_cluster(keepers=3, start=False)
    cluster.mount_disk_image(cluster.keeper_dir(2), 256)  # the victim; the others on their tmpfs
    cluster.start()
    ids = [(cluster.keeper_dir(i) / KEEPER_ID_FILE).read_text().strip() for i in range(3)]
    refs = [cp.KeeperRef(keeper_id=ids[i], address=cluster.keeper_address(i)) for i in range(3)]
    channels = [grpc.insecure_channel(ref.address) for ref in refs]
    data = os.urandom(PIPELINE_CHUNK)

    def write(first: int, downstream: list[int], chunk_id: str) -> tuple[float, kp.WriteChunkReply | grpc.RpcError]:
        header = kp.WriteChunkHeader(
            chunk_id=chunk_id, length=len(data), crc32c=crc32c(data), downstream=[refs[i] for i in downstream]
        )
        messages = [kp.WriteChunkMessage(header=header, data=data[:MiB])]
        messages += [kp.WriteChunkMessage(data=data[start : start + MiB]) for start in range(MiB, len(data), MiB)]
        started = time.monotonic()
        try:
            answer: kp.WriteChunkReply | grpc.RpcError = keeper_pb2_grpc.KeeperStub(channels[first]).WriteChunk(
                iter(messages), timeout=60
            )
        except grpc.RpcError as e:
            answer = e
        return time.monotonic() - started, answer

    try:
        assert not isinstance(write(0, [1, 2], "7ffffffffffff100")[1], grpc.RpcError), "a write before the fault failed"
        cluster.freeze(cluster.keeper_dir(2))
        with ThreadPoolExecutor(2) as pool:  # both begun before the keeper can know (its probe takes 5 s)
            last = pool.submit(write, 0, [1, 2], "7ffffffffffff101")
            first = pool.submit(write, 2, [0, 1], "7ffffffffffff102")
            (last_took, last_answer), (first_took, first_answer) = last.result(), first.result()
    finally:
        for channel in channels:
            channel.close()
    report.add("hung keeper last of 3: answered after", f"{last_took:.2f} s: {short(last_answer)}")
    report.add("hung keeper first of 3: answered after", f"{first_took:.2f} s: {short(first_answer)}")
    assert isinstance(last_answer, kp.WriteChunkReply), last_answer
    assert list(last_answer.stored_on) == [refs[0].keeper_id, refs[1].keeper_id], last_answer
    assert [(f.keeper.keeper_id, f.code) for f in last_answer.failures] == [(refs[2].keeper_id, "UNAVAILABLE")]
    assert "disk has not answered" in last_answer.failures[0].message, last_answer
    assert isinstance(first_answer, grpc.RpcError) and first_answer.code() == grpc.StatusCode.UNAVAILABLE
    assert "disk has not answered" in (first_answer.details() or ""), first_answer
    assert last_took < GIVES_UP_BOUND and first_took < GIVES_UP_BOUND, (last_took, first_took)


def short(answer: kp.WriteChunkReply | grpc.RpcError) -> str:
    if isinstance(answer, grpc.RpcError):
        return f"{answer.code().name} {answer.details()}"
    return f"stored on {len(answer.stored_on)}, failed: " + ", ".join(f"{f.code} {f.message}" for f in answer.failures)


# --- (h) a keeper restarted over leftovers of interrupted writes -----------------------------------

NEVER_ISSUED = "7ffffffffffff07f"  # a valid chunk id far above the master's counter
COLD_NAME = "/cold/file"
ROOMY_DISK = "200g"  # a tmpfs this big (it only takes what is written) has the most free space

LEFTOVERS = [
    "interrupted-writes",
    "torn-chunk-files",  # (was: counted as replicas, so the master trimmed good copies instead)
    "stray-file-in-chunks",  # (was: the keeper did not start)
]


def wait_rejoined(cluster: NetnsCluster, index: int, log_from: int, timeout: float) -> float | None:
    """Seconds until restarted keeper `index` has registered (its log says so), None if it exited
    or did not within timeout."""
    start = time.monotonic()
    node = cluster.keepers[index]
    while time.monotonic() - start < timeout:
        if node.proc is None or node.proc.poll() is not None:
            return None
        with open(node.log_path, "rb") as f:
            f.seek(log_from)
            if b"registered with master" in f.read():
                return time.monotonic() - start
        time.sleep(0.05)
    return None


def upload_cold(cluster: NetnsCluster, holder: str, prefix: str = COLD_NAME) -> tuple[Acked, str]:
    """Uploads a file the workload's readers never read; returns it and one of its chunks on holder."""
    client = FileClient(MasterClient(cluster.master_address), short_circuit=False)
    try:
        for attempt in range(10):
            data = os.urandom(3 * MiB)
            name = f"{prefix}{attempt}"
            client.upload(io.BytesIO(data), name)
            for chunk_id, ref in chunk_map(cluster, [name]).items():
                if any(r.address == holder for r in ref.replicas):
                    return Acked(name, len(data), sha256(data), time.monotonic()), chunk_id
    finally:
        client.master.pool.close()
    raise AssertionError(f"no chunk of 10 cold files landed on {holder}")


@pytest.mark.parametrize("junk", LEFTOVERS)
def test_keeper_restart_with_leftovers(make_cluster: MakeCluster, report: ScenarioReport, junk: str) -> None:
    """kill -9 a keeper of 4 while it receives chunks, leave junk in its folder, restart it on the
    same folder once the master has re-replicated its chunks: it comes back, no junk is served or
    counted as a replica, the goal is restored and the extra replicas it brings back are trimmed.

    "interrupted-writes": what a crash mid-write leaves: the chunk it was receiving torn under its
    final name (as a disk that reorders writes could leave it) beside its partial file in tmp/, a
    file under an id the master never issued, files with non-chunk names in a fan-out folder.
    "torn-chunk-files": truncated files under the ids of live chunks, one it held (of a file no
    reader touches) and three it never stored (pipeline writes cut short); its folder is a roomy
    tmpfs, so that it is never the fullest keeper the master trims extra replicas from.
    "stray-file-in-chunks": a plain file directly in chunks/ (an operator's note).
    """
    cluster = make_cluster(keepers=4, start=False)
    victim = 0
    if junk == "torn-chunk-files":
        cluster.mount_tmpfs(cluster.keeper_dir(victim), ROOMY_DISK)
    cluster.start()
    checks = Checks(cluster)
    cold: list[Acked] = []
    torn: list[str] = []
    planted: list[Path] = []
    address = cluster.keeper_address(victim)
    folder = cluster.keeper_dir(victim)
    with StatusMonitor(cluster.master_address) as monitor:
        load = Workload(cluster.master_address).start()
        load.wait_acked(WARMUP_FILES, 30)
        if junk == "torn-chunk-files":
            acked, own = upload_cold(cluster, address)
            cold, torn = [acked], [own]
        deadline = time.monotonic() + 5
        while not any((folder / "tmp").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.001)  # a chunk being written to it right now
        fault = cluster.kill_keeper(victim)
        natural = sorted(p.name for p in (folder / "tmp").iterdir())
        noticed = monitor.wait_for(is_dead(address), fault, NOTICE_BOUND + 10)
        repaired = monitor.wait_for(lambda s: is_dead(address)(s) and back_at_goal(3)(s), fault, GOAL_BOUND)
        if junk == "interrupted-writes":
            in_flight = [name.split(".")[0] for name in natural]
            for chunk_id in in_flight:  # the write it was receiving, torn under its final name
                source = folder / "tmp" / next(n for n in natural if n.startswith(chunk_id))
                path = chunk_path(folder, chunk_id)
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(source.read_bytes()[: max(1, source.stat().st_size // 2)])
                torn.append(chunk_id)
            some = chunk_path(folder, next(iter(chunk_files(folder))))  # beside a real chunk file
            chunk_path(folder, NEVER_ISSUED).parent.mkdir(exist_ok=True)
            chunk_path(folder, NEVER_ISSUED).write_bytes(os.urandom(5000))
            planted = [
                folder / "tmp" / f"{some.name}.deadbeef",
                some.with_name("notes.txt"),
                some.with_name(f"{some.name}.partial"),
            ]
            planted[0].write_bytes(os.urandom(300_000))
            for path in planted[1:]:
                path.write_bytes(b"not a chunk\n")
        elif junk == "torn-chunk-files":
            write_truncated(chunk_path(folder, torn[0]), chunk_path(folder, torn[0]), keep=0.5)
            refs = chunk_map(cluster, (a.name for a in list(load.acked)))
            others = {k.address: cluster.keeper_dir(i) for i, k in enumerate(cluster.keepers) if i != victim}
            held = chunk_files(folder)
            for chunk_id in random.sample([c for c, r in refs.items() if r.replicas and c not in held], 3):
                source = chunk_path(others[refs[chunk_id].replicas[0].address], chunk_id)
                write_truncated(source, chunk_path(folder, chunk_id), keep=random.uniform(0.1, 0.9))
                torn.append(chunk_id)
        else:
            planted = [folder / "chunks" / "README"]
            planted[0].write_text("a note an operator left\n")
        cluster._note(f"planted junk ({junk}): torn {torn}, {[p.name for p in planted]}")
        log_from = cluster.keepers[victim].log_path.stat().st_size
        back = time.monotonic()
        cluster.start_keeper(victim)
        rejoined = wait_rejoined(cluster, victim, log_from, 20)
        goal = monitor.wait_for(back_at_goal(4), back, GOAL_BOUND) if rejoined is not None else None
        run_on(load, back + 6)
        result = load.stop(OP_BOUND)
    report.add("fault", f"kill -9 keeper {victim} of 4 while writing to it (tmp/ held {natural})")
    report.add("fault -> master noticed keeper dead", fmt(noticed))
    report.add("fault -> its chunks back at goal on 3", fmt(repaired))
    report.add("junk planted", f"torn chunk files {torn}, other files {[p.name for p in planted]}")
    report.add("restart -> keeper registered again", fmt(rejoined))
    report.add("restart -> every chunk at goal", fmt(goal))
    checks.expect(noticed is not None, "the killed keeper was not noticed dead")
    checks.expect(repaired is not None, f"its chunks were not back at the goal within {GOAL_BOUND:g} s")
    if rejoined is None:
        tail = cluster.keepers[victim].log_path.read_text(errors="replace").strip().splitlines()[-1:]
        report.add("  keeper log, last line", tail[0][:150] if tail else "")
    checks.expect(rejoined is not None, "the keeper did not come back after its restart")
    checks.expect(goal is not None, f"goal not reached within {GOAL_BOUND:g} s of the restart")
    report_workload(report, checks, result)
    if rejoined is None:
        verify(cluster, report, checks, result, "without the keeper")
        checks.done()
    check_settled(cluster, report, checks, 4, "after the restart")
    # What became of the junk: none of it may count as a replica or be read.
    refs = chunk_map(cluster, (a.name for a in result.acked + cold))
    counted = [c for c in torn if c in refs and any(r.address == address for r in refs[c].replicas)]
    on_disk = [c for c in torn if chunk_path(folder, c).exists()]
    report.add("torn files still on disk / counted as its replicas", f"{len(on_disk)} / {len(counted)}")
    left_tmp = sorted(p.name for p in (folder / "tmp").iterdir())
    report.add("tmp/ after the restart", left_tmp)
    checks.expect(not left_tmp, f"tmp/ was not emptied at start: {left_tmp}")
    if junk == "interrupted-writes":
        left = [p.name for p in planted if p.exists()]
        never = chunk_path(folder, NEVER_ISSUED).exists()
        report.add("odd names left / never-issued id still on disk", f"{left} / {never}")
        checks.expect(not left, f"files with non-chunk names were left: {left}")
    check_audit(report, checks, audit(cluster, result.acked + cold), 0.0, "after the restart")
    verify(cluster, report, checks, result, "after the restart over junk")
    if cold:
        bad = verify_acked(cluster.master_address, cold)
        checks.expect(not bad, f"{cold[0].name} lost or changed: {bad}")
    report.add("ERROR lines in logs", len(log_problems(cluster)))
    checks.done()
