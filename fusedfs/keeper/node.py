"""A running keeper: its gRPC server, the heartbeat loop, and the commands the master sends back.

The heartbeat (every second by default) carries capacity, free space, load and the chunks added
or removed since the last one; the first contact, and any contact after the master lost track of
this keeper, is a registration with the full chunk list, from which the master rebuilds where
every replica lives (as GFS does). The master's answer carries commands: delete garbage, copy a
chunk to another keeper (re-replication), verify a chunk a client found bad. A scrubber thread
re-checks every chunk in the background (scrub.py), and a probe thread times the disk
(diskwatch.py): a keeper whose disk has not answered for FAIL_AFTER stops heartbeating until it
does, so that the master counts it dead and copies its chunks elsewhere.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
from google.protobuf import json_format

from fusedfs.chunkfile import CorruptChunk
from fusedfs.errors import FsError
from fusedfs.grpcutil import ChannelPool, format_address, make_server, parse_address
from fusedfs.keeper.chunkstore import DISK_THREADS, ChunkStore
from fusedfs.keeper.diskwatch import FAIL_AFTER
from fusedfs.keeper.metacopies import MetadataCopies
from fusedfs.keeper.scrub import DEFAULT_INTERVAL as DEFAULT_SCRUB_INTERVAL
from fusedfs.keeper.scrub import Scrubber
from fusedfs.keeper.service import KeeperService, LoadGauge
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc, master_pb2_grpc
from fusedfs.rpc import master_pb2 as mp

log = logging.getLogger(__name__)

COPY_TIMEOUT = 300.0
MIN_HEARTBEAT_GAP = 0.05  # early heartbeats (after copies) come at most this often
UNREACHABLE_SAID_EVERY = 60.0  # seconds between log lines while the master does not answer
PROBE_EVERY = 1.0  # seconds between two probes of the disk


def _route_address(master: str) -> str:
    """The local address this machine uses to reach the master (no packet is sent)."""
    host, port = parse_address(master)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return str(s.getsockname()[0])


class KeeperNode:
    def __init__(
        self,
        master: str,
        store: ChunkStore,
        listen: str,
        advertise: str | None = None,
        heartbeat_interval: float = 1.0,
        copy_workers: int = 4,
        scrub_interval: float = DEFAULT_SCRUB_INTERVAL,
        failure_domain: str = "",
        disk_timeout: float = FAIL_AFTER,
    ) -> None:
        self.master = master
        self.store = store
        self.keeper_id = store.keeper_id()
        self.heartbeat_interval = heartbeat_interval
        self.failure_domain = failure_domain
        self.disk_timeout = disk_timeout
        self.pool = ChannelPool()
        self.load = LoadGauge()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a copy finished: report it (and take new work) now
        self.scrubber = Scrubber(store, scrub_interval, self._stop) if scrub_interval > 0 else None
        self._copies = futures.ThreadPoolExecutor(max_workers=copy_workers, thread_name_prefix="copy")
        # Deletes in a thread of their own: on a disk that does not answer they would hold up the
        # heartbeats, which must go on saying so.
        self._deletes = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="delete")
        self._copies_done: list[mp.CopyResult] = []
        self._copies_lock = threading.Lock()

        self.server = make_server(max_workers=DISK_THREADS)  # (a streamed write has one of each)
        keeper_pb2_grpc.add_KeeperServicer_to_server(
            KeeperService(store, self.keeper_id, self.pool, self.load, MetadataCopies(store.root, store.cluster_id)),
            self.server,
        )
        host, _ = parse_address(listen)
        port = self.server.add_insecure_port(listen)
        if port == 0:
            raise OSError(f"cannot listen on {listen}")
        if advertise:
            self.address = advertise
        else:
            wildcard = host in ("0.0.0.0", "::", "")
            self.address = format_address(_route_address(master) if wildcard else host, port)
        self._master_stub = master_pb2_grpc.MasterStub(self.pool.get(master))

    def start(self) -> None:
        self.server.start()
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=self._probe_loop, name="disk-probe", daemon=True).start()
        if self.scrubber is not None:
            threading.Thread(target=self.scrubber.run, name="scrub", daemon=True).start()
        log.info("keeper %s serving on %s, master %s", self.keeper_id, self.address, self.master)

    def stop(self) -> None:
        self._stop.set()
        self.server.stop(grace=2).wait()
        self._copies.shutdown(wait=False, cancel_futures=True)
        self._deletes.shutdown(wait=False, cancel_futures=True)
        self.pool.close()

    def wait(self) -> None:
        self.server.wait_for_termination()

    # --- heartbeats ------------------------------------------------------------------------------

    def _probe_loop(self) -> None:
        failing = False
        while not self._stop.wait(PROBE_EVERY):
            try:
                self.store.probe()  # (blocks while the disk does not answer: the watch sees it)
                failing = False
            except OSError as e:  # a disk that fails outright: writes say so, with their errno
                if not failing:
                    log.warning("disk probe failed: %s", e)
                failing = True

    def _heartbeat_loop(self) -> None:
        registered = False
        refused = None  # the master's last refusal, logged once
        gone = False  # left the cluster: the disk does not answer
        unreachable: float | None = None  # since when the master has not answered (said once a minute)
        said = 0.0
        while not self._stop.is_set():
            waiting = self.store.watch.waiting_for()
            if waiting >= self.disk_timeout:
                if not gone:
                    log.error(
                        "the disk has not answered for %.0f s: leaving the cluster until it does "
                        "(the master copies this keeper's chunks elsewhere)",
                        waiting,
                    )
                gone, registered = True, False
                self._stop.wait(self.heartbeat_interval)
                continue
            if gone:
                log.warning("the disk answers again: rejoining the cluster")
                gone = False
            try:
                if not registered:
                    self._register()
                    registered = True
                    log.info("registered with master %s", self.master)
                registered = self._heartbeat()
                unreachable = None
            except grpc.RpcError as e:
                code = e.code() if isinstance(e, grpc.Call) else None
                if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED):
                    # another cluster's master, or this keeper lacks the cluster's secret: keep asking
                    details = e.details() if isinstance(e, grpc.Call) else ""
                    if details != refused:
                        log.error("master %s refused this keeper: %s", self.master, details)
                    refused = details
                else:  # (also before it ever answered: a wrong address must not go unsaid)
                    now = time.monotonic()
                    unreachable = now if unreachable is None else unreachable
                    if now - said >= UNREACHABLE_SAID_EVERY or unreachable == now:
                        waited = f" for {now - unreachable:.0f} s" if now > unreachable else ""
                        log.warning("master %s unreachable%s (%s); trying on", self.master, waited, code or e)
                        said = now
                registered = False
            except Exception:  # a bug must not silence the keeper; keep heartbeating
                log.exception("heartbeat failed")
            if self._stop.wait(MIN_HEARTBEAT_GAP):
                return
            self._wake.wait(self.heartbeat_interval - MIN_HEARTBEAT_GAP)
            self._wake.clear()

    def _register(self) -> None:
        request = mp.RegisterKeeperRequest(
            keeper=cp.KeeperRef(keeper_id=self.keeper_id, address=self.address),
            capacity_bytes=self.store.capacity_bytes(),
            used_bytes=self.store.used_bytes(),
            free_bytes=self.store.free_bytes(),
            chunk_ids=self.store.full_report(),
            cluster_id=self.store.cluster_id(),
            failure_domain=self.failure_domain,
        )
        reply = self._master_stub.RegisterKeeper(request, timeout=30)
        if not request.cluster_id and reply.cluster_id:
            self.store.join_cluster(reply.cluster_id)
            log.info("joined cluster %s", reply.cluster_id)

    def health(self) -> dict[str, float]:
        """What each heartbeat tells the master (and the keeper's metrics show)."""
        return {
            "disk_stalled_seconds": self.store.watch.stalled_for(),
            "capacity_bytes": self.store.capacity_bytes(),
            "used_bytes": self.store.used_bytes(),
            "free_bytes": self.store.free_bytes(),
            "load": self.load.value,
            "scrub_checked": self.scrubber.stats.checked if self.scrubber else 0,
            "scrub_bad": (self.scrubber.stats.bad + self.scrubber.stats.missing) if self.scrubber else 0,
            "damaged_copies": self.store.damaged_copies(),
        }

    def _heartbeat(self) -> bool:
        """Sends one heartbeat and carries out the answer; False if the master wants a registration."""
        added, removed = self.store.drain_changes()
        with self._copies_lock:
            done, self._copies_done = self._copies_done, []
        request = mp.HeartbeatRequest(keeper_id=self.keeper_id, added=added, removed=removed, copies_done=done)
        json_format.ParseDict(self.health(), request)
        try:
            reply = self._master_stub.Heartbeat(request, timeout=max(2.0, 2 * self.heartbeat_interval))
        except grpc.RpcError:
            self.store.restore_changes(added, removed)
            with self._copies_lock:
                self._copies_done[:0] = done
            raise
        if reply.reregister:
            return False
        for chunk_id in reply.delete:
            self._deletes.submit(self._delete, chunk_id)
        for command in reply.copy:
            self._copies.submit(self._copy, command)
        for check in reply.verify:
            self._copies.submit(self._verify, check)
        return True

    # --- commands ------------------------------------------------------------------------------

    def _copy(self, command: mp.CopyCommand) -> None:
        """Streams a local chunk to another keeper (re-replication)."""
        result = mp.CopyResult(chunk_id=command.chunk_id, target_id=command.target.keeper_id, ok=False)
        try:
            info, pieces = self.store.open_chunk(command.chunk_id)
            header = kp.WriteChunkHeader(chunk_id=command.chunk_id, length=info.length, crc32c=info.crc)
            rot: list[CorruptChunk] = []

            def messages() -> Iterator[kp.WriteChunkMessage]:
                yield kp.WriteChunkMessage(header=header)
                try:
                    for piece in pieces:
                        yield kp.WriteChunkMessage(data=piece.data)
                except CorruptChunk as e:  # met in gRPC's thread: the copy ends short, and fails
                    rot.append(e)

            stub = self.pool.stub(command.target.address, keeper_pb2_grpc.KeeperStub)
            try:
                stub.WriteChunk(messages(), timeout=COPY_TIMEOUT)
            except grpc.RpcError:
                if not rot:
                    raise
            # A copy cut short by this replica's rot: the fault is here, and this replica goes
            # (else the master would pick it as the source again).
            if rot:
                raise rot[0]
            result.ok = True
        except CorruptChunk as e:
            self.store.set_aside(command.chunk_id, str(e))
            result.error = str(e)
        except FsError as e:
            result.error = e.message
        except grpc.RpcError as e:
            result.error = (
                f"copy to {command.target.address} failed: {e.code().name if isinstance(e, grpc.Call) else e}"
            )
        except Exception as e:
            log.exception("copy of %s failed", command.chunk_id)
            result.error = repr(e)
        if result.error:
            log.warning("copy of %s to %s: %s", command.chunk_id, command.target.address, result.error)
        with self._copies_lock:
            self._copies_done.append(result)
        self._wake.set()

    def _delete(self, chunk_id: str) -> None:
        try:
            self.store.delete(chunk_id)
        except (FsError, OSError) as e:  # (still listed here: the next full report has it deleted again)
            log.warning("delete %s: %s", chunk_id, e)

    def _verify(self, check: mp.VerifyCommand) -> None:
        chunk_id, expected = check.chunk_id, (check.length, check.crc32c) if check.length else None
        try:
            if not self.store.verify(chunk_id, expected):
                self.store.set_aside(
                    chunk_id, f"chunk {chunk_id} fails its checksums, or is not the chunk the master knows"
                )
        except FsError as e:
            if e.errno != errno.ENOENT:
                log.warning("verify %s: %s", chunk_id, e.message)
