"""A running master: the store, namespace, cluster view and gRPC service, plus the maintenance
loop and the metadata copies and changes sent to the keepers (metacopy.py).

The loop (twice a second) declares silent keepers dead, expires abandoned uploads and silent
mounts, frees unlinked files no mount has open, plans repairs and garbage collection, and purges
garbage that no keeper holds any more.
"""

from __future__ import annotations

import logging
import math
import stat
import threading
import time
from pathlib import Path

from fusedfs.grpcutil import ChannelPool, make_server
from fusedfs.master.cluster import Cluster, Settings
from fusedfs.master.metacopy import COPIES, METADATA_FILE, JournalShipper, copy_interval, send_copy
from fusedfs.master.namespace import Namespace
from fusedfs.master.placement import KeeperView, spread_first
from fusedfs.master.service import MasterService
from fusedfs.master.sessions import MountSessions
from fusedfs.master.store import SqliteStore
from fusedfs.rpc import master_pb2_grpc

log = logging.getLogger(__name__)

TICK = 0.5
SHIP_EVERY = 0.1  # seconds between sending the metadata's changes to the keepers
JOURNAL_MAX = 1_000_000  # changes kept for the keepers at most (~200 MB); older ones are dropped
# Seconds the answers of changes are kept for clients that send them again (a client retries
# within its --wait, 30 s by default) and between prunings of the older ones.
REPLIES_KEPT = 600.0
REPLIES_PRUNED_EVERY = 60.0


