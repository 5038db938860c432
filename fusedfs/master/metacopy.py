"""Copies of the master's metadata on the keepers, so that the namespace outlives the master's
disk: taken every few minutes (SQLite's online backup) and sent to the keepers with the most
free space; `fusedfs master --restore-from KEEPER` fetches the newest back into an empty --data.

A restored master has lost what changed after its copy was taken. So that nothing it still
names is gone, garbage is deleted only once a copy shows it unreferenced (Cluster.copy_taken_ns);
and its chunk counter moves on by RESTORE_ID_GAP, so that ids issued after the copy, which
keepers may hold with other bytes, are never issued again.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from fusedfs.chunks import MiB, crc32c, file_pieces
from fusedfs.errors import FsError, from_rpc_error
from fusedfs.grpcutil import ChannelPool
from fusedfs.master.store import SqliteStore
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc

log = logging.getLogger(__name__)

COPIES = 3  # keepers each copy goes to
RESTORE_ID_GAP = 1 << 32
METADATA_FILE = "metadata.sqlite3"
MIN_COPY_RATE = 4 * MiB  # bytes/s a keeper taking a copy must keep up
FETCH_TIMEOUT = 3600.0


def copy_timeout(length: int) -> float:
    """Seconds a keeper gets to take a copy of `length` bytes: generous for a slow disk, yet a
    stuck keeper must not hold up the copies (and the garbage collection waiting for them)."""
    return 30.0 + length / MIN_COPY_RATE


def send_copy(snapshot: Path, cluster_id: str, taken_ns: int, keepers: list[str], pool: ChannelPool) -> list[str]:
    """Sends a snapshot file to the keepers at these addresses, all at once; returns those that
    stored it."""
    crc = 0
    for piece in file_pieces(snapshot):
        crc = crc32c(piece, crc)
    length = snapshot.stat().st_size
    header = kp.MetadataCopyHeader(cluster_id=cluster_id, taken_ns=taken_ns, length=length, crc32c=crc)

    def messages() -> Iterator[kp.MetadataCopyPiece]:
        yield kp.MetadataCopyPiece(header=header)
        for piece in file_pieces(snapshot):
            yield kp.MetadataCopyPiece(data=piece)

    timeout = copy_timeout(length)
    calls = {
        address: pool.stub(address, keeper_pb2_grpc.KeeperStub).PutMetadataCopy.future(messages(), timeout=timeout)
        for address in keepers
    }
    stored = []
    for address, call in calls.items():
        try:
            call.result()
            stored.append(address)
        except grpc.RpcError as e:
            log.warning("metadata copy to keeper %s failed: %s", address, from_rpc_error(e).message)
    return stored


def fetch_copy(keeper: str, data_dir: Path, pool: ChannelPool) -> kp.MetadataCopyHeader:
    """Fetches the keeper's newest copy as data_dir's metadata (which must not exist yet),
    checked against its length and checksum; FsError when that cannot be done."""
    dest = data_dir / METADATA_FILE
    if dest.exists():
        raise FsError(errno.EEXIST, f"{data_dir} already holds metadata: restore into an empty folder")
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f"{METADATA_FILE}.restoring"
    try:
        replies = pool.stub(keeper, keeper_pb2_grpc.KeeperStub).GetMetadataCopy(cp.Empty(), timeout=FETCH_TIMEOUT)
        first = next(replies)
        if not first.HasField("header"):
            raise FsError(errno.EBADMSG, f"keeper {keeper} sent a copy without its header")
        header = first.header
        crc, length = 0, 0
        with open(tmp, "wb") as f:
            for message in replies:
                crc = crc32c(message.data, crc)
                length += len(message.data)
                f.write(message.data)
            f.flush()
            os.fsync(f.fileno())
        if (length, crc) != (header.length, header.crc32c):
            raise FsError(errno.EBADMSG, f"keeper {keeper}'s copy is damaged ({length} bytes): try another keeper")
        # The counter moves on before the file takes its place: a restore is whole or not at all.
        store = SqliteStore(tmp, stat.S_IFDIR | 0o755, now_ns=time.time_ns())
        store.skip_chunk_ids(RESTORE_ID_GAP)
        store.close()
        os.replace(tmp, dest)
        return header
    except grpc.RpcError as e:
        raise from_rpc_error(e, f"metadata copy from keeper {keeper}") from None
    finally:
        tmp.unlink(missing_ok=True)
