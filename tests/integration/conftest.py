"""Fixtures that run real master and keeper processes on loopback, always stopped afterwards."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
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


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
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


def run_cli(*args: str, timeout: float = 300, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Runs the real `fusedfs` command."""
    return subprocess.run([sys.executable, "-m", "fusedfs", *args], capture_output=True, timeout=timeout, input=stdin)
