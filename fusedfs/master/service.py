"""The master's gRPC servicer: decodes requests, calls Namespace and Cluster, encodes replies.

No rules live here; every handler is a few lines of translation. FsError becomes a status with
the errno attached (errors.abort_with).
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import functools
import logging
import stat
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from fusedfs.chunks import MAX_GOAL, format_chunk_id, is_valid_chunk_id, parse_chunk_id
from fusedfs.errors import FsError, abort_with
from fusedfs.grpcutil import ChannelPool
from fusedfs.master.cluster import Cluster, Damage, min_copies
from fusedfs.master.namespace import Added, ChunkChanges, CommittedChunk, Namespace, device_number
from fusedfs.master.sessions import MountSessions
from fusedfs.master.snapshot import make_snapshot
from fusedfs.master.store import ChunkRow, ChunkState, Inode, MetadataStore, Quota, TrashRow
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import master_pb2 as mp
from fusedfs.rpc import master_pb2_grpc

log = logging.getLogger(__name__)

READDIR_PAGE = 1000
MAX_ALLOCATIONS = 256  # chunk ids one AllocateChunks call may reserve
DAMAGED_LIMIT = 1000  # damaged files one Damaged call lists by default
TRASH_LIST_LIMIT = 1000  # trash entries one ListTrash call lists by default
UINT64_MAX = 2**64 - 1
F = TypeVar("F", bound=Callable[..., Any])


def handler(method: F) -> F:
    """Turns FsError into its gRPC status; any other exception into INTERNAL, logged."""

    @functools.wraps(method)
    def wrapper(self: MasterService, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except FsError as e:
            abort_with(context, e)
        except OverflowError:  # a number no inode, offset or size can reach (SQLite keeps signed 64 bits)
            abort_with(context, FsError(errno.EINVAL, f"{method.__name__}: a number in the request is out of range"))
        except Exception:
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__}: internal error (see the master's log)")

    return wrapper  # type: ignore[return-value]


def once(reply_type: type[Message]) -> Callable[[F], F]:
    """A change its client may send again, having got no answer (see Retries in master.proto):
    made with a request_id, it is made once, and its answer is kept (in the transaction that
    makes it, so a master killed in between has made both or neither) for every attempt after."""

    def decorate(method: F) -> F:
        name = method.__name__

        @functools.wraps(method)
        def wrapper(self: MasterService, request: Any, context: grpc.ServicerContext) -> Any:
            request_id = request.request_id
            if not request_id:
                return method(self, request, context)
            with self.store.transaction():
                saved = self.store.saved_reply(request_id, name)
                if saved is not None:
                    return reply_type.FromString(saved)
                reply = method(self, request, context)
                self.store.save_reply(request_id, name, reply.SerializeToString(), self.ns.clock())
                return reply

        return wrapper  # type: ignore[return-value]

    return decorate


def needs_room(method: F) -> F:
    """A change that adds metadata: refused (ENOSPC) while the master's disk has less room than
    its reserve, so that the metadata never fills it. Deletions go on (within the reserve), to
    make room; the master's own bookkeeping too (HDFS's NameNode likewise stops taking changes
    when its disk runs low, though it takes no deletions either)."""

    @functools.wraps(method)
    def wrapper(self: MasterService, request: Any, context: grpc.ServicerContext) -> Any:
        self.check_room()
        return method(self, request, context)

    return wrapper  # type: ignore[return-value]


def to_attr(inode: Inode, ctime_before_ns: int = 0) -> mp.Attr:
    """ctime_before_ns: in the reply to a change, the inode's ctime just before it."""
    return mp.Attr(
        ctime_before_ns=ctime_before_ns,
        inode=inode.id,
        mode=inode.mode,
        nlink=inode.nlink,
        uid=inode.uid,
        gid=inode.gid,
        size=inode.size,
        atime_ns=inode.atime_ns,
        mtime_ns=inode.mtime_ns,
        ctime_ns=inode.ctime_ns,
        chunk_size=inode.chunk_size,
        has_xattrs=inode.has_xattrs,
        rdev=device_number(inode),
        goal=inode.goal,
        stored_bytes=inode.stored if stat.S_ISREG(inode.mode) else None,
    )


