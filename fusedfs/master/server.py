"""A running master: the store, namespace, cluster view and gRPC service, plus the maintenance loop.

The loop (twice a second) declares silent keepers dead, expires abandoned uploads and silent
mounts, frees unlinked files no mount has open, plans repairs and garbage collection, and purges
garbage that no keeper holds any more.
"""

from __future__ import annotations

import logging
import stat
import threading
import time
from pathlib import Path

from fusedfs.grpcutil import make_server
from fusedfs.master.cluster import Cluster, Settings
from fusedfs.master.namespace import Namespace
from fusedfs.master.service import MasterService
from fusedfs.master.sessions import MountSessions
from fusedfs.master.store import SqliteStore
from fusedfs.rpc import master_pb2_grpc

log = logging.getLogger(__name__)

TICK = 0.5


class MasterServer:
    def __init__(self, data_dir: Path, listen: str, settings: Settings) -> None:
        self.settings = settings
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStore(data_dir / "metadata.sqlite3", stat.S_IFDIR | 0o755, now_ns=time.time_ns())
        with self.store.transaction():
            chunks = self.store.all_chunks()
        self.cluster = Cluster(settings, chunks, self._next_chunk_id)
        self.sessions = MountSessions(self.cluster.clock())
        self.namespace = Namespace(
            self.store, settings.chunk_size, is_open=lambda ino: self.sessions.is_open(ino, self.cluster.clock())
        )
        self.server = make_server(max_workers=32)
        master_pb2_grpc.add_MasterServicer_to_server(
            MasterService(self.namespace, self.store, self.cluster, self.sessions), self.server
        )
        self.port = self.server.add_insecure_port(listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {listen}")
        self._stop = threading.Event()

    def _next_chunk_id(self) -> int:
        with self.store.transaction():
            return self.store.next_chunk_id()

    def start(self) -> None:
        self.server.start()
        threading.Thread(target=self._maintenance_loop, name="maintenance", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.server.stop(grace=1).wait()
        self.store.close()

    def wait(self) -> None:
        self.server.wait_for_termination()

    def _maintenance_loop(self) -> None:
        while not self._stop.wait(TICK):
            try:
                self.maintain()
            except Exception:  # keep maintaining; a bug here must not stop repair for good
                log.exception("maintenance failed")

    def maintain(self) -> None:
        self.cluster.check_keepers()
        expired = self.cluster.expired_pending()
        if expired:
            changes = self.namespace.abandon(expired)
            self.cluster.apply([], changes.garbage, {}, {})
        now = self.cluster.clock()
        for session_id in self.sessions.expire(now):
            log.info("mount session %s ended (silent for %g s)", session_id, self.sessions.timeout)
        if self.sessions.settled(now):
            freed = self.namespace.free_closed_orphans()
            self.cluster.apply([], freed.garbage, {}, {})
        purge = self.cluster.plan()
        if purge:
            with self.store.transaction():
                self.store.purge_chunks(purge)
            self.cluster.purged(purge)
