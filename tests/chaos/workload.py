"""A client workload to run while faults happen, and a poller of the master's Status.

Workload: writer threads upload random files (unique names) through FileClient and remember
every upload that returned (acknowledged) with its sha256; reader threads download acknowledged
files and compare. Optionally, through a fusedfs mount too: mount writers write files with
open/write/close (acknowledged once close() returned) and mount readers read acknowledged files
(either kind) back through the mount. Every operation's duration is measured; failures are
counted with their messages; an operation still running past the bound when the workload stops
counts as hung.

StatusMonitor: polls the master's Status RPC every `interval` seconds in a thread and keeps the
samples, so a test can ask when the master first saw a keeper dead or the replicas back at goal.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fusedfs.chunks import MiB
from fusedfs.client.files import FileClient
from fusedfs.client.master import MasterClient
from fusedfs.errors import FsError
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import master_pb2 as mp

CLIENT_WAIT = 30.0  # the client's default --wait; also the bound on any one operation


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Acked:
    name: str
    size: int
    digest: str
    at: float  # monotonic time the upload returned
    via: str = "client"  # "client" (FileClient.upload) or "mount" (written through the mount)


@dataclass
class OpRecord:
    kind: str  # "upload" / "download" (FileClient), "mount-write" / "mount-read" (through the mount)
    name: str
    start: float
    duration: float
    error: str = ""


@dataclass
class _Worker:
    kind: str  # "writer", "reader", "mount-writer", "mount-reader"
    client: FileClient | None
    thread: threading.Thread | None = None
    current: tuple[str, str, float] | None = None  # (kind, name, start) of the op in progress


@dataclass
class WorkloadResult:
    acked: list[Acked]
    ops: list[OpRecord]
    hung: list[tuple[str, str, float]]  # ops still running at the end: (kind, name, seconds so far)
    corrupt_reads: list[str]

    @property
    def failed(self) -> list[OpRecord]:
        return [op for op in self.ops if op.error]

    @property
    def max_duration(self) -> float:
        durations = [op.duration for op in self.ops] + [h[2] for h in self.hung]
        return max(durations, default=0.0)

    def slowest(self, n: int = 3) -> list[OpRecord]:
        return sorted(self.ops, key=lambda op: op.duration, reverse=True)[:n]

    def of_kind(self, kind: str) -> list[OpRecord]:
        return [op for op in self.ops if op.kind == kind]


class Workload:
    """Writers and readers against one cluster; use as a context manager or start()/stop()."""

    def __init__(
        self,
        master_address: str,
        writers: int = 3,
        readers: int = 2,
        sizes: tuple[int, int] = (4 * 1024, 2 * MiB),
        pause: float = 0.2,
        seed: int | None = None,
        wait: float = CLIENT_WAIT,
        prefix: str = "/load",
        mountpoint: Path | None = None,
        mount_writers: int = 2,
        mount_readers: int = 1,
    ) -> None:
        self.master_address = master_address
        self.mountpoint = mountpoint
        self.sizes = sizes
        self.pause = pause
        self.seed = random.randrange(1 << 30) if seed is None else seed
        self.wait = wait
        self.prefix = prefix
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.acked: list[Acked] = []
        self.ops: list[OpRecord] = []
        self.corrupt_reads: list[str] = []
        self._workers = [self._new_worker("writer") for _ in range(writers)]
        self._workers += [self._new_worker("reader") for _ in range(readers)]
        if mountpoint is not None:
            self._workers += [_Worker("mount-writer", None) for _ in range(mount_writers)]
            self._workers += [_Worker("mount-reader", None) for _ in range(mount_readers)]

    def _new_worker(self, kind: str) -> _Worker:
        # One client (its own channels) per thread, like separate processes using the cluster.
        # (On another machine than the keepers, as the namespaces model: reads cross the links.)
        return _Worker(kind, FileClient(MasterClient(self.master_address, wait=self.wait), short_circuit=False))

    # --- running ---------------------------------------------------------------------------------

    def start(self) -> Workload:
        loops = {
            "writer": self._write_loop,
            "reader": self._read_loop,
            "mount-writer": self._mount_write_loop,
            "mount-reader": self._mount_read_loop,
        }
        for i, worker in enumerate(self._workers):
            target = loops[worker.kind]
            worker.thread = threading.Thread(
                target=target, args=(worker, random.Random(self.seed + i), i), name=f"{worker.kind}{i}", daemon=True
            )
            worker.thread.start()
        return self

    def _op(self, worker: _Worker, kind: str, name: str, action: Callable[[], None]) -> bool:
        start = time.monotonic()
        worker.current = (kind, name, start)
        error = ""
        try:
            action()
        except FsError as e:
            error = f"FsError({e.errno}): {e.message}"
        except OSError as e:  # through the mount
            error = f"OSError({errno.errorcode.get(e.errno or 0, e.errno)}): {e.strerror}"
        except Exception as e:  # anything else the client lets out is a failure too
            error = f"{type(e).__name__}: {e}"
        finally:
            worker.current = None
        with self._lock:
            self.ops.append(OpRecord(kind, name, start, time.monotonic() - start, error))
        return not error

    def _random_data(self, rng: random.Random) -> bytes:
        # Mostly small files, some spanning several chunks.
        low, high = self.sizes
        size = rng.randint(low, high) if rng.random() < 0.4 else rng.randint(low, max(low, high // 8))
        return rng.randbytes(size)

    def _write_loop(self, worker: _Worker, rng: random.Random, index: int) -> None:
        n = 0
        client = worker.client
        assert client is not None
        while not self._stop.is_set():
            data = self._random_data(rng)
            name = f"{self.prefix}/w{index}/f{n:05d}"
            n += 1

            def upload(data: bytes = data, name: str = name) -> None:
                client.upload(io.BytesIO(data), name)

            if self._op(worker, "upload", name, upload):
                with self._lock:
                    self.acked.append(Acked(name, len(data), sha256(data), time.monotonic()))
            self._stop.wait(self.pause)

    def _pick_acked(self, rng: random.Random) -> Acked | None:
        """An acknowledged file to read back; None (after a short wait) while there is none."""
        with self._lock:
            target = rng.choice(self.acked) if self.acked else None
        if target is None:
            self._stop.wait(0.1)
        return target

    def _read_loop(self, worker: _Worker, rng: random.Random, index: int) -> None:
        client = worker.client
        assert client is not None
        while not self._stop.is_set():
            target = self._pick_acked(rng)
            if target is None:
                continue

            def download(target: Acked = target) -> None:
                sink = io.BytesIO()
                client.download(target.name, sink)
                if sha256(sink.getvalue()) != target.digest:
                    with self._lock:
                        self.corrupt_reads.append(target.name)
                    raise AssertionError(f"{target.name}: downloaded bytes differ from what was acknowledged")

            self._op(worker, "download", target.name, download)
            self._stop.wait(self.pause)

    # --- through the mount ---------------------------------------------------------------------------

    def _mount_write_loop(self, worker: _Worker, rng: random.Random, index: int) -> None:
        """Writes files through the mount: acknowledged once close() has returned."""
        assert self.mountpoint is not None
        folder = f"{self.prefix}-mnt/w{index}"
        made = False
        n = 0
        while not self._stop.is_set():
            data = self._random_data(rng)
            name = f"{folder}/f{n:05d}"
            n += 1

            def write(data: bytes = data, name: str = name) -> None:
                nonlocal made
                if not made:
                    os.makedirs(f"{self.mountpoint}{folder}", exist_ok=True)
                    made = True
                # Several write() calls, as a program copying a file would make.
                with open(f"{self.mountpoint}{name}", "wb", buffering=0) as f:
                    view = memoryview(data)
                    for start in range(0, len(view), 256 * 1024):
                        f.write(view[start : start + 256 * 1024])
                # close() returned without an error: the mount says the data is stored.

            if self._op(worker, "mount-write", name, write):
                with self._lock:
                    self.acked.append(Acked(name, len(data), sha256(data), time.monotonic(), via="mount"))
            self._stop.wait(self.pause)

    def _mount_read_loop(self, worker: _Worker, rng: random.Random, index: int) -> None:
        """Reads acknowledged files (written either way) back through the mount."""
        assert self.mountpoint is not None
        while not self._stop.is_set():
            target = self._pick_acked(rng)
            if target is None:
                continue

            def read(target: Acked = target) -> None:
                with open(f"{self.mountpoint}{target.name}", "rb", buffering=0) as f:
                    # Drop the kernel's cached pages, so the bytes come from the mount (and the cluster).
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                    data = f.read()
                if len(data) != target.size or sha256(data) != target.digest:
                    with self._lock:
                        self.corrupt_reads.append(target.name)
                    raise AssertionError(
                        f"{target.name}: read {len(data)} bytes through the mount, not the acknowledged {target.size}"
                    )

            self._op(worker, "mount-read", target.name, read)
            self._stop.wait(self.pause)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def uploads_in_flight(self, kinds: tuple[str, ...] = ("upload", "mount-write")) -> int:
        return sum(1 for w in self._workers if w.current is not None and w.current[0] in kinds)

    def wait_in_flight(self, timeout: float, kinds: tuple[str, ...] = ("upload", "mount-write")) -> int:
        """Waits (up to timeout) until some write is in progress; returns how many are."""
        deadline = time.monotonic() + timeout
        while self.uploads_in_flight(kinds) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.uploads_in_flight(kinds)

    def ops_started_between(self, start: float, end: float) -> list[OpRecord]:
        with self._lock:
            return [op for op in self.ops if start <= op.start < end]

    def wait_acked(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.acked_count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.acked_count()} uploads acknowledged in {timeout} s: {self.ops[-3:]}")
            time.sleep(0.1)

    def stop(self, bound: float = CLIENT_WAIT) -> WorkloadResult:
        """Stops the threads; an op still running `bound` seconds after it started counts as hung.

        Hung threads are then unblocked by closing their channels (their ops end with an error);
        a thread hung in the mount stays blocked until the mount is unmounted and its process ended.
        """
        self._stop.set()
        hung: list[tuple[str, str, float]] = []
        for worker in self._workers:
            assert worker.thread is not None
            while worker.thread.is_alive():
                current = worker.current
                if current is not None and time.monotonic() - current[2] > bound:
                    hung.append((current[0], current[1], time.monotonic() - current[2]))
                    break
                worker.thread.join(0.1)
        for worker in self._workers:
            if worker.client is not None:
                worker.client.master.pool.close()
        for worker in self._workers:
            assert worker.thread is not None
            worker.thread.join(5 if worker.client is not None else 0.1)
        with self._lock:
            return WorkloadResult(list(self.acked), list(self.ops), hung, list(self.corrupt_reads))

    def __enter__(self) -> Workload:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.stop()


def verify_acked(master_address: str, acked: list[Acked], wait: float = CLIENT_WAIT) -> list[tuple[Acked, str]]:
    """Downloads every acknowledged file; returns those that failed or differ, with the reason."""
    bad: list[tuple[Acked, str]] = []
    clients = [FileClient(MasterClient(master_address, wait=wait), short_circuit=False) for _ in range(4)]
    lock = threading.Lock()

    def check(i: int, item: Acked) -> None:
        sink = io.BytesIO()
        try:
            clients[i % len(clients)].download(item.name, sink)
        except FsError as e:
            with lock:
                bad.append((item, f"FsError({e.errno}): {e.message}"))
            return
        data = sink.getvalue()
        if len(data) != item.size or sha256(data) != item.digest:
            with lock:
                bad.append((item, f"content differs ({len(data)} bytes, expected {item.size})"))

    try:
        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            list(pool.map(check, range(len(acked)), acked))
    finally:
        for client in clients:
            client.master.pool.close()
    return bad


# --- the master's view over time ------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    reply: mp.StatusReply | None  # None: the master did not answer

    @property
    def up(self) -> bool:
        return self.reply is not None

    def alive(self, address: str) -> bool | None:
        """Whether the master thinks the keeper at address is alive (None: it does not know it)."""
        if self.reply is None:
            return None
        for k in self.reply.keepers:
            if k.address == address:
                return bool(k.alive)
        return None

    def alive_count(self) -> int:
        return sum(k.alive for k in self.reply.keepers) if self.reply is not None else 0

    def at_goal(self) -> bool:
        """No chunk below the goal, none lost or unavailable."""
        if self.reply is None:
            return False
        c = self.reply.chunks
        return c.under_replicated == 0 and c.lost == 0 and c.unavailable == 0

    def settled(self) -> bool:
        """Every chunk exactly at the goal and no repair running."""
        if self.reply is None:
            return False
        c = self.reply.chunks
        unreadable = c.lost + c.unavailable
        return c.under_replicated == 0 and unreadable == 0 and c.over_replicated == 0 and c.repairs_in_flight == 0


@dataclass
class StatusMonitor:
    """Polls Status in a thread; the samples answer 'when did the master first see X'."""

    master_address: str
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client = MasterClient(self.master_address, wait=1.0)
        self._thread = threading.Thread(target=self._loop, name="status-monitor", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                reply = self._client.call("Status", cp.Empty(), wait=1.0)
            except FsError:
                reply = None
            with self._lock:
                self.samples.append(Sample(t, reply))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def __enter__(self) -> StatusMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.pool.close()

    def latest(self) -> Sample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def first(self, predicate: Callable[[Sample], bool], after: float) -> Sample | None:
        with self._lock:
            samples = list(self.samples)
        return next((s for s in samples if s.t >= after and predicate(s)), None)

    def wait_for(self, predicate: Callable[[Sample], bool], after: float, timeout: float) -> float | None:
        """Seconds from `after` until the first sample (taken after it) satisfying predicate.

        None if no sample taken within `timeout` of `after` satisfies it.
        """
        while True:
            found = self.first(predicate, after)
            if found is not None:
                return found.t - after if found.t - after <= timeout else None
            if time.monotonic() > after + timeout:
                return None
            time.sleep(0.05)

    def max_of(self, value: Callable[[Sample], int], after: float) -> int:
        with self._lock:
            return max((value(s) for s in self.samples if s.t >= after and s.reply is not None), default=0)

    def transitions(self, address: str, after: float) -> int:
        """How many times the master's view of the keeper at address went from alive to not alive."""
        with self._lock:
            samples = [s for s in self.samples if s.t >= after and s.reply is not None]
        count, previous = 0, None
        for s in samples:
            now = s.alive(address)
            if previous and not now:
                count += 1
            previous = now
        return count
