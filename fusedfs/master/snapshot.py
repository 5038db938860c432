"""Snapshots (MooseFS's mfsmakesnapshot): a copy of a file or folder tree as it is now, made at
once and at no cost of space.

Chunks never change once written (a change makes a new chunk), so a copy's chunks can be further
names of the source's: the master reads the tree (at one moment, through a view of the store
of its own) SNAPSHOT_BATCH nodes at a time, and for each batch reserves a new chunk id for each
of its chunks, asks each keeper holding one to link it under the new id (`LinkChunks`, a hard
link on the keeper's disk), then puts the batch's copy in the namespace with the new chunks on
the keepers that linked them, below a top named at the end (namespace.TreeCopy). What it
holds in memory is a batch, whatever the tree's size. Changing either file later makes new
chunks of its own; deleting one frees only its own names. A chunk no keeper could link (its
keepers died meanwhile) fails the snapshot, EIO, and what was made goes, its chunks garbage:
nothing half made stays.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections import defaultdict
from dataclasses import astuple, dataclass

import grpc

from fusedfs.chunks import MAX_LINKS, format_chunk_id, parse_chunk_id
from fusedfs.errors import FsError, from_rpc_error
from fusedfs.grpcutil import ChannelPool
from fusedfs.master.cluster import Cluster
from fusedfs.master.namespace import ChunkChanges, Namespace, TreeCopy, TreeNode
from fusedfs.master.placement import KeeperView
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc

log = logging.getLogger(__name__)

LINK_TIMEOUT = 30.0  # seconds a keeper gets to link a batch (MAX_LINKS hard links, a few fsyncs)


@dataclass(frozen=True)
class Made:
    files: int
    folders: int
    chunks: int


Keeper = tuple[str, str]  # (keeper id, address)


def link_plan(
    sources: list[int], new_ids: dict[int, int], holders: dict[int, list[KeeperView]]
) -> dict[Keeper, list[tuple[int, int]]]:
    """For each keeper, the (new chunk, source chunk) pairs it is asked to link: every alive
    holder of each source, so that a copy starts with as many copies as its source has."""
    plan: dict[Keeper, list[tuple[int, int]]] = defaultdict(list)
    for source in sources:
        for keeper in holders.get(source, []):
            plan[keeper.keeper_id, keeper.address].append((new_ids[source], source))
    return dict(plan)


def make_snapshot(namespace: Namespace, cluster: Cluster, pool: ChannelPool, source: str, destination: str) -> Made:
    copy = namespace.copy_tree(destination)
    chunks = 0
    try:
        with contextlib.closing(namespace.read_tree(source)) as batches:  # (its view of the store)
            for nodes in batches:
                chunks += _copy_batch(namespace, cluster, pool, copy, nodes, source)
        copy.name()
    except BaseException:
        changes = ChunkChanges()
        copy.remove(changes)
        cluster.apply([], changes.garbage, {}, {})
        raise
    made = Made(copy.files, copy.folders_made, chunks)
    log.info("snapshot of %s at %s: %d files, %d folders, %d chunks", source, destination, *astuple(made))
    return made


def _copy_batch(
    namespace: Namespace, cluster: Cluster, pool: ChannelPool, copy: TreeCopy, nodes: list[TreeNode], source: str
) -> int:
    """Puts a batch of the tree's nodes into the copy, each of their chunks linked under a new
    id on the keepers holding it; returns how many chunks. On failure the ids become garbage."""
    sources = [row.id for node in nodes for row in node.chunks]
    now = namespace.clock()
    new_ids = dict(zip(sources, namespace.reserve_chunks(len(sources)), strict=True))
    for chunk in new_ids.values():
        cluster.reserved(chunk, now)
    changes = ChunkChanges()
    try:
        stored_on = link_on_keepers(link_plan(sources, new_ids, {c: cluster.locations(c) for c in sources}), pool)
        unlinked = [c for c in sources if not stored_on.get(new_ids[c])]
        if unlinked:
            raise FsError(
                errno.EIO,
                f"{len(unlinked)} chunks of {source} (the first: {format_chunk_id(unlinked[0])}) could not be"
                " linked on any keeper: their files changed meanwhile (try again), or they are lost (see fsck)",
            )
        copy.put(nodes, new_ids, changes)
    except BaseException:
        cluster.apply([], namespace.abandon(list(new_ids.values())).garbage, {}, {})  # (those not live)
        raise
    lengths = {new_ids[row.id]: row.stored_length for node in nodes for row in node.chunks}
    cluster.apply(changes.live, [], lengths, stored_on, changes.goals)
    return len(sources)


def link_on_keepers(plan: dict[Keeper, list[tuple[int, int]]], pool: ChannelPool) -> dict[int, list[str]]:
    """Asks each keeper (all at once, MAX_LINKS pairs a call) to link its pairs; returns, for
    each new chunk, the ids of the keepers that stored it. A keeper that fails is left out."""
    calls = []
    for (keeper_id, address), pairs in plan.items():
        stub = pool.stub(address, keeper_pb2_grpc.KeeperStub)
        for start in range(0, len(pairs), MAX_LINKS):
            links = [
                kp.ChunkLink(chunk_id=format_chunk_id(new), source_id=format_chunk_id(old))
                for new, old in pairs[start : start + MAX_LINKS]
            ]
            asked = {link.chunk_id for link in links}
            request = kp.LinkChunksRequest(links=links)
            calls.append((keeper_id, address, asked, stub.LinkChunks.future(request, timeout=LINK_TIMEOUT)))
    stored_on: dict[int, list[str]] = defaultdict(list)
    for keeper_id, address, asked, call in calls:
        try:
            linked = call.result().linked
        except grpc.RpcError as e:
            log.warning("keeper %s did not link a snapshot's chunks: %s", address, from_rpc_error(e).message)
            continue
        for chunk in set(linked) & asked:
            stored_on[parse_chunk_id(chunk)].append(keeper_id)
    return dict(stored_on)
