"""The bridges from trio handlers to the cluster: async master calls, and threads for the rest.

pyfuse3 runs every handler as a trio task in one thread: a blocking gRPC call there would stall
the whole mount. Master calls, and reads within one piece, use gRPC futures whose completion
wakes the waiting task (no thread hop, ~0.2 ms less per call: grpcutil keeps the channel's own
completion thread); chunk transfers that stream go to worker threads. Every wait is bounded by
the client library or a gRPC timeout, so none hangs forever.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import trio

from fusedfs.client.master import MasterClient, identified, own_deadline
from fusedfs.client.transfer import ChunkTransfer, RangeRead, keeper_failed, read_end, read_error, transfer_timeout
from fusedfs.errors import FsError
from fusedfs.rpc import master_pb2 as mp

T = TypeVar("T")

# Enough for a few uploads and reads at once, bounded so a stuck cluster cannot pile up threads.
_LIMITER = trio.CapacityLimiter(32)
# A small read not answered by then is asked of the next replica too: a keeper that hangs
# (cut off, stalled) would otherwise hold it until gRPC's keepalive gives up on it (2-4 s).
# Normal answers take a few milliseconds.
HEDGE_AFTER = 0.1
LOCAL_WAIT = 0.002  # seconds the event loop waits for a small read from a disk of this machine


async def run(fn: Callable[..., T], *args: object) -> T:
    return await trio.to_thread.run_sync(fn, *args, limiter=_LIMITER)


def start_background(nursery: trio.Nursery, fn: Callable[..., Awaitable[object]], *args: object) -> None:
    """Starts fn(*args) in nursery as a task that may outlive the request that starts it (an
    upload, a prefetch): its calls wait for the cluster as long as they allow, not as long as
    that request has left."""

    async def on_its_own() -> None:
        own_deadline()
        await fn(*args)

    nursery.start_soon(on_its_own, name=getattr(fn, "__qualname__", None))


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
    identified(request)
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
    is read hedged without a worker thread: from the disk of a replica on this machine (in a
    short-circuit thread), then asked of the keepers; a longer one, or any failure, takes the
    whole way in a worker thread (every replica, bad ones reported, locations refreshed)."""
    end = read_end(ref, offset, length)
    if offset >= end:
        return []
    transfer.fail_if_just_unreadable(ref.chunk_id)
    read = RangeRead(ref, offset, end)
    replicas, known = transfer.replica_order(ref)
    if read.one_piece and replicas and known:  # (else the thread waits for the keepers to say where they are)
        local = None
        if transfer.local.folder(replicas[0]) is not None:  # its disk first, then the keepers, that one first
            quick = transfer.local.idle_and_quick(LOCAL_WAIT)
            local = transfer.local.submit(replicas[0], ref, read.start, read.size)
            if quick:
                with contextlib.suppress(concurrent.futures.TimeoutError, FsError):
                    # Waited for here, holding up the event loop LOCAL_WAIT at most: this
                    # machine's disk answers sooner, and the task's wake-up by the thread cost a
                    # random read as much as the read (reads in parallel, or a slow disk, are
                    # waited for as a keeper's answer is).
                    return read.check(local.result(timeout=LOCAL_WAIT))
        # (within the request's deadline: the whole way after it gets what is left of it)
        timeout = min(transfer_timeout(read.size), transfer.master.deadline().wait)
        sources: list[Callable[[], Any]] = [
            functools.partial(transfer.keeper(r.address).ReadSmallRange.future, read.request, timeout=timeout)
            for r in replicas
        ]
        if local is not None:
            replicas.insert(0, replicas[0])
            sources.insert(0, lambda: local)
        with contextlib.suppress(grpc.RpcError, FsError):  # (the whole way says what went wrong)
            answer, failures = await first_answer(sources, HEDGE_AFTER)
            for index, error in failures:
                failure = error if isinstance(error, FsError) else read_error(error)
                keeper_failed(replicas[index].address, "read", failure.errno)
                if failure.errno == errno.EBADMSG:  # read around, and reported: it gets replaced
                    await run(transfer.report_bad, ref.chunk_id, replicas[index].keeper_id, failure.message)
            return read.check(answer if isinstance(answer, list) else [answer])  # (the disk's pieces, or a keeper's)
    return await run(transfer.read_parts, inode, ref, offset, length)


async def first_answer(calls: Sequence[Callable[[], Any]], hedge_after: float) -> tuple[Any, list[tuple[int, Any]]]:
    """The first successful outcome of calls (each starts a gRPC call or a thread's work and
    returns its future), and the calls that failed before it (their index, their error).
    Hedged: the next call starts when those so far have all failed, or none has answered
    within hedge_after seconds. Raises the last failure if all fail. The calls still running
    are cancelled on the way out."""
    token = trio.lowlevel.current_trio_token()
    send, receive = trio.open_memory_channel[Any](len(calls))  # each future ends once
    started: list[Any] = []
    failures: list[tuple[int, Any]] = []

    def start_next() -> None:
        future = calls[len(started)]()
        future.add_done_callback(lambda done: token.run_sync_soon(send.send_nowait, done))
        started.append(future)

    try:
        start_next()
        while True:
            more = len(started) < len(calls)
            with trio.move_on_after(hedge_after if more else math.inf):
                done = await receive.receive()
                if done.exception() is None:
                    return done.result(), failures
                failures.append((started.index(done), done.exception()))
                if not all(f.done() for f in started):
                    continue  # another may still answer
                if not more:
                    raise done.exception()
            start_next()  # none answered in time, or all so far failed
    finally:
        for future in started:
            future.cancel()
