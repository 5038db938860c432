"""The bridges from trio handlers to the cluster: async master calls, and threads for the rest.

pyfuse3 runs every handler as a trio task in one thread: a blocking gRPC call there would stall
the whole mount. Master calls, and reads within one piece, use gRPC futures whose completion
wakes the waiting task (no thread hop, ~0.2 ms less per call: grpcutil keeps the channel's own
completion thread); chunk transfers that stream go to worker threads. Every wait is bounded by
the client library or a gRPC timeout, so none hangs forever.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import trio

from fusedfs.client.master import MasterClient
from fusedfs.client.transfer import KEEPER_TIMEOUT, ChunkTransfer, RangeRead, read_end, replica_order
from fusedfs.errors import FsError
from fusedfs.rpc import master_pb2 as mp

T = TypeVar("T")

# Enough for a few uploads and reads at once, bounded so a stuck cluster cannot pile up threads.
_LIMITER = trio.CapacityLimiter(32)


async def run(fn: Callable[..., T], *args: object) -> T:
    return await trio.to_thread.run_sync(fn, *args, limiter=_LIMITER)


async def wait_future(future: Any) -> Any:
    """The outcome of a gRPC call's future; its completion wakes this task. Cancelling the task
    cancels the call."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    future.add_done_callback(lambda _: token.run_sync_soon(done.set))
    try:
        await done.wait()
    except BaseException:
        future.cancel()
        raise
    return future.result()


async def call_master(master: MasterClient, method: str, request: Any, wait: float | None = None) -> Any:
    """MasterClient.call for trio: the same retries and bound, without a thread."""
    deadline = master.deadline(wait)
    rpc = getattr(master.stub, method)
    while True:
        try:
            return await wait_future(rpc.future(request, timeout=master.remaining(deadline), wait_for_ready=True))
        except grpc.RpcError as e:
            delay = master.retry_delay(e, deadline)
        await trio.sleep(delay)


async def read_parts(
    transfer: ChunkTransfer, inode: int, ref: mp.ChunkRef, offset: int = 0, length: int | None = None
) -> list[memoryview]:
    """ChunkTransfer.read_parts for trio. A range within one piece (a random read, a small file)
    is asked of its first replica without a thread; a longer one, or any failure, takes the
    whole way in a worker thread (every replica, bad ones reported, locations refreshed)."""
    end = read_end(ref, offset, length)
    if offset >= end:
        return []
    read = RangeRead(ref, offset, end)
    if read.one_piece and ref.replicas:
        keeper = transfer.keeper(replica_order(ref)[0].address)
        with contextlib.suppress(grpc.RpcError, FsError):  # (the whole way says what went wrong)
            return read.check([await wait_future(keeper.ReadSmallRange.future(read.request, timeout=KEEPER_TIMEOUT))])
    return await run(transfer.read_parts, inode, ref, offset, length)
