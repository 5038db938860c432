#!/usr/bin/env python3
"""What a keeper's death costs: detection time, repair time and client throughput during repair.

Starts a master and 4 keepers (goal 3) on loopback, stores SIZE MiB of random data, measures a
download without any fault, then kill -9s the keeper holding the most chunks and prints:
  - seconds from the kill until the master declares the keeper dead,
  - seconds until every chunk is back at 3 copies (and the MiB/s that repair moved),
  - download throughput while the repair runs, as a share of the fault-free figure,
  - that the data still reads back byte-identical (acknowledged bytes lost: must be 0).
Run: python bench/repair.py [--size-mib 1024] [--chunk-mib 8]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from fusedfs.client.files import FileClient
from fusedfs.client.master import MasterClient
from fusedfs.local import LocalCluster

MiB = 1 << 20


class Sha256Sink:
    """A file-like sink that only hashes (downloads are measured, not stored)."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return len(data)


class RandomSource:
    """SIZE bytes of incompressible data, generated as read; keeps the expected sha256."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(8 * MiB + 1)
        self.turn = 0
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = bytearray()
        while len(out) < n:
            self.turn = (self.turn + 4099) % (len(self.block) - 1)
            out += self.block[self.turn : self.turn + n - len(out)]
        self.left -= len(out)
        self.digest.update(out)
        return bytes(out)


def download(files: FileClient, name: str) -> tuple[float, str]:
    sink = Sha256Sink()
    started = time.perf_counter()
    files.download(name, sink)  # type: ignore[arg-type]
    return sink.size / MiB / (time.perf_counter() - started), sink.digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fusedfs-repair-"))
    cluster = LocalCluster(
        work / "cluster", 4, master_args=["--chunk-size", str(args.chunk_mib)], keeper_args=["--reserve", "0"]
    )
    try:
        cluster.start()
        files = FileClient(MasterClient(cluster.master_address, wait=30))
        source = RandomSource(args.size_mib * MiB)
        files.upload(source, "/data")  # type: ignore[arg-type]
        expected = source.digest.hexdigest()
        print(f"stored {args.size_mib} MiB in {args.chunk_mib} MiB chunks on 4 keepers, goal 3", flush=True)
        baseline, digest = download(files, "/data")
        assert digest == expected
        print(f"{'download, no fault':<44} {baseline:10.0f} MiB/s", flush=True)

        counts = [len(list((cluster.keeper_dir(i) / "chunks").glob("*/*"))) for i in range(4)]
        victim = max(range(4), key=counts.__getitem__)
        killed = time.monotonic()
        cluster.kill_keeper(victim)
        noticed: list[float] = []
        restored: list[float] = []

        def watch() -> None:
            while not restored:
                status = cluster.status()
                if not noticed and any(not k.alive for k in status.keepers):
                    noticed.append(time.monotonic() - killed)
                health = status.chunks
                unreadable = health.lost + health.unavailable
                if noticed and health.under_replicated == 0 and unreadable == 0 and health.repairs_in_flight == 0:
                    restored.append(time.monotonic() - killed)
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        while not noticed:
            time.sleep(0.05)
        during, digest = download(files, "/data")  # while the repair runs
        repair_running = not restored
        watcher.join()
        assert digest == expected, "data changed"
        moved = counts[victim] * args.chunk_mib
        repair_time = restored[0] - noticed[0]
        print(f"{'keeper killed -> master noticed':<44} {noticed[0]:10.2f} s")
        print(f"{'repair: ' + str(moved) + ' MiB back to 3 copies':<44} {repair_time:10.2f} s")
        print(f"{'repair rate':<44} {moved / repair_time:10.0f} MiB/s")
        print(f"{'kill -> goal restored':<44} {restored[0]:10.2f} s")
        share = during / baseline * 100
        note = "" if repair_running else " (repair ended before the download did)"
        print(f"{'download during repair':<44} {during:10.0f} MiB/s = {share:.0f}% of no fault{note}")
        _, digest = download(files, "/data")
        print(f"{'acknowledged bytes lost':<44} {0 if digest == expected else args.size_mib * MiB:10d}")
        files.master.pool.close()
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
