"""A fusedfs cluster whose master and keepers each run in their own network namespace.

Topology (one cluster):

    root namespace: bridge fb<pid>-<n> with 10.213.X.1/24 (the tests, a fusedfs mount)
      ├── veth fv<pid>-<n>m   ── eth0 in netns fdfs-<pid>-<n>-master   10.213.X.2   master :3000
      ├── veth fv<pid>-<n>k0  ── eth0 in netns fdfs-<pid>-<n>-k0       10.213.X.10  keeper :3001
      └── veth fv<pid>-<n>k1  ── eth0 in netns fdfs-<pid>-<n>-k1       10.213.X.11  keeper :3001 ...

The namespaces have no route but their /24, so their traffic stays between them and the root
namespace. The root namespace also gets an `unreachable 10.213.X.0/24` route with a high metric:
once the bridge is gone (or before it exists) nothing the test process sends to those addresses
can leave by the default route.

Processes enter their network namespace with nsenter and share the test's mount namespace, so a
fusedfs mount in the root namespace (mount()/unmount(), always unmounted by close()) and keeper
data dirs on tmpfs (mount_tmpfs(), small disks that fill up) look the same to every process.
Clients here stand for other machines, so they read over the network, not from the keepers'
folders (short-circuit reads off).

Faults act on the root-namespace end of a node's veth (and, for the tc ones, on both ends, so
both directions suffer): `kill_keeper`/`start_keeper` (kill -9 and restart with the same data),
`cut` (link down, or a silent 100 % drop), `degrade` (a slow lossy link), `throttle` (a slow
link), `kill_master`.

Every name carries this process's pid, so `cleanup_stale()` can remove what a crashed earlier run
left (mounts, namespaces, their processes, links and routes) without touching another live run.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fusedfs.client.master import MasterClient
from fusedfs.errors import FsError
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import master_pb2 as mp

log = logging.getLogger(__name__)

NETNS_PREFIX = "fdfs-"  # namespaces: fdfs-<pid>-<n>-<node>
LINK_RE = re.compile(r"^f[bv](\d+)-(\d+)")  # links: fb<pid>-<n> (bridge), fv<pid>-<n><node> (veth)
NETNS_RE = re.compile(r"^fdfs-(\d+)-(\d+)-")
SUBNET_BASE = "10.213"
GUARD_METRIC = 4213  # the metric that marks our `unreachable` guard routes
LOCK_FILE = Path("/run/lock/fusedfs-chaos.lock")
MASTER_PORT = 3000
KEEPER_PORT = 3001
# The classic-BPF `ld rand` ancillary load (SKF_AD_OFF + SKF_AD_RANDOM), for random drops without netem.
_LD_RAND = (1 << 32) - 0x1000 + 56

_cluster_counter = 0


class HarnessError(RuntimeError):
    pass


def sh(*args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Runs a command (ip, tc); raises HarnessError with its stderr when it fails and check is set."""
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise HarnessError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@contextlib.contextmanager
def _global_lock() -> Iterator[None]:
    """Serialises subnet choice and cleanup between concurrent test runs on this machine."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def netns_supported() -> str | None:
    """None when this machine can run the harness, else the reason it cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if sh("which", tool, check=False).returncode != 0:
            return f"`{tool}` (iproute2) is not installed"
    name = f"{NETNS_PREFIX}{os.getpid()}-probe"
    probe = sh("ip", "netns", "add", name, check=False)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    sh("ip", "netns", "del", name, check=False)
    return None


