"""A cluster of real master and keeper processes on this machine.

The one way to run one: `fusedfs up` (the embedded default), the tests and the benchmarks all
use LocalCluster. Each process logs to <data>/logs/<name>.log.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from fusedfs.client.master import MasterClient
from fusedfs.datadir import in_use
from fusedfs.errors import FsError
from fusedfs.rpc import common_pb2 as cp


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free to listen on, outside the range the kernel picks outgoing connections' ports
    from: a process restarted on its port could otherwise find it taken by a connection, even
    by a caller's attempt to reach it that met itself (TCP's simultaneous open on loopback).
    Never one this process handed out before: the process it was for may not listen on it yet
    (a cluster's keepers got one port twice, and one of them could not start)."""
    ephemeral = _ephemeral_ports()
    candidates = [port for port in range(10_000, 65_536) if port not in ephemeral and port not in _HANDED_OUT]
    for port in random.sample(candidates, min(len(candidates), 200)):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:  # (a machine whose whole range is for outgoing connections)
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalCluster:
    def __init__(
        self,
        data_dir: Path,
        keepers: int = 3,
        master_port: int | None = None,
        keeper_ports: list[int] | None = None,
        master_args: list[str] | None = None,
        keeper_args: list[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.master_port = master_port or free_port(host)
        self.master_args = master_args or []
        self.keeper_args = keeper_args or []
        self.keeper_ports = list(keeper_ports or [])
        self.master_proc: subprocess.Popen[bytes] | None = None
        self.keeper_procs: list[subprocess.Popen[bytes] | None] = []
        self.mounts: dict[Path, subprocess.Popen[bytes]] = {}
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._initial_keepers = keepers

    @property
    def master_address(self) -> str:
        return f"{self.host}:{self.master_port}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(self.data_dir / "logs" / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "fusedfs", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    # --- master ----------------------------------------------------------------------------------

    def start_master(self) -> None:
        self.master_proc = self._spawn(
            "master",
            [
                "master",
                "--listen",
                self.master_address,
                "--data",
                str(self.data_dir / "master"),
                *self.master_args,
            ],
        )

    def kill_master(self) -> None:
        self._end(self.master_proc, signal.SIGKILL)
        self.master_proc = None

    # --- keepers ---------------------------------------------------------------------------------

    def keeper_dir(self, index: int) -> Path:
        return self.data_dir / f"keeper{index}"

    def start_keeper(self, index: int | None = None, extra_args: list[str] | None = None) -> int:
        """Starts keeper `index` (a new one when None) and returns its index."""
        if index is None:
            index = len(self.keeper_procs)
            self.keeper_procs.append(None)
        while len(self.keeper_ports) <= index:
            self.keeper_ports.append(free_port(self.host))
        address = f"{self.host}:{self.keeper_ports[index]}"
        self.keeper_procs[index] = self._spawn(
            f"keeper{index}",
            [
                "keeper",
                self.master_address,
                "--listen",
                address,
                "--data",
                str(self.keeper_dir(index)),
                *self.keeper_args,
                *(extra_args or []),
            ],
        )
        return index

    def kill_keeper(self, index: int) -> None:
        self._end(self.keeper_procs[index], signal.SIGKILL)
        self.keeper_procs[index] = None

    def keeper_address(self, index: int) -> str:
        return f"{self.host}:{self.keeper_ports[index]}"

    # --- mounts ----------------------------------------------------------------------------------

    def mount(self, mountpoint: Path, extra_args: list[str] | None = None, timeout: float = 20.0) -> Path:
        """Mounts the cluster at mountpoint with a `fusedfs mount` process; waits until mounted."""
        mountpoint.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(mountpoint):  # (someone else's: never to be taken for ours, or unmounted)
            raise FsError(errno.EBUSY, f"{mountpoint} is already a mount point")
        proc = self._spawn(
            f"mount-{mountpoint.name}",
            [
                "mount",
                self.master_address,
                str(mountpoint),
                "--cache-dir",
                str(self.data_dir / "cache"),
                *(extra_args or []),
            ],
        )
        self.mounts[mountpoint] = proc
        deadline = time.monotonic() + timeout
        while not os.path.ismount(mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.unmount(mountpoint)
                raise RuntimeError(f"mount at {mountpoint} failed; see {self.data_dir / 'logs'}")
            time.sleep(0.05)
        return mountpoint

    def unmount(self, mountpoint: Path) -> None:
        """Unmounts cleanly (SIGTERM saves open files first), lazily and by force if that fails."""
        from fusedfs.mount.main import clear_dead_mount

        proc = self.mounts.pop(mountpoint, None)
        self._end(proc, signal.SIGTERM)
        if proc is None:
            return
        # (a mount killed after SIGTERM's wait is dead: ismount() may fail to stat it, and say no)
        if not clear_dead_mount(mountpoint) and os.path.ismount(mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False, capture_output=True)

    # --- whole cluster ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> LocalCluster:
        if self.master_proc is not None and self.master_proc.poll() is None:
            # (`with LocalCluster(...).start()` did so once: a second master that failed to
            # listen, 3 more keepers, and the first master left running after stop())
            raise RuntimeError("this cluster is already running")
        if in_use(self.data_dir / "master"):  # (its master would fail, and the other answer for it)
            raise FsError(errno.EBUSY, f"fusedfs is already running on {self.data_dir} (another process's master)")
        self.start_master()
        for _ in range(self._initial_keepers):
            self.start_keeper()
        self.wait_ready(self._initial_keepers, timeout)
        return self

    def status(self, wait: float = 5.0):  # type: ignore[no-untyped-def]
        client = MasterClient(self.master_address, wait=wait)
        try:
            return client.call("Status", cp.Empty())
        finally:
            client.pool.close()

    def wait_ready(self, keepers: int, timeout: float = 30.0) -> None:
        """Waits until the master answers and `keepers` keepers are alive."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_running()
            try:
                if sum(k.alive for k in self.status(wait=1.0).keepers) >= keepers:
                    return
            except FsError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ready after {timeout:g} s; logs in {self.data_dir / 'logs'}")
            time.sleep(0.1)

    def _check_running(self) -> None:
        if self.master_proc is not None and self.master_proc.poll() is not None:
            path = self.data_dir / "logs" / "master.log"
            said = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
            last = said[-1] if said else "(nothing)"
            status = self.master_proc.returncode
            raise FsError(errno.EIO, f"the master exited with status {status}: {last} (log: {path})")

    def pids(self) -> dict[str, int]:
        procs = {"master": self.master_proc} | {f"keeper{i}": p for i, p in enumerate(self.keeper_procs)}
        return {name: p.pid for name, p in procs.items() if p is not None and p.poll() is None}

    def dump_threads(self) -> None:
        """Has every running process of the cluster write its threads' stacks to its log."""
        for proc in [self.master_proc, *self.keeper_procs, *self.mounts.values()]:
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGUSR1)

    def stop(self) -> None:
        for mountpoint in list(self.mounts):
            self.unmount(mountpoint)
        # The master first: its last metadata changes go to keepers still there to take them.
        # Then the keepers all at once (none waits its turn asking for the master that left).
        self._end(self.master_proc, signal.SIGTERM)
        for proc in self.keeper_procs:
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.keeper_procs:
            self._end(proc, None)
        self.keeper_procs = [None] * len(self.keeper_procs)
        self.master_proc = None

    @staticmethod
    def _end(proc: subprocess.Popen[bytes] | None, sig: int | None) -> None:
        """Sends sig (None: it was sent) and waits for the process to end, killing it after 10 s."""
        if proc is None or proc.poll() is not None:
            return
        if sig is not None:
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()


def run_local_cluster(
    data_dir: Path, port: int, keepers: int, mountpoint: Path | None, metrics: str | None = None
) -> int:
    """`fusedfs up`: runs the embedded default in the foreground until Ctrl-C or SIGTERM."""
    cluster = LocalCluster(
        data_dir.resolve(),
        keepers,
        master_port=port,
        keeper_ports=[port + 1 + i for i in range(keepers)],
        master_args=["--metrics", metrics] if metrics else [],
    )
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        cluster.start()
        master = cluster.master_address
        mounted = ""
        if mountpoint is not None:
            cluster.mount(mountpoint.resolve())
            mounted = f"\nMounted at {mountpoint.resolve()}: use it like any folder (cp, cat, ls, ...)."
        page = f" (also at http://{metrics}/, with metrics at /metrics)" if metrics else ""
        print(
            f"""fusedfs is running: master {master}, {keepers} keepers, data in {data_dir}{mounted}
  fusedfs client {master} upload /hello.txt ./some-file
  fusedfs client {master} ls /
  fusedfs client {master} download /hello.txt copy.txt
  fusedfs client {master} status{page}
Logs: {data_dir / "logs"}. Stop with Ctrl-C (or kill {os.getpid()}).""",
            flush=True,
        )
        while not stop:
            cluster._check_running()
            time.sleep(0.5)
    finally:
        cluster.stop()
        print("fusedfs stopped", flush=True)
    return 0
