"""The channel pool keeps each channel's completion thread between calls, and ends it cleanly;
the gRPC transport the package picks is one the installed grpcio knows."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from fusedfs import GRPC_TRANSPORT
from fusedfs.grpcutil import ChannelPool, make_server


@pytest.fixture
def echo_address() -> Iterator[str]:
    server = make_server(max_workers=4)
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_one_completion_thread_serves_calls_made_one_at_a_time(echo_address: str) -> None:
    crashes: list[threading.ExceptHookArgs] = []
    previous_hook, threading.excepthook = threading.excepthook, crashes.append
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        if not thread.name.startswith("rpc"):  # (the server's own threads)
            started.append(thread)
        real_start(thread)

    threading.Thread.start = counting_start  # type: ignore[method-assign,assignment]
    try:
        for _ in range(50):  # (a busy machine may answer the probe before it is counted: try again)
            started.clear()
            pool = ChannelPool()
            echo = pool.get(echo_address).unary_unary("/test.Echo/Echo", None, None)
            if pool._threads[echo_address].kept:
                break
            pool.close()
        for i in range(50):  # one at a time, as the mount makes most calls
            assert echo.future(b"%d" % i, timeout=5).result() == b"%d" % i
        # Without the pool's help grpcio starts a thread for each of the 50 calls.
        assert len(started) == 1, started
        pool.close()
        started[0].join(timeout=5)  # the completion thread ends with the pool ...
        assert not started[0].is_alive()
    finally:
        threading.Thread.start = real_start  # type: ignore[method-assign]
        threading.excepthook = previous_hook
    assert crashes == []  # ... without dying on the closed channel


def test_a_probe_answered_before_it_is_counted_still_lets_the_thread_end(echo_address: str) -> None:
    crashes: list[threading.ExceptHookArgs] = []
    previous_hook, threading.excepthook = threading.excepthook, crashes.append
    try:
        for _ in range(50):
            pool = ChannelPool()
            echo = pool.get(echo_address).unary_unary("/test.Echo/Echo", None, None)
            assert echo.future(b"x", timeout=5).result() == b"x"  # connected
            keeper = pool._threads[echo_address]
            if keeper.kept:
                break
            # (The first probe was answered before it was counted, on a busy machine: nothing
            # kept, only slower calls. Try again: the case under test needs a kept thread.)
            pool.close()
        assert keeper.kept
        probe = keeper._probe
        late = [True]

        @contextlib.contextmanager
        def answered_first() -> Iterator[Any]:
            # As when the releasing thread loses the CPU for a moment: the server's answer to
            # the first probe (UNIMPLEMENTED) is counted before the kept call comes off.
            with probe() as call:
                if late:
                    late.pop()
                    call.exception(timeout=5)
                    time.sleep(0.2)
                yield call

        keeper._probe = answered_first  # type: ignore[method-assign]
        pool.close()
        time.sleep(0.5)
    finally:
        threading.excepthook = previous_hook
    assert not late  # (the delay did happen)
    assert crashes == []  # the thread ended before the close; it used to die of it


def test_grpc_knows_the_transport_the_package_picks() -> None:
    """fusedfs/__init__.py turns gRPC's EventEngine transport off by experiment names: a grpcio
    that no longer knows them would print an error at every start of every part (and lose the
    older transport's speed)."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    code = (
        "import os, fusedfs, grpc; grpc.insecure_channel('127.0.0.1:1').close(); print(os.environ['GRPC_EXPERIMENTS'])"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == GRPC_TRANSPORT
    assert "Unknown experiment" not in done.stderr, done.stderr
