"""Short-circuit reads: chunks read straight from the disk of a keeper on this machine.

A client on the same machine as a keeper (a box that both stores and mounts; the embedded
cluster) need not ask that keeper over gRPC for a chunk it holds: the chunk's file is on a disk
this process can read, and it never changes once written (chunkfile.py). Reading it directly
spares both processes a gRPC call and the copies of the data in between, as HDFS's short-circuit
local reads do.

A keeper's folder is used only once the keeper has said where it is (GetDataFolder) and its id
was found in that folder: a folder of the same name that belongs to another keeper (another
machine's keeper, a copy) is never taken for it. The pieces read are checked by the caller just
as those a keeper sends are, so rot found here is reported and repaired the same way; anything
else (the file deleted, no permission, a disk error) falls back to asking the keeper.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from fusedfs.chunkfile import KEEPER_ID_FILE, ChunkFile, CorruptChunk, Piece, chunk_path
from fusedfs.errors import FsError
from fusedfs.grpcutil import ChannelPool
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc
from fusedfs.rpc import master_pb2 as mp

log = logging.getLogger(__name__)

ASK_AGAIN_AFTER = 30.0  # seconds before asking again a keeper that did not say where its folder is
ASK_TIMEOUT = 1.0  # (until then, reads that meet the keeper take the slower, unhedged way)
RECENT_WEIGHT = 0.1  # of the newest read in the running mean of how long reads here take


def readable_folder(said: kp.DataFolder, keeper_id: str) -> Path | None:
    """The folder a keeper said it keeps its chunks in, if this process can read it and it holds
    that keeper's id (a folder of that name on another machine, or another keeper's, does not)."""
    if said.keeper_id != keeper_id or not said.path:
        return None
    folder = Path(said.path)
    try:
        return folder if (folder / KEEPER_ID_FILE).read_text().strip() == keeper_id else None
    except OSError:  # on another machine, or not ours to read
        return None


class ShortCircuit:
    """The data folders of the keepers on this machine that this process can read. Thread-safe."""

    def __init__(self, pool: ChannelPool, enabled: bool = True) -> None:
        self._pool = pool
        self.enabled = enabled
        self._lock = threading.Lock()
        self._folders: dict[str, Future[Path | None]] = {}  # keeper id -> its folder (None: not readable here)
        # keeper id -> the answer awaited (or the last that failed: None), and when it was asked
        self._asking: dict[str, tuple[Future[Path | None], float]] = {}
        # (Few: a disk that hangs holds its reads, and the reads queued behind them wait, while
        # their callers ask the keepers over the network instead.)
        self._threads = ThreadPoolExecutor(8, thread_name_prefix="short-circuit")
        self._reading = 0  # reads submitted and not done
        self._recent = 0.0  # seconds a read here took, a running mean

    def ask(self, keeper: cp.KeeperRef) -> Future[Path | None]:
        """The keeper's data folder if this process can read it (else None), as a future: done
        at once when known, else the keeper is asked (once; again after ASK_AGAIN_AFTER when
        it did not answer). Never blocks."""
        with self._lock:
            known = self._folders.get(keeper.keeper_id)
            if known is not None:
                return known
            asking = self._asking.get(keeper.keeper_id)
            if asking is not None and (not asking[0].done() or time.monotonic() - asking[1] < ASK_AGAIN_AFTER):
                return asking[0]
            answer: Future[Path | None] = Future()
            if not self.enabled:
                answer.set_result(None)
                self._folders[keeper.keeper_id] = answer
                return answer
            self._asking[keeper.keeper_id] = (answer, time.monotonic())
        stub = self._pool.stub(keeper.address, keeper_pb2_grpc.KeeperStub)
        call = stub.GetDataFolder.future(cp.Empty(), timeout=ASK_TIMEOUT)
        call.add_done_callback(lambda done: self._learn(keeper.keeper_id, done, answer))
        return answer

    def folder(self, keeper: cp.KeeperRef) -> Path | None:
        """The keeper's data folder if known and readable here; never blocks."""
        answer = self.ask(keeper)
        return answer.result() if answer.done() else None

    def _learn(self, keeper_id: str, call: Any, answer: Future[Path | None]) -> None:
        try:
            said = call.result()
        except grpc.RpcError:
            answer.set_result(None)  # asked again later
            return
        folder = readable_folder(said, keeper_id)
        answer.set_result(folder)
        if said.keeper_id == keeper_id:  # (else another keeper has that address now: ask again later)
            with self._lock:
                self._folders[keeper_id] = answer
        if folder is not None:
            log.info("reading keeper %s's chunks from its folder %s", keeper_id, folder)

    def pieces(self, keeper: cp.KeeperRef, ref: mp.ChunkRef, start: int, size: int) -> list[Piece]:
        """The block-aligned pieces of [start, start + size) of the chunk from the keeper's file,
        unchecked (the caller checks them as it does a keeper's). ENOENT when the file cannot be
        read here (ask the keeper instead); EBADMSG when it is not the chunk the master knows."""
        folder = self.folder(keeper)
        if folder is None:
            raise FsError(errno.ENOENT, f"keeper {keeper.address} keeps no folder this process can read")
        try:
            with ChunkFile(ref.chunk_id, chunk_path(folder, ref.chunk_id)) as chunk:
                if chunk.header.length != ref.stored_length or chunk.header.crc != ref.crc32c:
                    raise CorruptChunk(f"chunk {ref.chunk_id}: file does not match the master's length and checksum")
                return list(chunk.pieces(start, size, verify=False))
        except CorruptChunk as e:
            raise FsError(errno.EBADMSG, str(e)) from None
        except FileNotFoundError:  # deleted or moved since the master heard: the keeper will say
            raise FsError(errno.ENOENT, f"chunk {ref.chunk_id} is not in {folder}") from None
        except OSError as e:
            log.warning("short-circuit read of chunk %s failed (%s): asking keeper %s", ref.chunk_id, e, keeper.address)
            raise FsError(errno.ENOENT, f"chunk {ref.chunk_id} could not be read from {folder}: {e}") from None

    def submit(self, keeper: cp.KeeperRef, ref: mp.ChunkRef, start: int, size: int) -> Future[list[Piece]]:
        """pieces() in a thread of this reader's own, for callers that must not block, or not
        for long (a disk that hangs)."""
        started = time.monotonic()
        with self._lock:
            self._reading += 1

        def read() -> list[Piece]:
            try:
                return self.pieces(keeper, ref, start, size)
            finally:  # (counted before the caller hears: its next read finds none under way)
                with self._lock:
                    self._reading -= 1
                    self._recent += RECENT_WEIGHT * (time.monotonic() - started - self._recent)

        return self._threads.submit(read)

    def idle_and_quick(self, within: float) -> bool:
        """No read is under way here, and reads took well under `within` seconds lately: a
        caller that must not block for long may wait that long for the next one it submits."""
        with self._lock:
            return self._reading == 0 and self._recent < within / 2
