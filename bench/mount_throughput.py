#!/usr/bin/env python3
"""File-system figures through a mounted directory, the way programs see it.

Without --dir it starts a cluster (master + 3 keepers, goal 3, loopback), mounts it and measures
the mount; with --dir it measures any directory (another file system, for comparison). "Cold"
reads use a fresh mount (fusedfs) after dropping the kernel's caches. Beside each figure of a
fusedfs mount: the mount's peak memory, and the CPU time the mount, the master and the keepers
(together) used per file, MiB or operation: on a machine of few cores, what bounds the rates.

Run: python bench/mount_throughput.py [--dir DIR] [--size-mib 1024] [--small-files 2000] [--mount-arg ARG]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from procstat import cpu_seconds, peak_rss_mib

from fusedfs.local import LocalCluster

MiB = 1 << 20
BLOCK = MiB


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("(could not drop the kernel's caches: run as root for cold figures)", file=sys.stderr)


class Target:
    """The directory under test; `cold()` makes the next reads come from the storage."""

    def __init__(self, directory: Path | None, work: Path, mount_args: list[str]) -> None:
        self.cluster: LocalCluster | None = None
        self.peak_rss = 0.0  # of every mount process so far
        self.mount_args = mount_args
        if directory is None:
            self.cluster = LocalCluster(work / "cluster", keepers=3).start()
            self.mountpoint = work / "mnt"
            self.dir = self.cluster.mount(self.mountpoint, mount_args)
        else:
            self.dir = Path(tempfile.mkdtemp(prefix="fusedfs-bench-", dir=directory))

    def cold(self) -> None:
        if self.cluster is not None:  # the mount's own chunk cache goes with a remount
            self.peak_rss = max(self.peak_rss, self.mount_rss_mib() or 0.0)
            self.cluster.unmount(self.mountpoint)
            drop_caches()
            self.cluster.mount(self.mountpoint, self.mount_args)
        else:
            drop_caches()

    def mount_rss_mib(self) -> float | None:
        if self.cluster is None:
            return None
        return peak_rss_mib(self.cluster.mounts[self.mountpoint].pid)

    def cpu_used(self) -> dict[str, float]:
        """CPU seconds each part of the cluster under test has used so far (none for --dir)."""
        if self.cluster is None:
            return {}
        parts: dict[str, Sequence[subprocess.Popen[bytes] | None]] = {
            "mount": [self.cluster.mounts[self.mountpoint]],
            "master": [self.cluster.master_proc],
            "keepers": self.cluster.keeper_procs,
        }
        return {part: sum(cpu_seconds(p.pid) for p in procs if p is not None) for part, procs in parts.items()}

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


TARGET: Target | None = None


@contextmanager
def timed(results: list[tuple[str, float, str]], label: str, amount: float, unit: str, each: str) -> Iterator[None]:
    """Times what runs inside, `amount` of `each` (file, MiB...), and prints the rate with the
    mount's peak memory and the CPU each part of the cluster used per `each`."""
    cpu = TARGET.cpu_used() if TARGET is not None else {}
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    results.append((label, amount / elapsed, unit))
    print(f"{label:<32} {amount / elapsed:10.1f} {unit:<8}{_costs(cpu, amount, each)}", flush=True)


def _costs(cpu_before: dict[str, float], amount: float, each: str) -> str:
    """(mount peak RSS, and CPU per `each` since cpu_before), for a fusedfs target."""
    if TARGET is None or not cpu_before:
        return ""
    used = {part: (spent - cpu_before[part]) / amount * 1e3 for part, spent in TARGET.cpu_used().items()}
    parts = ", ".join(f"{part} {ms:.2f}" for part, ms in used.items())
    return f"   (mount peak RSS {TARGET.mount_rss_mib():.0f} MiB; CPU per {each}: {parts} ms)"


def write_file(path: Path, size: int, pattern: bytes) -> None:
    with open(path, "wb") as f:
        for offset in range(0, size, BLOCK):
            f.write(memoryview(pattern)[offset % len(pattern) :][:BLOCK])


def read_file(path: Path) -> int:
    total = 0
    with open(path, "rb", buffering=0) as f:
        while block := f.read(BLOCK):
            total += len(block)
    return total


