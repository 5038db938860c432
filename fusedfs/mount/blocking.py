"""The bridges from trio handlers to the cluster: async master calls, and threads for the rest.

pyfuse3 runs every handler as a trio task in one thread: a blocking gRPC call there would stall
the whole mount. Master calls use gRPC futures whose completion wakes the waiting task (no thread
per call); chunk transfers, which stream, go to worker threads. Every wait is bounded by the
client library, so neither hangs forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import trio

from fusedfs.client.master import MasterClient

T = TypeVar("T")

# Enough for a few uploads and reads at once, bounded so a stuck cluster cannot pile up threads.
_LIMITER = trio.CapacityLimiter(32)


async def run(fn: Callable[..., T], *args: object) -> T:
    return await trio.to_thread.run_sync(fn, *args, limiter=_LIMITER)


async def call_master(master: MasterClient, method: str, request: Any, wait: float | None = None) -> Any:
    """MasterClient.call for trio: the same retries and bound, without a thread."""
    deadline = master.deadline(wait)
    rpc = getattr(master.stub, method)
    token = trio.lowlevel.current_trio_token()
    while True:
        done = trio.Event()
        future = rpc.future(request, timeout=master.remaining(deadline), wait_for_ready=True)
        future.add_done_callback(lambda _, wake=done.set: token.run_sync_soon(wake))
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
        try:
            return future.result()
        except grpc.RpcError as e:
            delay = master.retry_delay(e, deadline)
        await trio.sleep(delay)
