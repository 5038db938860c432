"""Fixtures that run real master and keeper processes on loopback, always stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from fusedfs.client.files import FileClient
from fusedfs.client.master import MasterClient
from fusedfs.local import LocalCluster

# Short garbage grace, and a metadata copy every second (garbage goes only once a copy shows
# it unreferenced), so tests see collection happen; everything else as in production.
TEST_MASTER_ARGS = ["--gc-grace", "1", "--metadata-copies-every", "1"]
TEST_KEEPER_ARGS = ["--reserve", "0"]

MakeCluster = Callable[..., LocalCluster]
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


@contextlib.contextmanager
def stopped(procs: list[subprocess.Popen[bytes] | None]) -> Iterator[None]:
    """The processes stopped within (SIGSTOP: no answer and no reset, as a machine cut off or a
    process stalled), and going on again after it, whatever happens."""
    held = [p for p in procs if p is not None]
    for proc in held:
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for proc in held:
            os.kill(proc.pid, signal.SIGCONT)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Polls condition until true; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test using this fixture has failed (asked in the fixture's teardown)."""
    return any(r.failed for r in request.node.stash.get(PHASE_REPORTS, {}).values())


def show_logs(cluster: LocalCluster, lines: int = 400) -> None:
    """Prints the end of every log of the cluster, after its processes wrote their threads'
    stacks there: what a failed test shows of the processes it ran."""
    cluster.dump_threads()
    time.sleep(0.5)
    # The mounts' and the master's first: CI shows the start of a failure's output, and the
    # keepers' (with their threads' stacks) take most of it.
    logs = sorted((cluster.data_dir / "logs").glob("*.log"), key=lambda p: (p.name.startswith("keeper"), p.name))
    for log in logs:
        print(f"----- {log} (last {lines} lines)")
        print("\n".join(log.read_text(errors="replace").splitlines()[-lines:]))


@pytest.fixture
def make_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MakeCluster]:
    clusters: list[LocalCluster] = []

    def make(
        keepers: int = 3,
        master_args: list[str] | None = None,
        start: bool = True,
        keeper_args: list[str] | None = None,
    ) -> LocalCluster:
        cluster = LocalCluster(
            tmp_path / f"cluster{len(clusters)}",
            keepers,
            master_args=TEST_MASTER_ARGS + (master_args or []),
            keeper_args=TEST_KEEPER_ARGS + (keeper_args or []),
        )
        clusters.append(cluster)
        if start:
            cluster.start()
        return cluster

    yield make
    for cluster in clusters:
        if failed(request):
            show_logs(cluster)
        cluster.stop()


SmallDisk = Callable[[Path, int], Path]


@pytest.fixture
def small_disk() -> Iterator[SmallDisk]:
    """Mounts a tmpfs of the given size at a folder (a keeper's disk that fills up); unmounted after."""
    mounted: list[Path] = []

    def make(path: Path, mib: int) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def cluster(make_cluster: MakeCluster) -> LocalCluster:
    return make_cluster()


@pytest.fixture
def files(cluster: LocalCluster) -> Iterator[FileClient]:
    client = FileClient(MasterClient(cluster.master_address, wait=20))
    yield client
    client.master.pool.close()


def run_cli(
    *args: str, timeout: float = 300, stdin: bytes | None = None, dump_after: float | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Runs the real `fusedfs` command (killed after timeout seconds). If it runs longer than
    dump_after seconds, it writes its threads' stacks to its stderr, once, and goes on."""
    command = [sys.executable, "-m", "fusedfs", *args]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            try:
                stdout, stderr = proc.communicate(stdin, timeout=min(timeout, dump_after or timeout))
            except subprocess.TimeoutExpired:
                if dump_after is None or dump_after >= timeout:
                    raise
                proc.send_signal(signal.SIGUSR1)
                stdout, stderr = proc.communicate(timeout=timeout - dump_after)
        except BaseException:
            proc.kill()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
