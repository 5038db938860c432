"""Fixtures for the chaos tests: clusters in network namespaces, always torn down, and a report.

Used by test_faults.py (tests/chaos/netns.py, tests/chaos/workload.py). Needs root and iproute2
(`ip`, `tc`): skipped without them on a developer's machine, failed in CI (CI=true), which must
run them. Every scenario's figures are printed at the end of the run
(pytest's terminal summary), whether it passed or not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.netns import NetnsCluster, cleanup_stale, netns_supported

# As the integration tests: a short garbage grace and frequent metadata copies; 1 MiB chunks so
# modest files span several chunks and keepers; everything else (dead after 3 s, goal 3, repair
# jobs) as in production.
CHAOS_MASTER_ARGS = ["--gc-grace", "2", "--metadata-copies-every", "1", "--chunk-size", "1"]
CHAOS_KEEPER_ARGS = ["--reserve", "0"]

MakeCluster = Callable[..., NetnsCluster]
REPORTS: list[tuple[str, list[tuple[str, str]]]] = []
_GUARDED: list[NetnsCluster] = []


@pytest.fixture(scope="session")
def netns_env() -> Iterator[None]:
    reason = netns_supported()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"chaos tests need network namespaces, and CI must run them: {reason}")
        pytest.skip(f"chaos tests need network namespaces: {reason}")
    removed = cleanup_stale()
    if removed:
        print(f"\nchaos: removed leftovers of an earlier run: {', '.join(removed)}")
    yield
    # Guard routes stay until here: until the process ends, a stray channel must not leave by the
    # default route. Then everything of this process that is left goes too.
    for cluster in _GUARDED:
        cluster.remove_guard_route()
    cleanup_stale(only_pid=os.getpid())


@pytest.fixture
def make_cluster(netns_env: None, tmp_path: Path) -> Iterator[MakeCluster]:
    """Makes NetnsClusters (started unless start=False); all are torn down after the test: their
    mounts unmounted (lazily and by force if need be), processes killed, keeper tmpfs unmounted."""
    clusters: list[NetnsCluster] = []

    def make(
        keepers: int = 3,
        master_args: list[str] | None = None,
        start: bool = True,
        keeper_args: list[str] | None = None,
    ) -> NetnsCluster:
        cluster = NetnsCluster(
            tmp_path / f"cluster{len(clusters)}",
            keepers,
            master_args=CHAOS_MASTER_ARGS + (master_args or []),
            keeper_args=CHAOS_KEEPER_ARGS + (keeper_args or []),
        )
        clusters.append(cluster)
        _GUARDED.append(cluster)
        if start:
            cluster.start()
        return cluster

    yield make
    for cluster in clusters:
        cluster.close(remove_guard_route=False)


class ScenarioReport:
    """Figures of one scenario, printed in the run's summary."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[tuple[str, str]] = []
        REPORTS.append((name, self.lines))

    def add(self, key: str, value: object) -> None:
        if isinstance(value, float):
            value = f"{value:.2f} s"
        self.lines.append((key, str(value)))


@pytest.fixture
def report(request: pytest.FixtureRequest) -> ScenarioReport:
    return ScenarioReport(request.node.name)


def log_problems(cluster: NetnsCluster, limit: int = 8) -> list[str]:
    """ERROR lines and tracebacks in the cluster's process logs."""
    found: list[str] = []
    for path in sorted(cluster.log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if " ERROR " in line or line.startswith("Traceback"):
                found.append(f"{path.name}: {line.strip()[:200]}")
    return found[:limit]


def log_lines(cluster: NetnsCluster, pattern: str, limit: int = 10) -> list[str]:
    """Lines of the cluster's process logs matching a regular expression."""
    regex = re.compile(pattern)
    found: list[str] = []
    for path in sorted(cluster.log_dir.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()
        found += [f"{path.name}: {line[:220]}" for line in lines if regex.search(line)]
    return found[:limit]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    terminalreporter.section("chaos scenarios")
    for name, lines in REPORTS:
        terminalreporter.write_line(name)
        for key, value in lines:
            terminalreporter.write_line(f"    {key:<44} {value}")
