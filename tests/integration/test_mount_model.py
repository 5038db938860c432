"""Randomized: the same operations on the mount and on a local folder must give the same results.

A hypothesis state machine (as JuiceFS tests itself) creates, writes, truncates, renames, links,
removes and reads files and folders in both trees, compares every result (data or errno), and
after every step compares the two trees entry by entry. The cluster uses 1 MiB chunks so that
writes and truncates cross chunk boundaries often.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from fusedfs.local import LocalCluster
from tests.integration.conftest import MakeCluster

MiB = 1 << 20
# Few names, so that operations keep meeting the same files and folders.
PATHS = st.sampled_from(["a", "b", "d", "d/a"])
OFFSETS = st.sampled_from([0, 1, 4095, MiB - 3, MiB, 2 * MiB + 17, 3 * MiB])
DATA = st.builds(lambda seed, n: bytes([seed]) * n, st.integers(1, 255), st.sampled_from([1, 100, 5000, MiB + 5]))


def outcome(action: Callable[[], Any]) -> Any:
    try:
        return ("ok", action())
    except OSError as e:
        return ("error", errno.errorcode.get(e.errno or 0, e.errno))


def write_at(path: Path, offset: int, data: bytes) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        return os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def append(path: Path, data: bytes) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def snapshot(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every entry under root: kind, size, link count and content hash (for folders: entry count)."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st_ = path.lstat()
            kind = "dir" if path.is_dir() else "file"
            if kind == "dir":
                entries[str(path.relative_to(root))] = (kind, len(os.listdir(path)), 0, "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[str(path.relative_to(root))] = (kind, st_.st_size, st_.st_nlink, digest)
    return entries


@pytest.fixture
def model_cluster(make_cluster: MakeCluster, tmp_path: Path) -> Iterator[tuple[LocalCluster, Path]]:
    cluster = make_cluster(master_args=["--chunk-size", "1"])
    yield cluster, cluster.mount(tmp_path / "mnt")
    cluster.stop()


def test_mount_behaves_like_a_local_folder(model_cluster: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    _, mnt = model_cluster
    runs = iter(range(10**6))

    class SameAsLocal(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            n = next(runs)
            self.roots = (mnt / f"run{n}", tmp_path / "local" / f"run{n}")
            for root in self.roots:
                root.mkdir(parents=True)

        def both(self, action: Callable[[Path], Any]) -> None:
            results = [outcome(functools.partial(action, root)) for root in self.roots]
            assert results[0] == results[1], results

        @rule(path=PATHS, offset=OFFSETS, data=DATA)
        def write(self, path: str, offset: int, data: bytes) -> None:
            self.both(lambda root: write_at(root / path, offset, data))

        @rule(path=PATHS, data=DATA)
        def append(self, path: str, data: bytes) -> None:
            self.both(lambda root: append(root / path, data))

        @rule(path=PATHS, size=OFFSETS)
        def truncate(self, path: str, size: int) -> None:
            self.both(lambda root: os.truncate(root / path, size))

        @rule(path=PATHS)
        def read(self, path: str) -> None:
            self.both(lambda root: (root / path).read_bytes())

        @rule(path=PATHS)
        def mkdir(self, path: str) -> None:
            self.both(lambda root: (root / path).mkdir())

        @rule(path=PATHS)
        def rmdir(self, path: str) -> None:
            self.both(lambda root: (root / path).rmdir())

        @rule(path=PATHS)
        def unlink(self, path: str) -> None:
            self.both(lambda root: (root / path).unlink())

        @rule(src=PATHS, dst=PATHS)
        def rename(self, src: str, dst: str) -> None:
            self.both(lambda root: os.rename(root / src, root / dst))

        @rule(src=PATHS, dst=PATHS)
        def link(self, src: str, dst: str) -> None:
            self.both(lambda root: os.link(root / src, root / dst))

        @invariant()
        def same_tree(self) -> None:
            assert snapshot(self.roots[0]) == snapshot(self.roots[1])

        def teardown(self) -> None:
            for root in self.roots:
                shutil.rmtree(root, ignore_errors=True)

    run_state_machine_as_test(
        SameAsLocal,
        # No shrinking: every step runs against real processes, so shrinking a failure would take
        # many minutes; the failing steps hypothesis prints are few enough to read as they are.
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
        ),
    )