def run(target: Target, size: int, small_files: int, tree: Path) -> None:
    results: list[tuple[str, float, str]] = []
    root = target.dir
    pattern = os.urandom(64 * MiB + BLOCK)  # incompressible; not all-zero chunks (those are holes)
    big = root / "big.bin"
    with timed(results, "sequential write (1 MiB blocks)", size / MiB, "MiB/s", "MiB"):
        write_file(big, size, pattern)
    parts = [root / f"part{i}.bin" for i in range(4)]
    for part in parts:
        write_file(part, size // 4, pattern)
    target.cold()
    with timed(results, "cold sequential read", size / MiB, "MiB/s", "MiB"):
        read_file(big)
    target.cold()
    with timed(results, "4 parallel readers, together", size / MiB, "MiB/s", "MiB"), ThreadPoolExecutor(4) as pool:
        list(pool.map(read_file, parts))
    target.cold()
    rng = random.Random(1)
    reads = 2000
    fd = os.open(big, os.O_RDONLY)
    try:
        with timed(results, "4 KiB random reads", reads, "IOPS", "read"):
            for _ in range(reads):
                os.pread(fd, 4096, rng.randrange(0, size - 4096) & ~4095)
    finally:
        os.close(fd)
    # What a database does: small writes into a big file, each made durable.
    writes = 200
    block = os.urandom(4096)
    fd = os.open(big, os.O_WRONLY)
    try:
        with timed(results, "4 KiB random writes + fsync", writes, "IOPS", "write"):
            for _ in range(writes):
                os.pwrite(fd, block, rng.randrange(0, size - 4096) & ~4095)
                os.fsync(fd)
    finally:
        os.close(fd)
    inserts = 500
    db = sqlite3.connect(root / "bench.db", isolation_level=None)  # (autocommit: a transaction each)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        with timed(results, "SQLite inserts (WAL, 1 per commit)", inserts, "inserts/s", "insert"):
            for i in range(inserts):
                db.execute("INSERT INTO t (v) VALUES (?)", (f"row {i:06} " * 8,))
    finally:
        db.close()

    small = root / "small"
    small.mkdir()
    payload = os.urandom(4096)
    names = [small / f"f{i:05}" for i in range(small_files)]
    with timed(results, f"create {small_files} 4 KiB files", small_files, "files/s", "file"):
        for name in names:
            name.write_bytes(payload)
    target.cold()
    with timed(results, "stat them", small_files, "files/s", "file"):
        for name in names:
            name.stat()
    target.cold()
    with timed(results, "read them cold", small_files, "files/s", "file"):
        for name in names:
            name.read_bytes()
    with timed(results, "delete them", small_files, "files/s", "file"):
        for name in names:
            name.unlink()
    files = sum(len(f) for _, _, f in os.walk(tree))
    cpu = target.cpu_used()
    started = time.perf_counter()
    # The command itself, as the target was measured (shutil.copytree would also copy each
    # file's times and mode: `cp -a`'s work, two more metadata changes per file).
    subprocess.run(["cp", "-r", "--", str(tree), str(root / "tree")], check=True)
    elapsed = time.perf_counter() - started
    print(f"{'cp -r of ' + str(files) + ' files':<32} {elapsed:10.2f} s{_costs(cpu, files, 'file')}", flush=True)
    rss = target.mount_rss_mib()
    if rss is not None:
        print(f"{'mount process peak RSS':<32} {max(rss, target.peak_rss):10.1f} MiB")


def default_tree() -> Path:
    """A real Python library of about the size MooseFS was measured with (1,403 files)."""
    spec = importlib.util.find_spec("mypy") or importlib.util.find_spec("pip")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="measure this directory instead of a fresh fusedfs mount")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument(
        "--tree",
        type=Path,
        default=default_tree(),
        help="folder to copy with cp -r (default: the installed mypy package, ~1,300 files)",
    )
    parser.add_argument(
        "--mount-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to `fusedfs mount` (repeatable), e.g. --mount-arg=--no-short-circuit to read "
        "over the network as a mount on a machine without a keeper does",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fusedfs-mbench-"))
    global TARGET
    target = TARGET = Target(args.dir, work, args.mount_arg)
    print(f"measuring {target.dir} ({os.cpu_count()} cores)", flush=True)
    try:
        run(target, args.size_mib * MiB, args.small_files, args.tree)
    finally:
        target.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