def _chunk_number(text: str) -> int:
    if not is_valid_chunk_id(text):
        raise FsError(errno.EINVAL, f"invalid chunk id {text[:40]!r}")
    return parse_chunk_id(text)


def _committed(chunks: Any) -> tuple[list[CommittedChunk], dict[int, list[str]]]:
    committed, stored_on = [], {}
    for c in chunks:
        number = _chunk_number(c.chunk_id)
        replaces = (_chunk_number(c.replaces) if c.replaces else 0) if c.HasField("replaces") else None
        committed.append(CommittedChunk(c.index, number, c.length, c.crc32c, replaces))
        stored_on[number] = list(c.stored_on)
    return committed, stored_on


def _quota_reply(quota: Quota) -> mp.QuotaReply:
    return mp.QuotaReply(
        max_entries=quota.max_entries, max_bytes=quota.max_bytes, entries=quota.entries, bytes=quota.bytes
    )


class MasterService(master_pb2_grpc.MasterServicer):
    def __init__(
        self, namespace: Namespace, store: MetadataStore, cluster: Cluster, sessions: MountSessions, pool: ChannelPool
    ) -> None:
        self.ns = namespace
        self.pool = pool  # (channels to the keepers, for snapshots)
        self.store = store
        self.cluster = cluster
        self.sessions = sessions
        self.cluster_id = store.cluster_id()
        self._refused: set[str] = set()  # keepers of another cluster, logged once each
        self.low_on_room = False  # below the reserve when last asked (server.py then copies the metadata soon)

    def check_room(self) -> None:
        """ENOSPC while the metadata's disk has less room than the reserve (see needs_room)."""
        reserve = self.cluster.settings.reserve_bytes
        room = self.store.room_bytes() if reserve else 1
        low = room < reserve
        if low != self.low_on_room:
            self.low_on_room = low
            if low:
                log.error("the metadata disk has %d MiB of room, below the reserve: only deletions taken", room >> 20)
            else:
                log.warning("the metadata disk has room again (%d MiB): taking every change", room >> 20)
        if low:
            raise FsError(
                errno.ENOSPC,
                f"the master's metadata disk is nearly full ({room >> 20} MiB left, reserve {reserve >> 20} MiB):"
                " only deletions are taken until there is room (deleted files stay in the trash until purged:"
                " fusedfs client MASTER trash purge /)",
            )

    def _apply(
        self,
        changes: ChunkChanges,
        committed: Sequence[CommittedChunk] = (),
        stored_on: dict[int, list[str]] | None = None,
    ) -> None:
        lengths = {c.chunk_id: c.length for c in committed}
        stored = stored_on or {}
        # (once the change is durable: the cluster then deletes garbage, which a change rolled
        # back after it was told, as one made for a request_id could be, would still name)
        self.store.after_commit(
            lambda: self.cluster.apply(changes.live, changes.garbage, lengths, stored, changes.goals)
        )

    # --- namespace -------------------------------------------------------------------------------

    @handler
    def Lookup(self, request: mp.EntryRequest, context: grpc.ServicerContext) -> mp.Attr:
        return to_attr(self.ns.lookup(request.parent, request.name))

    @handler
    def ResolvePath(self, request: mp.PathRequest, context: grpc.ServicerContext) -> mp.Attr:
        return to_attr(self.ns.resolve(request.path))

    @handler
    def GetAttr(self, request: mp.InodeRequest, context: grpc.ServicerContext) -> mp.Attr:
        return to_attr(self.ns.getattr(request.inode))

    @handler
    @once(mp.Attr)
    @needs_room
    def SetAttr(self, request: mp.SetAttrRequest, context: grpc.ServicerContext) -> mp.Attr:
        now = self.ns.clock()
        inode, changes, ctime_before = self.ns.setattr(
            request.inode,
            mode=request.mode if request.HasField("mode") else None,
            uid=request.uid if request.HasField("uid") else None,
            gid=request.gid if request.HasField("gid") else None,
            size=request.size if request.HasField("size") else None,
            atime_ns=now if request.atime_now else (request.atime_ns if request.HasField("atime_ns") else None),
            mtime_ns=now if request.mtime_now else (request.mtime_ns if request.HasField("mtime_ns") else None),
            named=request.named,
        )
        self._apply(changes)
        return to_attr(inode, ctime_before)

    @handler
    def ReadDir(self, request: mp.ReadDirRequest, context: grpc.ServicerContext) -> mp.ReadDirReply:
        limit = min(request.limit or READDIR_PAGE, READDIR_PAGE)
        listing = self.ns.readdir(request.inode, request.after, limit)
        small = self.ns.small_chunks([inode for _, _, inode in listing.entries]) if request.with_small_chunks else {}
        reply = mp.ReadDirReply(more=listing.more, parent=listing.parent, folder=to_attr(listing.folder))
        for cursor, name, inode in listing.entries:
            entry = reply.entries.add(name=name, attr=to_attr(inode), cursor=cursor)
            row = small.get(inode.id)
            if row is not None:
                self._fill_ref(entry.small_chunk, row)
        return reply

    def _fill_ref(self, ref: mp.ChunkRef, row: ChunkRow) -> None:
        ref.index = row.idx or 0
        ref.chunk_id = format_chunk_id(row.id)
        ref.length = row.length
        ref.stored_length = row.stored_length
        ref.crc32c = row.crc
        for view in self.cluster.locations(row.id):
            ref.replicas.add(keeper_id=view.keeper_id, address=view.address)
        ref.lost = not ref.replicas and self.cluster.lost(row.id)

    @handler
    @once(mp.NodeReply)
    @needs_room
    def MakeDir(self, request: mp.MakeNodeRequest, context: grpc.ServicerContext) -> mp.NodeReply:
        return self._node(self.ns.mkdir(request.parent, request.name, request.mode, request.uid, request.gid))

    @handler
    @once(mp.NodeReply)
    @needs_room
    def CreateFile(self, request: mp.MakeNodeRequest, context: grpc.ServicerContext) -> mp.NodeReply:
        added = self.ns.create(request.parent, request.name, request.mode, request.uid, request.gid, request.exclusive)
        return self._node(added)

    @handler
    @once(mp.NodeReply)
    @needs_room
    def Symlink(self, request: mp.SymlinkRequest, context: grpc.ServicerContext) -> mp.NodeReply:
        return self._node(self.ns.symlink(request.parent, request.name, request.target, request.uid, request.gid))

    @handler
    @once(mp.NodeReply)
    @needs_room
    def MakeSpecial(self, request: mp.MakeNodeRequest, context: grpc.ServicerContext) -> mp.NodeReply:
        args = (request.parent, request.name, request.mode, request.uid, request.gid, request.rdev)
        return self._node(self.ns.mknod(*args))

    @handler
    def ReadLink(self, request: mp.InodeRequest, context: grpc.ServicerContext) -> mp.ReadLinkReply:
        return mp.ReadLinkReply(target=self.ns.readlink(request.inode))

    @handler
    @once(mp.NodeReply)
    @needs_room
    def Link(self, request: mp.LinkRequest, context: grpc.ServicerContext) -> mp.NodeReply:
        return self._node(self.ns.link(request.inode, request.new_parent, request.new_name))

    def _node(self, added: Added) -> mp.NodeReply:
        return mp.NodeReply(
            attr=to_attr(added.node),
            folder=to_attr(added.folder),
            folder_ctime_before_ns=added.folder_ctime_before_ns,
        )

    @handler
    @once(mp.Attr)
    def Unlink(self, request: mp.EntryRequest, context: grpc.ServicerContext) -> mp.Attr:
        changes, folder, ctime_before = self.ns.unlink(request.parent, request.name)
        self._apply(changes)
        return to_attr(folder, ctime_before)

    @handler
    @once(mp.Attr)
    def RemoveDir(self, request: mp.EntryRequest, context: grpc.ServicerContext) -> mp.Attr:
        return to_attr(*self.ns.rmdir(request.parent, request.name))

    @handler
    @once(mp.RenameReply)
    @needs_room
    def Rename(self, request: mp.RenameRequest, context: grpc.ServicerContext) -> mp.RenameReply:
        renamed = self.ns.rename(request.parent, request.name, request.new_parent, request.new_name, request.flags)
        self._apply(renamed.changes)
        return mp.RenameReply(
            folder=to_attr(renamed.folder),
            folder_ctime_before_ns=renamed.folder_ctime_before_ns,
            new_folder=to_attr(renamed.new_folder),
            new_folder_ctime_before_ns=renamed.new_folder_ctime_before_ns,
            node=to_attr(renamed.node) if renamed.node is not None else None,
        )

    @handler
    def StatFs(self, request: cp.Empty, context: grpc.ServicerContext) -> mp.StatFsReply:
        # Usable space: what fits when every chunk is stored `goal` times.
        records = [r for r in self.cluster.keeper_records() if r.alive]
        goal = self.cluster.settings.goal
        files, dirs = self._counts()
        return mp.StatFsReply(
            capacity_bytes=min(sum(r.capacity_bytes for r in records) // goal, UINT64_MAX),
            free_bytes=min(sum(r.free_bytes for r in records) // goal, UINT64_MAX),
            files=files + dirs,
        )

    @handler
    @once(cp.Empty)
    @needs_room
    def SetXattr(self, request: mp.SetXattrRequest, context: grpc.ServicerContext) -> cp.Empty:
        self.ns.setxattr(request.inode, request.name, request.value, request.flags)
        return cp.Empty()

    @handler
    def GetXattr(self, request: mp.XattrRequest, context: grpc.ServicerContext) -> mp.XattrReply:
        return mp.XattrReply(value=self.ns.getxattr(request.inode, request.name))

    @handler
    def ListXattr(self, request: mp.InodeRequest, context: grpc.ServicerContext) -> mp.ListXattrReply:
        return mp.ListXattrReply(names=self.ns.listxattr(request.inode))

    @handler
    @once(cp.Empty)
    def RemoveXattr(self, request: mp.XattrRequest, context: grpc.ServicerContext) -> cp.Empty:
        self.ns.removexattr(request.inode, request.name)
        return cp.Empty()

    @handler
    def MountSession(self, request: mp.MountSessionRequest, context: grpc.ServicerContext) -> mp.MountSessionReply:
        if not request.session_id:
            raise FsError(errno.EINVAL, "a session id is required")
        if request.ending:
            self.sessions.end(request.session_id)
            self.store.save_session(request.session_id, None)
        else:
            open_inodes = frozenset(request.open_inodes)
            info = request.info if request.HasField("info") else None
            if self.sessions.announce(request.session_id, open_inodes, self.cluster.clock(), info):
                self.store.save_session(request.session_id, open_inodes)  # (a restart takes them back)
        return mp.MountSessionReply(timeout_seconds=self.sessions.timeout)

    def _orphan_count(self) -> int:
        """Unlinked files that a mount has open (not those only waiting out their grace)."""
        with self.store.transaction():
            orphans = self.store.orphans()
        now = self.cluster.clock()
        return sum(1 for ino in orphans if self.sessions.is_open(ino, now))

    def _counts(self) -> tuple[int, int]:
        """(files, folders): kept by the store as they change (every `df` of every mount asks)."""
        with self.store.transaction():
            return self.store.count_inodes()

    # --- file data -------------------------------------------------------------------------------

    @handler
    def GetChunks(self, request: mp.GetChunksRequest, context: grpc.ServicerContext) -> mp.GetChunksReply:
        inode, rows = self.ns.file_chunks(request.inode, request.first_index, request.count)
        reply = mp.GetChunksReply(attr=to_attr(inode))
        for row in rows:
            self._fill_ref(reply.chunks.add(), row)
        return reply

    @handler
    @needs_room
    def AllocateChunks(
        self, request: mp.AllocateChunksRequest, context: grpc.ServicerContext
    ) -> mp.AllocateChunksReply:
        count = max(1, request.count)
        if count > MAX_ALLOCATIONS:
            raise FsError(errno.EINVAL, f"at most {MAX_ALLOCATIONS} chunks at once, not {count}")
        if request.goal > MAX_GOAL:
            raise FsError(errno.EINVAL, f"goal {request.goal} is out of range (1..{MAX_GOAL}, or 0 for the cluster's)")
        goal, exclude = request.goal or self.cluster.settings.goal, request.exclude_keepers
        if request.derive_from:
            base = _chunk_number(request.derive_from)
            pipelines = [self.cluster.derive_pipeline(base, exclude, request.length, goal)] * count
        else:
            pipelines = [self.cluster.choose_pipeline(exclude, request.length, goal) for _ in range(count)]
        now = self.ns.clock()
        chunks, changes = self.ns.new_chunks(count)
        if changes.garbage:
            self.cluster.apply([], changes.garbage, {}, {})
        reply = mp.AllocateChunksReply(min_copies=min_copies(goal))
        reply.open_keepers.extend(k.keeper_id for k in self.cluster.placeable() if not k.stalled)
        for chunk, pipeline in zip(chunks, pipelines, strict=True):
            self.cluster.reserved(chunk, now)
            reply.chunks.add(
                chunk_id=format_chunk_id(chunk),
                pipeline=[cp.KeeperRef(keeper_id=v.keeper_id, address=v.address) for v in pipeline],
            )
        return reply

    @handler
    def AbandonChunks(self, request: mp.AbandonChunksRequest, context: grpc.ServicerContext) -> cp.Empty:
        self._apply(self.ns.abandon([_chunk_number(c) for c in request.chunk_ids]))
        return cp.Empty()

    @handler
    @once(mp.Attr)
    @needs_room
    def CommitChunks(self, request: mp.CommitChunksRequest, context: grpc.ServicerContext) -> mp.Attr:
        committed, stored_on = _committed(request.chunks)
        mtime = request.mtime_ns if request.HasField("mtime_ns") else None
        appended_at = request.appended_at if request.HasField("appended_at") else None
        inode, changes = self.ns.commit_chunks(request.inode, request.size, committed, mtime, appended_at)
        self._apply(changes, committed, stored_on)
        return to_attr(inode)

    @handler
    @once(mp.Attr)
    @needs_room
    def PutFile(self, request: mp.PutFileRequest, context: grpc.ServicerContext) -> mp.Attr:
        committed, stored_on = _committed(request.chunks)
        mtime = request.mtime_ns if request.HasField("mtime_ns") else None
        inode, changes = self.ns.put_file(
            request.parent,
            request.name,
            request.mode,
            request.uid,
            request.gid,
            request.size,
            request.chunk_size or self.ns.default_chunk_size,
            committed,
            mtime,
        )
        self._apply(changes, committed, stored_on)
        return to_attr(inode)

    @handler
    def ReportBadReplica(self, request: mp.BadReplicaRequest, context: grpc.ServicerContext) -> cp.Empty:
        log.warning("client reports chunk %s on keeper %s bad: %s", request.chunk_id, request.keeper_id, request.reason)
        self.cluster.request_verify(_chunk_number(request.chunk_id), request.keeper_id)
        return cp.Empty()

    # --- cluster ---------------------------------------------------------------------------------

    @handler
    def GetConfig(self, request: cp.Empty, context: grpc.ServicerContext) -> mp.ConfigReply:
        settings = self.cluster.settings
        return mp.ConfigReply(chunk_size=settings.chunk_size, goal=settings.goal, min_copies=settings.min_copies)

    @handler
    def Status(self, request: cp.Empty, context: grpc.ServicerContext) -> mp.StatusReply:
        return self.status()

    def status(self) -> mp.StatusReply:
        """The cluster at a glance (also the master's metrics)."""
        now = self.cluster.clock()
        health = self.cluster.health()
        files, dirs = self._counts()
        mounts = self.sessions.connected(now)
        reply = mp.StatusReply(
            files=files,
            directories=dirs,
            goal=self.cluster.settings.goal,
            chunk_size=self.cluster.settings.chunk_size,
            chunks=mp.ChunkHealth(**dataclasses.asdict(health)),
            mounts=len(mounts),
            connected_mounts=[
                mp.MountStatus(info=m.info, silent_seconds=m.silent, open_files=m.open_files) for m in mounts
            ],
            open_orphans=self._orphan_count(),
            cluster_id=self.cluster_id,
            metadata_copy_taken_ns=self.cluster.last_copy_ns,
            metadata_copy_keepers=self.cluster.copy_keepers,
            metadata_changes_unsent=self.cluster.changes_unsent(),
            trash_hours=self.cluster.settings.trash_seconds / 3600,
            metadata_room_bytes=max(0, self.store.room_bytes()),
            metadata_reserve_bytes=self.cluster.settings.reserve_bytes,
        )
        with self.store.transaction():
            reply.trash_files, reply.trash_bytes = self.store.trash_totals()
        for r in self.cluster.keeper_records():
            reply.keepers.add(
                keeper_id=r.keeper_id,
                address=r.address,
                alive=r.alive,
                capacity_bytes=r.capacity_bytes,
                used_bytes=r.used_bytes,
                free_bytes=r.free_bytes,
                chunks=len(r.chunks),
                load=r.load,
                seconds_since_heartbeat=now - r.last_seen,
                scrub_checked=r.scrub_checked,
                scrub_bad=r.scrub_bad,
                failure_domain=r.domain,
                draining=r.keeper_id in self.cluster.draining,
                chunks_to_move=self.cluster.chunks_to_move(r.keeper_id),
                disk_stalled_seconds=r.disk_stalled,
                damaged_copies=r.damaged_copies,
            )
        return reply

    @handler
    def Damaged(self, request: mp.DamagedRequest, context: grpc.ServicerContext) -> mp.DamagedReply:
        damaged = self.cluster.damaged()
        per_file: dict[int, list[int]] = {}  # inode -> chunks by Damage (lost, unavailable, under-replicated)
        with self.store.reading() as moment:  # (a dead keeper's chunks may be millions: nothing waits for them)
            for chunk, damage in damaged.items():
                row = moment.get_chunk(chunk)
                if row is not None and row.inode is not None:
                    per_file.setdefault(row.inode, [0] * len(Damage))[damage] += 1
        worst_first = sorted(per_file.items(), key=lambda item: ([-n for n in item[1]], item[0]))
        limit = request.limit or DAMAGED_LIMIT
        counts = collections.Counter(damaged.values())
        reply = mp.DamagedReply(
            lost_chunks=counts[Damage.LOST],
            unavailable_chunks=counts[Damage.UNAVAILABLE],
            under_replicated_chunks=counts[Damage.UNDER_REPLICATED],
            truncated=len(worst_first) > limit,
        )
        for ino, (lost, unavailable, under) in worst_first[:limit]:
            path = self.ns.path_of(ino) or b""
            reply.files.add(
                inode=ino, path=path, lost_chunks=lost, unavailable_chunks=unavailable, under_replicated_chunks=under
            )
        return reply

    @handler
    def Usage(self, request: mp.PathRequest, context: grpc.ServicerContext) -> mp.UsageReply:
        total, folders, others = self.ns.usage(request.path, self.cluster.settings.goal)
        reply = mp.UsageReply(
            total=mp.SpaceUsage(**dataclasses.asdict(total)),
            others=mp.SpaceUsage(**dataclasses.asdict(others)),
            goal=self.cluster.settings.goal,
        )
        for name, usage in folders:
            reply.folders.add(name=name, usage=mp.SpaceUsage(**dataclasses.asdict(usage)))
        return reply

    @handler
    def GetGoal(self, request: mp.PathRequest, context: grpc.ServicerContext) -> mp.GoalReply:
        goal = self.ns.resolve(request.path).goal
        cluster_goal = self.cluster.settings.goal
        return mp.GoalReply(goal=goal or cluster_goal, own=bool(goal), cluster_goal=cluster_goal)

    @handler
    @needs_room
    def SetGoal(self, request: mp.SetGoalRequest, context: grpc.ServicerContext) -> mp.SetGoalReply:
        change = self.ns.set_goal(request.path, request.goal, request.recursive)
        self.cluster.set_goals(change.chunks)
        return mp.SetGoalReply(files=change.files, folders=change.folders, chunks=len(change.chunks))

    @handler
    def SetChunkSize(self, request: mp.SetChunkSizeRequest, context: grpc.ServicerContext) -> mp.SetChunkSizeReply:
        return mp.SetChunkSizeReply(folders=self.ns.set_chunk_size(request.path, request.chunk_size, request.recursive))

    # --- the trash -------------------------------------------------------------------------------

    @handler
    def GetQuota(self, request: mp.PathRequest, context: grpc.ServicerContext) -> mp.QuotaReply:
        return _quota_reply(self.ns.quota(request.path))

    @handler
    @needs_room
    def SetQuota(self, request: mp.SetQuotaRequest, context: grpc.ServicerContext) -> mp.QuotaReply:
        return _quota_reply(self.ns.quota(request.path, (request.max_entries, request.max_bytes)))

    @handler
    @needs_room
    def Snapshot(self, request: mp.SnapshotRequest, context: grpc.ServicerContext) -> mp.SnapshotReply:
        made = make_snapshot(self.ns, self.cluster, self.pool, request.source, request.destination)
        return mp.SnapshotReply(files=made.files, folders=made.folders, chunks=made.chunks)

    @handler
    def ListTrash(self, request: mp.ListTrashRequest, context: grpc.ServicerContext) -> mp.ListTrashReply:
        rows = self.ns.list_trash(request.path or "/")
        limit = request.limit or TRASH_LIST_LIMIT
        reply = mp.ListTrashReply(files=len(rows), bytes=sum(r.size for r in rows), truncated=len(rows) > limit)
        reply.entries.extend(self._trash_entry(r) for r in rows[:limit])
        return reply

    @handler
    @needs_room
    def RestoreTrash(self, request: mp.RestoreTrashRequest, context: grpc.ServicerContext) -> mp.RestoreTrashReply:
        if not request.inode and not request.path:
            raise FsError(errno.EINVAL, "restore needs a path or an inode")
        restored, skipped = self.ns.restore_trash(request.path, request.inode)
        return mp.RestoreTrashReply(
            restored=[self._trash_entry(r) for r in restored], skipped=[self._trash_entry(r) for r in skipped]
        )

    @handler
    def PurgeTrash(self, request: mp.PurgeTrashRequest, context: grpc.ServicerContext) -> mp.PurgeTrashReply:
        if not request.inode and not request.path:
            raise FsError(errno.EINVAL, "purge needs a path (/ for all) or an inode")
        rows = self.ns.purge_trash(request.path or "/", request.inode)
        return mp.PurgeTrashReply(files=len(rows), bytes=sum(r.size for r in rows))

    def _trash_entry(self, row: TrashRow) -> mp.TrashEntry:
        keep = int(self.cluster.settings.trash_seconds * 1e9)
        return mp.TrashEntry(
            inode=row.inode, path=row.path, size=row.size, deleted_ns=row.deleted_ns, expires_ns=row.deleted_ns + keep
        )

    @handler
    def Drain(self, request: mp.DrainRequest, context: grpc.ServicerContext) -> mp.DrainReply:
        wanted = request.keeper
        matches = [
            r
            for r in self.cluster.keeper_records()
            if r.address == wanted or r.keeper_id == wanted or (len(wanted) >= 8 and r.keeper_id.startswith(wanted))
        ]
        if len(matches) != 1:
            raise FsError(
                errno.ENOENT if not matches else errno.EINVAL,
                f"no keeper is {wanted!r}" if not matches else f"{wanted!r} names {len(matches)} keepers",
            )
        record = matches[0]
        with self.store.transaction():
            self.store.set_draining(record.keeper_id, not request.undo, self.ns.clock())
        self.cluster.set_draining(record.keeper_id, not request.undo)
        return mp.DrainReply(keeper_id=record.keeper_id, address=record.address)

    @handler
    def RegisterKeeper(
        self, request: mp.RegisterKeeperRequest, context: grpc.ServicerContext
    ) -> mp.RegisterKeeperReply:
        if not request.keeper.keeper_id or not request.keeper.address:
            raise FsError(errno.EINVAL, "a keeper registers with an id and an address")
        if request.cluster_id and request.cluster_id != self.cluster_id:
            # FAILED_PRECONDITION (EXDEV: "not the same file system"); the keeper keeps asking.
            reason = (
                f"keeper {request.keeper.keeper_id} at {request.keeper.address} holds chunks of cluster "
                f"{request.cluster_id}, and this master keeps the metadata of cluster {self.cluster_id}: "
                "refused, so that its chunks are not taken for garbage (was the master started on an "
                "empty or wrong --data?)"
            )
            if request.keeper.keeper_id not in self._refused:
                self._refused.add(request.keeper.keeper_id)
                log.error("%s", reason)
            raise FsError(errno.EXDEV, reason)
        self.cluster.register(
            request.keeper.keeper_id,
            request.keeper.address,
            request.capacity_bytes,
            request.used_bytes,
            request.free_bytes,
            list(request.chunk_ids),
            request.failure_domain,
        )
        return mp.RegisterKeeperReply(cluster_id=self.cluster_id)

    @handler
    def Heartbeat(self, request: mp.HeartbeatRequest, context: grpc.ServicerContext) -> mp.HeartbeatReply:
        commands = self.cluster.heartbeat(
            request.keeper_id,
            request.capacity_bytes,
            request.used_bytes,
            request.free_bytes,
            request.load,
            list(request.added),
            list(request.removed),
            [(c.chunk_id, c.target_id, c.ok) for c in request.copies_done],
            scrub=(request.scrub_checked, request.scrub_bad),
            disk_stalled=request.disk_stalled_seconds,
            damaged_copies=request.damaged_copies,
        )
        return mp.HeartbeatReply(
            reregister=commands.reregister,
            delete=[format_chunk_id(c) for c in commands.deletes],
            copy=[
                mp.CopyCommand(
                    chunk_id=format_chunk_id(c), target=cp.KeeperRef(keeper_id=v.keeper_id, address=v.address)
                )
                for c, v in commands.copies
            ],
            verify=[self._verify_command(c) for c in commands.verifies],
        )

    def _verify_command(self, chunk: int) -> mp.VerifyCommand:
        """A check of a keeper's copy, against what the chunk holds when the store knows it."""
        command = mp.VerifyCommand(chunk_id=format_chunk_id(chunk))
        with self.store.transaction():
            row = self.store.get_chunk(chunk)
        if row is not None and row.state == ChunkState.LIVE:
            command.length, command.crc32c = row.stored_length, row.crc
        return command
