"""MasterClient: every call to the master goes through `call`, which bounds the wait.

While the master is down or restarting, calls wait for it (gRPC wait_for_ready) up to `wait`
seconds, then fail with EIO; they never hang forever. Failures come back as FsError.
"""

from __future__ import annotations

import errno
import time
from typing import Any

import grpc

from fusedfs.errors import FsError, from_rpc_error
from fusedfs.grpcutil import ChannelPool, parse_address
from fusedfs.rpc import master_pb2_grpc

DEFAULT_WAIT = 30.0


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
        deadline = time.monotonic() + (self.wait if wait is None else wait)
        rpc = getattr(self.stub, method)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FsError(errno.EIO, f"master {self.address} did not answer within {self.wait:g} s")
            try:
                return rpc(request, timeout=remaining, wait_for_ready=True)
            except grpc.RpcError as e:
                code = e.code() if isinstance(e, grpc.Call) else None
                if code == grpc.StatusCode.UNAVAILABLE:  # connection dropped mid-call: try again
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                    continue
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise FsError(errno.EIO, f"master {self.address} did not answer within {self.wait:g} s") from None
                raise from_rpc_error(e) from None
