#!/usr/bin/env python3
"""Upload and download throughput of a real cluster, and every process's peak memory.

Starts a master and 3 keepers (goal 3) on loopback, uploads a file of random data with the
`fusedfs client` command, downloads it again, checks the sha256, and prints MiB/s and each
process's peak RSS (VmHWM). Run: python bench/cluster_throughput.py [--size-mib 1024]
[--chunk-mib 8] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procstat import peak_rss_mib

from fusedfs.local import LocalCluster

MiB = 1 << 20


def run_client(args: list[str], stdout: int | None = None) -> tuple[float, float]:
    """Runs `fusedfs client ...`; returns (seconds, peak RSS in MiB)."""
    # Not wait4()'s ru_maxrss: it starts from this (parent) process's RSS at fork time.
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fusedfs", "client", *args], stderr=subprocess.PIPE, stdout=stdout)
    peak = 0.0
    while proc.poll() is None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it may exit meanwhile
            peak = max(peak, peak_rss_mib(proc.pid))  # VmHWM only grows: the last reading is the peak
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode:
        raise SystemExit(f"client {args[1]} failed: {stderr.strip()}")
    return elapsed, peak


def make_source(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // (64 * MiB)):
            block = os.urandom(64 * MiB)
            digest.update(block)
            f.write(block)
        rest = os.urandom(size % (64 * MiB))
        digest.update(rest)
        f.write(rest)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=None, help="the master's chunk size (default: its own)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="fusedfs-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    size = args.size_mib * MiB
    source, back = work / "source.bin", work / "back.bin"
    print(f"making {args.size_mib} MiB of random data in {source} ...", file=sys.stderr)
    expected = make_source(source, size)
    master_args = ["--chunk-size", str(args.chunk_mib)] if args.chunk_mib else []
    cluster = LocalCluster(work / "cluster", keepers=3, master_args=master_args)
    try:
        cluster.start()
        master = cluster.master_address
        os.sync()  # the source file's write-back must not run during the measurement
        up_s, up_rss = run_client([master, "upload", "/bench.bin", str(source)])
        os.sync()
        with open(os.devnull, "wb") as null:
            stream_s, stream_rss = run_client([master, "download", "/bench.bin", "-"], stdout=null.fileno())
        down_s, down_rss = run_client([master, "download", "/bench.bin", str(back)])
        intact = sha256_file(back) == expected
        rss = {name: peak_rss_mib(pid) for name, pid in cluster.pids().items()}
        chunk = cluster.status().chunk_size // MiB
    finally:
        cluster.stop()
    print(f"cluster: 3 keepers, goal 3, chunk {chunk} MiB, file {args.size_mib} MiB, loopback, {os.cpu_count()} cores")
    print(f"upload:   {args.size_mib / up_s:8.1f} MiB/s  ({up_s:.2f} s)")
    print(f"download: {args.size_mib / stream_s:8.1f} MiB/s  ({stream_s:.2f} s)  to stdout > /dev/null")
    print(
        f"download: {args.size_mib / down_s:8.1f} MiB/s  ({down_s:.2f} s)  into a new local file, "
        f"sha256 {'ok' if intact else 'MISMATCH'}"
    )
    print("peak RSS (MiB):")
    print(f"  client upload   {up_rss:7.1f}")
    print(f"  client download {max(down_rss, stream_rss):7.1f}")
    for name, mib in rss.items():
        print(f"  {name:<15} {mib:7.1f}")
    if args.keep:
        for path in (source, back):
            path.unlink(missing_ok=True)
    else:
        shutil.rmtree(work)
    if not intact:
        sys.exit(1)


if __name__ == "__main__":
    main()
