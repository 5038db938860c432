"""A client workload to run while faults happen, and a poller of the master's Status.

Workload: writer threads upload random files (unique names) through FileClient and remember
every upload that returned (acknowledged) with its sha256; reader threads download acknowledged
files and compare. Every operation's duration is measured; failures are counted with their
messages; an operation still running past the bound when the workload stops counts as hung.

StatusMonitor: polls the master's Status RPC every `interval` seconds in a thread and keeps the
samples, so a test can ask when the master first saw a keeper dead or the replicas back at goal.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

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


@dataclass
class OpRecord:
    kind: str  # "upload" / "download"
    name: str
    start: float
    duration: float
    error: str = ""


@dataclass
class _Worker:
    kind: str
    client: FileClient
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
    ) -> None:
        self.master_address = master_address
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

    def _new_worker(self, kind: str) -> _Worker:
        # One client (its own channels) per thread, like separate processes using the cluster.
        return _Worker(kind, FileClient(MasterClient(self.master_address, wait=self.wait)))

    # --- running ---------------------------------------------------------------------------------

    def start(self) -> Workload:
        for i, worker in enumerate(self._workers):
            target = self._write_loop if worker.kind == "writer" else self._read_loop
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
        except Exception as e:  # anything else the client lets out is a failure too
            error = f"{type(e).__name__}: {e}"
        finally:
            worker.current = None
        with self._lock:
            self.ops.append(OpRecord(kind, name, start, time.monotonic() - start, error))
        return not error

    def _write_loop(self, worker: _Worker, rng: random.Random, index: int) -> None:
        n = 0
        while not self._stop.is_set():
            # Mostly small files, some spanning several chunks.
            low, high = self.sizes
            size = rng.randint(low, high) if rng.random() < 0.4 else rng.randint(low, max(low, high // 8))
            data = rng.randbytes(size)
            name = f"{self.prefix}/w{index}/f{n:05d}"
            n += 1

            def upload(data: bytes = data, name: str = name) -> None:
                worker.client.upload(io.BytesIO(data), name)

            if self._op(worker, "upload", name, upload):
                with self._lock:
                    self.acked.append(Acked(name, len(data), sha256(data), time.monotonic()))
            self._stop.wait(self.pause)

    def _read_loop(self, worker: _Worker, rng: random.Random, index: int) -> None:
        while not self._stop.is_set():
            with self._lock:
                target = rng.choice(self.acked) if self.acked else None
            if target is None:
                self._stop.wait(0.1)
                continue

            def download(target: Acked = target) -> None:
                sink = io.BytesIO()
                worker.client.download(target.name, sink)
                if sha256(sink.getvalue()) != target.digest:
                    with self._lock:
                        self.corrupt_reads.append(target.name)
                    raise AssertionError(f"{target.name}: downloaded bytes differ from what was acknowledged")

            self._op(worker, "download", target.name, download)
            self._stop.wait(self.pause)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def uploads_in_flight(self) -> int:
        return sum(1 for w in self._workers if w.current is not None and w.current[0] == "upload")

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

        Hung threads are then unblocked by closing their channels (their ops end with an error).
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
            worker.client.master.pool.close()
        for worker in self._workers:
            assert worker.thread is not None
            worker.thread.join(5)
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
    clients = [FileClient(MasterClient(master_address, wait=wait)) for _ in range(4)]
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
        """No chunk below the goal and none lost."""
        if self.reply is None:
            return False
        c = self.reply.chunks
        return c.under_replicated == 0 and c.lost == 0

    def settled(self) -> bool:
        """Every chunk exactly at the goal and no repair running."""
        if self.reply is None:
            return False
        c = self.reply.chunks
        return c.under_replicated == 0 and c.lost == 0 and c.over_replicated == 0 and c.repairs_in_flight == 0


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