class MasterServer:
    def __init__(self, data_dir: Path, listen: str, settings: Settings, copy_every: float = 0.0) -> None:
        """copy_every: seconds between metadata copies to the keepers (0: none)."""
        self.settings = settings
        self.data_dir = data_dir
        self.copy_every = copy_every
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStore(data_dir / METADATA_FILE, stat.S_IFDIR | 0o755, now_ns=time.time_ns())
        self.namespace = Namespace(
            self.store,
            settings.chunk_size,
            is_open=lambda ino: self.sessions.is_open(ino, self.cluster.clock()),
            trash_ns=int(settings.trash_seconds * 1e9),
        )
        if removed := self.namespace.remove_unfinished_snapshots():
            log.info("removed %d snapshot copies left unfinished when the master stopped", removed)
        with self.store.transaction():
            chunks = self.store.all_chunks()
            goals = self.store.chunk_goals()
            draining = self.store.draining_keepers()
        self.cluster = Cluster(settings, chunks, self._next_chunk_id, goals=goals)
        self.cluster.draining = draining
        if copy_every > 0:
            self.cluster.copy_taken_ns = 0  # no garbage is deleted before the first copy
        self.pool = ChannelPool()
        self._copied_seq = -1  # the journal's end at the last copy stored
        self._copy_holders: dict[str, str] = {}  # address -> keeper id of the keepers that took it
        self._copy_failed = False  # no keeper took the last copy
        self._short_tries = 0  # copies taken in a row because the newest was on too few keepers
        self._pruned_seq = 0  # the journal holds no change up to this seq
        self._replies_pruned = -math.inf
        self.shipper = JournalShipper(self.store, self.pool)
        self.cluster.changes_unsent = self.shipper.unshipped
        self.sessions = MountSessions(self.cluster.clock())
        with self.store.transaction():
            saved = self.store.saved_sessions()
        for session_id, open_inodes in saved.items():
            self.sessions.restore(session_id, open_inodes, self.cluster.clock())
        self.server = make_server(max_workers=32)
        self.service = MasterService(self.namespace, self.store, self.cluster, self.sessions, self.pool)
        master_pb2_grpc.add_MasterServicer_to_server(self.service, self.server)
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
        if self.copy_every > 0:
            threading.Thread(target=self._copy_loop, name="metadata-copies", daemon=True).start()
            threading.Thread(target=self._ship_loop, name="metadata-changes", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.server.stop(grace=1).wait()
        self.namespace.give_back_chunks()
        self.pool.close()
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
            self.store.save_session(session_id, None)
            log.info(
                "mount session %s ended (silent for %g s): what it had open is let go",
                session_id,
                self.sessions.sustain,
            )
        if self.sessions.settled(now):
            freed = self.namespace.free_closed_orphans()
            self.cluster.apply([], freed.garbage, {}, {})
        purge = self.cluster.plan()
        if purge:
            with self.store.transaction():
                self.store.purge_chunks(purge)
            self.cluster.purged(purge)
        self._prune_journal()
        if now - self._replies_pruned > REPLIES_PRUNED_EVERY:
            self._replies_pruned = now
            self.store.prune_replies(self.cluster.wall_clock() - int(REPLIES_KEPT * 1e9))

    def _prune_journal(self) -> None:
        """The journal keeps the changes the newest copy on the keepers lacks (none without
        copies), JOURNAL_MAX at most: keepers that cannot keep up lose the rest, not the master
        its disk."""
        end = self.store.journal_end()
        keep_after = max(self._copied_seq if self.copy_every > 0 else end, end - JOURNAL_MAX)
        if keep_after > self._pruned_seq:
            self.store.prune_journal(keep_after)
            self._pruned_seq = keep_after

    def _ship_loop(self) -> None:
        while not self._stop.wait(SHIP_EVERY):
            try:
                while self.shipper.ship() and not self._stop.is_set():
                    pass
            except Exception:  # keep trying
                log.exception("sending metadata changes failed")

    def _copy_loop(self) -> None:
        # The first copy once the keepers have had time to register, then as copy_interval says.
        first, last = time.monotonic() + self.settings.dead_after + TICK, -math.inf
        while not self._stop.wait(TICK):
            now = time.monotonic()
            holders = self.cluster.copy_keepers = self.copy_holders()
            wanted = min(COPIES, len(self._copy_targets()))
            short = holders < wanted
            if not short:
                self._short_tries = 0
            every = copy_interval(
                self.copy_every,
                short=short,
                short_tries=self._short_tries,
                low_on_room=self.service.low_on_room,
                failed=self._copy_failed,
            )
            if now < first or now - last < every:
                continue
            last = now
            if short and self._copy_holders:
                log.warning("the newest metadata copy is on %d keepers, not %d: another", holders, wanted)
            try:
                self.copy_metadata(again=short)
            except Exception:  # keep trying
                log.exception("metadata copy failed")
                self._copies_failing()
            if short:
                self._short_tries += 1

    def copy_holders(self) -> int:
        """How many of the keepers that took the newest copy hold it still: alive under the same
        id (not one whose disk was replaced), not drained, taking its changes."""
        alive = {(k.address, k.keeper_id) for k in self.cluster.placeable()}
        failing = self.shipper.failing()
        return sum((a, k) in alive and a not in failing for a, k in self._copy_holders.items())

    def copy_metadata(self, again: bool = False) -> list[str]:
        """Sends a copy of the metadata to the keepers with the most free space, on as many
        machines (failure domains) as there are (if anything changed since the last, or again);
        returns the addresses that stored it."""
        changes = self.store.journal_end()
        if changes == self._copied_seq and not again:
            return []
        alive = self._copy_targets()
        if not alive:
            log.warning("no keeper alive to take a copy of the metadata")
            return []
        snapshot = self.data_dir / "copy.sqlite3.tmp"
        snapshot.unlink(missing_ok=True)
        taken = time.time_ns()
        seq = self.store.snapshot(snapshot)
        try:
            size = snapshot.stat().st_size
            keepers = [r.address for r in alive[:COPIES]]
            stored = send_copy(snapshot, self.store.cluster_id(), taken, seq, keepers, self.pool)
        finally:
            snapshot.unlink(missing_ok=True)
        if stored:
            self._copied_seq = seq
            ids = {k.address: k.keeper_id for k in alive}
            self._copy_holders = {address: ids[address] for address in stored}
            self.shipper.follow(taken, seq, stored)
            self.cluster.copy_taken_ns = self.cluster.last_copy_ns = taken
            self.cluster.copy_keepers = len(stored)
            self._copy_failed = False
            log.info("metadata copy (%d bytes) stored on %s", size, ", ".join(stored))
        else:
            self._copies_failing()
        return stored

    def _copy_targets(self) -> list[KeeperView]:
        """The keepers a copy may go to, the best first: those with the most free space, on as
        many machines (failure domains) as there are, and not one whose disk hangs."""
        placeable = self.cluster.placeable()
        answering = [k for k in placeable if not k.stalled] or placeable
        return spread_first(sorted(answering, key=lambda k: -k.free_bytes))

    def _copies_failing(self) -> None:
        # Garbage must not wait for a copy that cannot be stored: full keepers would never get
        # their space back. Until a copy is stored again, a restore may miss some old chunks.
        self._copy_failed = True
        if self.cluster.copy_taken_ns is not None:
            log.warning("no keeper took the metadata copy: garbage is collected without waiting for one meanwhile")
        self.cluster.copy_taken_ns = None