def _pid_is_live_run(pid: int) -> bool:
    """True if pid is a live process that may own harness resources (a Python process)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"python" in cmdline or b"pytest" in cmdline


def _netns_names() -> list[str]:
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_netns_processes(ns: str) -> None:
    for text in sh("ip", "netns", "pids", ns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(text), signal.SIGKILL)


def _delete_netns(ns: str) -> None:
    _kill_netns_processes(ns)
    sh("ip", "netns", "del", ns, check=False)


def cleanup_stale(only_pid: int | None = None) -> list[str]:
    """Removes namespaces, links and guard routes of harness runs that are no longer alive.

    With only_pid, removes that run's resources instead (alive or not): this process at its end.
    Returns what was removed.
    """
    removed: list[str] = []

    def stale(pid: int) -> bool:
        return pid == only_pid if only_pid is not None else pid != os.getpid() and not _pid_is_live_run(pid)

    with _global_lock():
        # Mounts first (a FUSE mount's process may live in no namespace of ours; a tmpfs is a keeper's disk).
        for point, _, source in reversed(_mounts()):
            m = MOUNT_RE.search(point) or TMPFS_RE.match(source)
            if m and stale(int(m.group(1))):
                _force_unmount(point)
                removed.append(f"mount {point}")
        for ns in _netns_names():
            m = NETNS_RE.match(ns)
            if m and stale(int(m.group(1))):
                _delete_netns(ns)
                removed.append(f"netns {ns}")
        links = sh("ip", "-o", "link", "show", check=False).stdout
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            m = LINK_RE.match(name)
            if m and stale(int(m.group(1))):
                sh("ip", "link", "del", name, check=False)
                removed.append(f"link {name}")
        # Guard routes whose subnet has no bridge any more.
        routes = sh("ip", "-4", "route", "show", "table", "main", check=False).stdout.splitlines()
        bridged = {r.split()[0] for r in routes if not r.startswith("unreachable") and r.startswith(SUBNET_BASE + ".")}
        for r in routes:
            parts = r.split()
            ours = r.startswith("unreachable ") and f"metric {GUARD_METRIC}" in r and only_pid is None
            if ours and parts[1] not in bridged and parts[1].startswith(SUBNET_BASE + "."):
                sh("ip", "route", "del", "unreachable", parts[1], "metric", str(GUARD_METRIC), check=False)
                removed.append(f"route {parts[1]}")
    return removed


MOUNT_RE = re.compile(r"/fdfs-mnt-(\d+)-\d+$")  # FUSE mount points: <work dir>/fdfs-mnt-<pid>-<n>
TMPFS_RE = re.compile(r"^fdfs-(\d+)-\d+$")  # tmpfs sources (keeper disks): fdfs-<pid>-<n>


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, device "major:minor", source) of this mount namespace, from mountinfo."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].replace("\\040", " ")
            found.append((point, fields[2], fields[sep + 2]))
    return found


def is_mounted(path: Path) -> bool:
    return any(point == str(path) for point, _, _ in _mounts())


def _abort_fuse_connection(mountpoint: Path) -> None:
    """Aborts the kernel's FUSE connection of a mount: its pending requests fail with ENOTCONN.

    The connection is found through mountinfo, not stat(), which a hung mount would block.
    """
    for point, device, _ in _mounts():
        if point == str(mountpoint):
            with contextlib.suppress(OSError, ValueError):
                Path(f"/sys/fs/fuse/connections/{int(device.split(':')[1])}/abort").write_text("1")


def _force_unmount(point: str) -> None:
    _abort_fuse_connection(Path(point))
    if sh("fusermount3", "-u", "-z", point, check=False).returncode != 0:
        sh("umount", "-l", point, check=False)


def _pick_subnet() -> ipaddress.IPv4Network:
    """A free 10.213.X.0/24: no address, route or guard route of this machine overlaps it."""
    used = (
        sh("ip", "-4", "-o", "addr", "show", check=False).stdout
        + sh("ip", "-4", "route", "show", "table", "all").stdout
    )
    start = os.getpid() % 250
    for i in range(250):
        x = 1 + (start + i) % 250
        net = ipaddress.IPv4Network(f"{SUBNET_BASE}.{x}.0/24")
        if f"{SUBNET_BASE}.{x}." not in used and not _overlaps_route(net, used):
            return net
    raise HarnessError(f"no free {SUBNET_BASE}.X.0/24 subnet")


def _overlaps_route(net: ipaddress.IPv4Network, routes: str) -> bool:
    for token in routes.split():
        if "/" in token and token[0].isdigit():
            with contextlib.suppress(ValueError):
                other = ipaddress.IPv4Network(token, strict=False)
                if other.prefixlen > 0 and other.overlaps(net):
                    return True
    return False


@dataclass
class Node:
    """One namespace: the master or a keeper."""

    name: str  # "master", "k0", "k1", ...
    netns: str
    veth: str  # root-namespace end; the other end is eth0 inside netns
    ip: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    shaped: bool = False  # a qdisc of ours is on the veth ends
    down: bool = False
    log_path: Path = field(default_factory=Path)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


class NetnsCluster:
    """A master and keepers, each in its own network namespace, on a bridge in the root namespace."""

    def __init__(
        self,
        work_dir: Path,
        keepers: int = 3,
        master_args: list[str] | None = None,
        keeper_args: list[str] | None = None,
        python: str = sys.executable,
    ) -> None:
        global _cluster_counter
        _cluster_counter += 1
        self.serial = _cluster_counter
        self.work_dir = work_dir
        self.log_dir = work_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.master_args = list(master_args or [])
        self.keeper_args = list(keeper_args or [])
        self.python = python
        self.tag = f"{os.getpid()}-{self.serial}"
        self.bridge = f"fb{self.tag}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.root_ip = ""
        self.master = Node("master", "", "", "", MASTER_PORT)
        self.keepers: list[Node] = []
        self._initial_keepers = keepers
        self._guard_route = False
        self._status_client: MasterClient | None = None
        self._mounts: dict[Path, subprocess.Popen[bytes]] = {}
        self._tmpfs: list[Path] = []  # and disk images: file systems mounted for keepers
        self._frozen: list[Path] = []
        self.events: list[tuple[float, str]] = []  # (monotonic time, what the harness did)

    # --- network ---------------------------------------------------------------------------------

    def _host(self, index: int) -> str:
        assert self.subnet is not None
        return str(self.subnet.network_address + index)

    def _note(self, what: str) -> float:
        now = time.monotonic()
        self.events.append((now, what))
        log.info("harness: %s", what)
        return now

    def setup_network(self) -> None:
        with _global_lock():
            self.subnet = _pick_subnet()
            self.root_ip = self._host(1)
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.root_ip}/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            sh("ip", "route", "add", "unreachable", str(self.subnet), "metric", str(GUARD_METRIC))
            self._guard_route = True
        self.master = self._make_node("master", "m", 2, MASTER_PORT)
        for i in range(self._initial_keepers):
            self.add_keeper_node(i)

    def add_keeper_node(self, index: int) -> Node:
        assert index == len(self.keepers)
        node = self._make_node(f"k{index}", f"k{index}", 10 + index, KEEPER_PORT)
        self.keepers.append(node)
        return node

    def _make_node(self, name: str, short: str, host: int, port: int) -> Node:
        netns = f"{NETNS_PREFIX}{self.tag}-{name}"
        veth = f"fv{self.tag}{short}"
        if len(veth) > 15:
            raise HarnessError(f"interface name {veth} is too long")
        node = Node(name, netns, veth, self._host(host), port, log_path=self.log_dir / f"{name}.log")
        sh("ip", "netns", "add", netns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        sh("ip", "link", "set", veth, "master", self.bridge)
        sh("ip", "link", "set", veth, "up")
        self._in(node, "ip", "link", "set", "lo", "up")
        self._in(node, "ip", "addr", "add", f"{node.ip}/24", "dev", "eth0")
        self._in(node, "ip", "link", "set", "eth0", "up")
        return node

    @staticmethod
    def _in(node: Node, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", node.netns, *args, check=check)

    # --- processes -------------------------------------------------------------------------------

    def _spawn(self, node: Node, args: list[str]) -> subprocess.Popen[bytes]:
        with open(node.log_path, "ab") as logf:
            logf.write(f"\n===== {time.strftime('%H:%M:%S')} start: {' '.join(args)}\n".encode())
            logf.flush()
            # nsenter enters the network namespace only and execs the command itself, so proc.pid is
            # the fusedfs process and it shares the test's mount namespace. (`ip netns exec` would
            # give it a private copy of every mount, where this machine's `/` is private: a FUSE
            # mount made before the process started would then stay alive in that copy after
            # `fusermount3 -u`, and the mount process would never see its unmount.)
            enter = (
                ["nsenter", f"--net=/run/netns/{node.netns}"]
                if shutil.which("nsenter")
                else ["ip", "netns", "exec", node.netns]
            )
            return subprocess.Popen(
                [*enter, self.python, "-m", "fusedfs", *args],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def master_address(self) -> str:
        return self.master.address

    def start_master(self) -> None:
        if self.master.proc is not None and self.master.proc.poll() is None:
            raise HarnessError("master already running")
        args = ["master", "--listen", self.master.address, "--data", str(self.work_dir / "master"), *self.master_args]
        self.master.proc = self._spawn(self.master, args)
        self._note("start master")

    def kill_master(self) -> float:
        """kill -9 the master; returns the monotonic time of the kill."""
        t = self._note("kill -9 master")
        self._kill(self.master, signal.SIGKILL)
        return t

    def keeper_dir(self, index: int) -> Path:
        return self.work_dir / f"keeper{index}"

    def start_keeper(self, index: int | None = None) -> int:
        """Starts keeper `index` (its old data dir and address), or a new one when None."""
        if index is None:
            index = len(self.keepers)
            self.add_keeper_node(index)
        node = self.keepers[index]
        if node.proc is not None and node.proc.poll() is None:
            raise HarnessError(f"keeper {index} already running")
        args = [
            "keeper",
            self.master.address,
            "--listen",
            node.address,
            "--advertise",
            node.address,
            "--data",
            str(self.keeper_dir(index)),
            *self.keeper_args,
        ]
        node.proc = self._spawn(node, args)
        self._note(f"start keeper {index}")
        return index

    def kill_keeper(self, index: int) -> float:
        t = self._note(f"kill -9 keeper {index}")
        self._kill(self.keepers[index], signal.SIGKILL)
        return t

    def _kill(self, node: Node, sig: int) -> None:
        proc = node.proc
        node.proc = None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def keeper_address(self, index: int) -> str:
        return self.keepers[index].address

    def running(self) -> dict[str, int]:
        nodes = [self.master, *self.keepers]
        return {n.name: n.proc.pid for n in nodes if n.proc is not None and n.proc.poll() is None}

    def check_running(self) -> None:
        """Raises if a process the harness did not stop has exited (a crash)."""
        for node in [self.master, *self.keepers]:
            if node.proc is not None and node.proc.poll() is not None:
                tail = node.log_path.read_text(errors="replace")[-2000:]
                raise HarnessError(f"{node.name} exited with {node.proc.returncode}:\n{tail}")

    # --- network faults --------------------------------------------------------------------------

    def node(self, which: str | int) -> Node:
        return self.master if which == "master" else self.keepers[int(which)]

    def cut(self, which: str | int, mode: str = "down") -> float:
        """Cuts a node off the network; returns the monotonic time.

        mode "down": its veth goes down (like a pulled cable: no carrier, ARP fails).
        mode "drop": every packet in both directions is silently dropped while the link stays up
        (a partition somewhere in the network: only timeouts tell).
        """
        node = self.node(which)
        if mode == "down":
            sh("ip", "link", "set", node.veth, "down")
            node.down = True
        elif mode == "drop":
            self._shape(node, loss=1.0, rate_mbit=None)
        else:
            raise ValueError(mode)
        return self._note(f"cut {node.name} ({mode})")

    def restore(self, which: str | int) -> float:
        """Undoes cut() and degrade(): the node's link is up and unshaped again."""
        node = self.node(which)
        if node.down:
            sh("ip", "link", "set", node.veth, "up")
            node.down = False
        if node.shaped:
            sh("tc", "qdisc", "del", "dev", node.veth, "root", check=False)
            self._in(node, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
            node.shaped = False
        return self._note(f"restore {node.name}")

    def degrade(self, which: str | int, delay_ms: int = 50, loss: float = 0.05, rate_mbit: int | None = 40) -> str:
        """Makes a node's link slow and lossy in both directions; returns what was applied.

        Uses netem (delay + loss) when the kernel has it. Without netem (CONFIG_NET_SCH_NETEM
        unset, as on some VM kernels) it falls back to an HTB rate cap plus random drops by a
        classic-BPF classifier (`ld rand`): loss and a slow link, but no fixed delay.
        """
        node = self.node(which)
        if self._netem_works(node, delay_ms, loss):
            applied = f"netem delay {delay_ms}ms loss {loss:.0%}"
        else:
            self._shape(node, loss=loss, rate_mbit=rate_mbit)
            applied = f"htb rate {rate_mbit}mbit + bpf random drop {loss:.0%} (no netem in this kernel: no delay)"
        self._note(f"degrade {node.name}: {applied}")
        return applied

    def throttle(self, which: str | int, rate_mbit: int) -> str:
        """Caps a node's link at rate_mbit in both directions (no loss): a slow network."""
        node = self.node(which)
        self._shape(node, loss=0.0, rate_mbit=rate_mbit)
        applied = f"htb rate {rate_mbit}mbit"
        self._note(f"throttle {node.name}: {applied}")
        return applied

    def _netem_works(self, node: Node, delay_ms: int, loss: float) -> bool:
        netem = ["netem", "delay", f"{delay_ms}ms", "loss", f"{loss * 100:g}%"]
        if sh("tc", "qdisc", "add", "dev", node.veth, "root", *netem, check=False).returncode != 0:
            return False
        node.shaped = True
        self._in(node, "tc", "qdisc", "add", "dev", "eth0", "root", *netem)
        return True

    def _shape(self, node: Node, loss: float, rate_mbit: int | None) -> None:
        """HTB at the root of both veth ends: class 1:10 (rate cap) and 1:99 (drops everything),
        with a BPF classifier sending a random `loss` share of the packets to 1:99."""
        if node.shaped:
            self.restore(node.name)
        rate = f"{rate_mbit}mbit" if rate_mbit else "10gbit"
        threshold = min((1 << 32) - 1, int((1.0 - loss) * (1 << 32)))
        # A = random u32; A >= threshold: return -1 (the filter's flowid, the drop class); else 0 (no match).
        program = f"4,32 0 0 {_LD_RAND},53 0 1 {threshold},6 0 0 {(1 << 32) - 1},6 0 0 0"
        if loss >= 1.0:
            program = f"1,6 0 0 {(1 << 32) - 1}"
        for prefix in (["tc"], ["ip", "netns", "exec", node.netns, "tc"]):
            dev = node.veth if len(prefix) == 1 else "eth0"
            node.shaped = True
            sh(*prefix, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10", "r2q", "100")
            sh(*prefix, "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", rate)
            # A short queue, as a switch has (and Linux's default fq_codel keeps): 1,000 packets,
            # the default, are 0.75 s of queue at 16 Mbit/s ahead of every heartbeat and gRPC
            # ping (this kernel has no fq_codel).
            sh(*prefix, "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:", "pfifo", "limit", "50")
            sh(*prefix, "class", "add", "dev", dev, "parent", "1:", "classid", "1:99", "htb", "rate", "8bit")
            sh(*prefix, "qdisc", "add", "dev", dev, "parent", "1:99", "handle", "99:", "pfifo", "limit", "0")
            if loss <= 0.0:
                continue
            filt = ["filter", "add", "dev", dev, "parent", "1:", "protocol", "all", "prio", "1"]
            sh(*prefix, *filt, "bpf", "bytecode", program, "flowid", "1:99")

    def drops(self, which: str | int) -> int:
        """Packets our qdiscs dropped on a node's link, both directions."""
        node = self.node(which)
        total = 0
        for out in (
            sh("tc", "-s", "qdisc", "show", "dev", node.veth, check=False).stdout,
            self._in(node, "tc", "-s", "qdisc", "show", "dev", "eth0", check=False).stdout,
        ):
            for m in re.finditer(r"qdisc (?:pfifo 99|netem).*?dropped (\d+)", out, re.S):
                total += int(m.group(1))
        return total

    # --- the master's view -----------------------------------------------------------------------

    def status(self, wait: float = 5.0) -> mp.StatusReply:
        if self._status_client is None:
            self._status_client = MasterClient(self.master.address, wait=wait)
        return self._status_client.call("Status", cp.Empty(), wait=wait)

    def wait_ready(self, keepers: int, timeout: float = 30.0) -> None:
        """Waits until the master answers and `keepers` keepers are alive."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            with contextlib.suppress(FsError):
                if sum(k.alive for k in self.status(wait=1.0).keepers) >= keepers:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ready after {timeout:g} s; logs in {self.log_dir}")
            time.sleep(0.1)

    def start(self, timeout: float = 30.0) -> NetnsCluster:
        self.setup_network()
        self.start_master()
        for i in range(len(self.keepers)):
            self.start_keeper(i)
        self.wait_ready(len(self.keepers), timeout)
        return self

    # --- a mount in the root namespace ------------------------------------------------------------

    def mountpoint(self) -> Path:
        """Where mount() should mount this cluster: a name cleanup_stale() knows."""
        return self.work_dir / f"fdfs-mnt-{self.tag}"

    def mount(self, mountpoint: Path, extra_args: list[str] | None = None, timeout: float = 20.0) -> Path:
        """Mounts the cluster at mountpoint: a `fusedfs mount` process in the root namespace, in the
        foreground, with its write-back cache in this cluster's work dir. Waits until mounted."""
        mountpoint.mkdir(parents=True, exist_ok=True)
        cache = self.work_dir / f"mount-cache-{mountpoint.name}"
        # The mount stands for a client on a machine of its own (it shares our mount namespace,
        # hence the keepers' folders, but not their network): reads go over the links.
        args = [
            "mount",
            self.master.address,
            str(mountpoint),
            "--cache-dir",
            str(cache),
            "--no-short-circuit",
            *(extra_args or []),
        ]
        with open(self.log_dir / f"mount-{mountpoint.name}.log", "ab") as logf:
            logf.write(f"\n===== {time.strftime('%H:%M:%S')} start: {' '.join(args)}\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                [self.python, "-m", "fusedfs", *args],
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._mounts[mountpoint] = proc
        deadline = time.monotonic() + timeout
        while not os.path.ismount(mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.unmount(mountpoint)
                raise HarnessError(f"mount at {mountpoint} failed; see {self.log_dir}")
            time.sleep(0.05)
        self._note(f"mounted at {mountpoint} (pid {proc.pid})")
        return mountpoint

    def mount_alive(self, mountpoint: Path) -> bool:
        proc = self._mounts.get(mountpoint)
        return proc is not None and proc.poll() is None and is_mounted(mountpoint)

    def unmount(self, mountpoint: Path, timeout: float = 10.0) -> str:
        """Unmounts: `fusermount3 -u` (the mount process then saves open files and exits), then the
        process is ended (SIGTERM, then SIGKILL); if still mounted, `fusermount3 -u -z` and, last,
        the kernel connection is aborted. Never raises; returns what it took (for the report).

        Whether it is mounted is read from mountinfo: stat() on a hung mount would block.
        """
        proc = self._mounts.pop(mountpoint, None)
        how: list[str] = []
        clean = False
        if is_mounted(mountpoint):
            try:
                r = sh("fusermount3", "-u", str(mountpoint), check=False, timeout=timeout)
                clean = r.returncode == 0
                how.append("fusermount3 -u" + ("" if clean else f" failed ({r.stderr.strip()[:80]})"))
            except subprocess.TimeoutExpired:
                how.append("fusermount3 -u timed out")
        if proc is not None and proc.poll() is None:
            try:
                proc.wait(timeout=timeout if clean else 0.5)  # unmounted: it exits by itself
            except subprocess.TimeoutExpired:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, sig)
                    try:
                        proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        continue
                    how.append(f"process ended by {signal.Signals(sig).name}")
                    break
        if is_mounted(mountpoint):
            with contextlib.suppress(subprocess.TimeoutExpired):
                sh("fusermount3", "-u", "-z", str(mountpoint), check=False, timeout=timeout)
            how.append("fusermount3 -u -z")
        if is_mounted(mountpoint):
            _force_unmount(str(mountpoint))
            how.append("connection aborted")
        if proc is not None:
            self._note(f"unmounted {mountpoint}: {', '.join(how) or 'was not mounted'}")
        return ", ".join(how)

    # --- keeper disks -----------------------------------------------------------------------------

    def mount_tmpfs(self, path: Path, size: int | str) -> Path:
        """A tmpfs at path (a keeper's data dir) of `size` MiB (or a size as mount takes it: "200g");
        unmounted by close(). It only uses memory for what is written to it."""
        size_text = f"{size}m" if isinstance(size, int) else size
        path.mkdir(parents=True, exist_ok=True)
        source = f"fdfs-{self.tag}"  # so that cleanup_stale() finds it after a crashed run
        sh("mount", "-t", "tmpfs", "-o", f"size={size_text},mode=0755", source, str(path))
        self._tmpfs.append(path)
        self._note(f"tmpfs of {size_text} at {path}")
        return path

    def mount_disk_image(self, path: Path, size_mib: int) -> Path:
        """An ext4 file system in a sparse image file, mounted at path (a keeper's data dir):
        unlike a tmpfs, it can be frozen. Unmounted by close()."""
        image = self.work_dir / f"{path.name}.img"
        with open(image, "wb") as f:
            f.truncate(size_mib * 2**20)
        sh("mkfs.ext4", "-q", "-F", str(image))
        path.mkdir(parents=True, exist_ok=True)
        sh("mount", "-o", "loop", str(image), str(path))
        self._tmpfs.append(path)
        self._note(f"ext4 image of {size_mib} MiB at {path}")
        return path

    def freeze(self, path: Path) -> float:
        """Freezes the file system at path (fsfreeze): every write to it, and every fsync, waits
        until it is thawed, as on a disk that stops answering. close() thaws it."""
        sh("fsfreeze", "-f", str(path))
        self._frozen.append(path)
        return self._note(f"froze {path}")

    def thaw(self, path: Path) -> float:
        sh("fsfreeze", "-u", str(path))
        self._frozen.remove(path)
        return self._note(f"thawed {path}")

    def unmount_tmpfs(self) -> None:
        for path in reversed(self._tmpfs):
            if is_mounted(path) and sh("umount", str(path), check=False).returncode != 0:
                sh("umount", "-l", str(path), check=False)
        self._tmpfs.clear()

    # --- teardown --------------------------------------------------------------------------------

    def close(self, remove_guard_route: bool = True) -> None:
        """Stops everything and deletes the namespaces, links and (optionally) the guard route.

        Never raises: it runs in finalizers, also after a failed setup. Keep the guard route while
        threads of this process may still hold channels to the cluster's addresses.
        """
        for path in list(self._frozen):  # (its writers wait uninterruptibly: not even kill -9 ends them)
            with contextlib.suppress(Exception):
                self.thaw(path)
        for mountpoint in list(self._mounts):
            with contextlib.suppress(Exception):
                self.unmount(mountpoint)
        if self._status_client is not None:
            self._status_client.pool.close()
            self._status_client = None
        for node in [*self.keepers, self.master]:
            with contextlib.suppress(Exception):
                self._kill(node, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.unmount_tmpfs()  # after the keepers using them are gone
        for node in [self.master, *self.keepers]:
            if node.netns:
                _delete_netns(node.netns)
            if node.veth:
                sh("ip", "link", "del", node.veth, check=False)  # gone with its peer normally
        sh("ip", "link", "del", self.bridge, check=False)
        if self._guard_route and remove_guard_route:
            self.remove_guard_route()

    def remove_guard_route(self) -> None:
        if self.subnet is not None and self._guard_route:
            sh("ip", "route", "del", "unreachable", str(self.subnet), "metric", str(GUARD_METRIC), check=False)
            self._guard_route = False
