"""MasterClient: every call to the master goes through `call`, which bounds the wait.

While the master is down or restarting, calls wait for it (gRPC wait_for_ready) up to `wait`
seconds, then fail with EIO; they never hang forever. Failures come back as FsError. A change is
sent with a request id (`identified`), the same on every attempt, so that the master makes it
once however often it is sent (see Retries in master.proto).

Within `one_deadline` (a mount's handling of one request from the kernel), the calls an
operation makes, to the master and the keepers, share one deadline: an unlink that tells the
master of its open files first, or a read that asks the replicas and then goes the whole way,
waits for a cluster out of reach about `wait` seconds in all, not that long for every call.
"""

from __future__ import annotations

import contextlib
import errno
import secrets
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc

from fusedfs.errors import FsError, from_rpc_error, sent_errno
from fusedfs.grpcutil import ChannelPool, parse_address
from fusedfs.rpc import master_pb2_grpc

DEFAULT_WAIT = 30.0
# Seconds a call still gets when its operation's deadline has (nearly) passed: a master that
# answered late (back from a restart) answers the next call in milliseconds.
LAST_TRY = 2.0


@dataclass
class _Operation:
    wait: float
    ends: float  # time.monotonic()


_OPERATION: ContextVar[_Operation | None] = ContextVar("fusedfs_operation", default=None)


@contextlib.contextmanager
def one_deadline(wait: float) -> Iterator[None]:
    """Within it, the calls to the cluster share one deadline, `wait` seconds from now (an
    outer one holds if there is one). Threads and tasks started within it inherit it."""
    if _OPERATION.get() is not None:
        yield
        return
    token = _OPERATION.set(_Operation(wait, time.monotonic() + wait))
    try:
        yield
    finally:
        _OPERATION.reset(token)


def progressed() -> None:
    """The operation got somewhere (an upload it waits for ended): its deadline starts anew, so
    a close of a big file over a slow network is bounded by its silences, not its length."""
    operation = _OPERATION.get()
    if operation is not None:
        operation.ends = time.monotonic() + operation.wait


def own_deadline() -> None:
    """For a task started within an operation that may outlive it (a background upload, a
    prefetch): its calls wait as long as they allow, not as the operation that started it."""
    _OPERATION.set(None)


def identified(request: Any) -> Any:
    """The request, with a request id of its own if it takes one and has none yet."""
    if "request_id" in request.DESCRIPTOR.fields_by_name and not request.request_id:
        request.request_id = secrets.randbits(63) or 1
    return request


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic()
    wait: float  # the seconds it allowed (what a failure says it waited)


class MasterClient:
    def __init__(self, address: str, wait: float = DEFAULT_WAIT, pool: ChannelPool | None = None) -> None:
        try:
            parse_address(address)
        except ValueError as e:
            raise FsError(errno.EINVAL, f"master address: {e}") from None
        self.address = address
        self.wait = wait
        self.pool = pool or ChannelPool()
        self.stub = master_pb2_grpc.MasterStub(self.pool.get(address))

    def call(self, method: str, request: Any, wait: float | None = None) -> Any:
        """Calls Master.<method>, waiting at most `wait` seconds (default: self.wait) for an answer."""
        identified(request)
        deadline = self.deadline(wait)
        rpc = getattr(self.stub, method)
        while True:
            try:
                return rpc(request, timeout=self.remaining(deadline), wait_for_ready=True)
            except grpc.RpcError as e:
                time.sleep(self.retry_delay(e, deadline))

    # The retry rules, shared with callers that make the call themselves (the mount's async calls).

    def deadline(self, wait: float | None = None) -> Deadline:
        """When a call made now must have been answered: `wait` seconds from now (default:
        self.wait), or sooner if its operation's deadline is (though at least LAST_TRY)."""
        wait = self.wait if wait is None else wait
        now = time.monotonic()
        at = now + wait
        operation = _OPERATION.get()
        if operation is not None and operation.ends < at:
            at = max(operation.ends, now + min(wait, LAST_TRY))
        return Deadline(at, at - now)

    def remaining(self, deadline: Deadline) -> float:
        """Seconds left before deadline; EIO once it has passed."""
        remaining = deadline.at - time.monotonic()
        if remaining <= 0:
            raise FsError(errno.EIO, f"master {self.address} did not answer within {deadline.wait:g} s")
        return remaining

    def retry_delay(self, error: grpc.RpcError, deadline: Deadline) -> float:
        """How long to wait before calling again after `error`; raises it (as FsError) if final."""
        code = error.code() if isinstance(error, grpc.Call) else None
        # A connection dropped mid-call: try again. Not the master's own answer, though: its EIO
        # ("too few keepers; retry later") has that code too, and the caller decides what next.
        if code == grpc.StatusCode.UNAVAILABLE and sent_errno(error) is None:
            return min(0.2, max(0.0, deadline.at - time.monotonic()))
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise FsError(errno.EIO, f"master {self.address} did not answer within {deadline.wait:g} s") from None
        raise from_rpc_error(error) from None
