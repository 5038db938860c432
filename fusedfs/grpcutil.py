"""gRPC plumbing every part shares: addresses, channel and server options, a channel pool, and
the cluster's secret.

A cluster may have a secret (`--secret-file`, or FUSEDFS_SECRET_FILE): then every process of it
is given the secret (use_secret) before it makes a channel or a server, every call it makes
carries the secret, and its servers refuse calls without it (EACCES), as MooseFS's master
password and SeaweedFS's signing keys keep out who does not have them. It is sent as is: it
keeps out machines and programs that do not know it, but whoever sees the traffic learns it
(a private network, or a VPN between the machines, keeps it secret).
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import grpc

from fusedfs.chunks import MiB
from fusedfs.errors import FsError, abort_with

S = TypeVar("S")

# Chunk reports of big keepers and directory pages can exceed gRPC's default 4 MiB.
MAX_MESSAGE = 64 * MiB
RELEASE_WAIT = 0.5  # seconds a closing channel waits for its completion thread to end
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # Notice a peer cut off from the network within seconds: gRPC pings before a call on a
    # connection that was idle, and every 2 s while calls are in flight; the call fails
    # (UNAVAILABLE) when no answer comes within the timeout, and callers fail over to another
    # replica or keeper. The answer comes from gRPC's own I/O threads, so a busy peer still
    # answers in time; a false alarm costs one retried call. The ping queues behind the data
    # already sent on its connection: with 1 s, uploads over a 48 Mbit/s link failed with "ping
    # timeout" (1 run of 2 in the chaos test of slow links; 3 of 3 passed with 2 s).
    ("grpc.keepalive_time_ms", 2_000),
    ("grpc.keepalive_timeout_ms", 2_000),
    # A keepalive ping may go out as another ping in flight (BDP probing), which waits this
    # long for its answer: 60 s by default, and a call to a keeper that hung (stopped, stuck)
    # waited as long.
    ("grpc.http2.ping_timeout_ms", 2_000),
    # Reconnect quickly after a restart instead of backing off for up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    # gRPC's name for how long one connection attempt may take (its MIN_CONNECT_TIMEOUT). At
    # 200 ms, a keeper's first connection to the next of a pipeline over a 16 Mbit/s link never
    # came up ("connect() timed out", "timed out before receiving SETTINGS frame"); 2 s covers
    # a SYN lost once (TCP sends it again after 1 s).
    ("grpc.min_reconnect_backoff_ms", 2_000),
]
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1_000),  # clients ping every 2 s (above)
]


def parse_address(address: str, default_port: int | None = None) -> tuple[str, int]:
    """Splits HOST:PORT (or HOST with a default port); raises ValueError with a readable reason."""
    host, sep, port_text = address.rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"address {address!r} needs a port, as HOST:PORT")
        host, port_text = address, str(default_port)
    if not host:
        raise ValueError(f"address {address!r} has no host")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"address {address!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"address {address!r}: port {port} is out of range")
    return host.strip("[]"), port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Malformed:
    """Stands in for a request that could not be decoded, so the handler can refuse it."""

    def __init__(self, error: Exception) -> None:
        self.reason = f"malformed request: {type(error).__name__}: {error}"


SECRET_KEY = "fusedfs-secret"  # the gRPC metadata that carries the cluster's secret
_secret = ""  # this process's cluster secret ("": none)


def read_secret(path: Path) -> str:
    """The secret a file holds (its first line); FsError with a readable message otherwise."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FsError(errno.EINVAL, f"cannot read the cluster's secret from {path}: {e}") from None
    if not lines or not lines[0].strip():
        raise FsError(errno.EINVAL, f"{path} holds no secret (its first line is empty)")
    return lines[0].strip()


def use_secret(secret: str) -> None:
    """Makes every channel and server this process makes from now on carry and require it."""
    global _secret
    _secret = secret


class RequireSecret(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses calls that do not carry the cluster's secret: EACCES (PERMISSION_DENIED)."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        given = next((value for key, value in details.invocation_metadata or () if key == SECRET_KEY), "")
        if handler is None or hmac.compare_digest(str(given).encode(), self._secret):
            return handler
        refused = FsError(
            errno.EACCES,
            "the cluster refused the call: it takes calls only with its secret"
            + (" (this one is not it)" if given else "")
            + " (--secret-file, or FUSEDFS_SECRET_FILE)",
        )

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            abort_with(context, refused)

        kind = next(k for k in ("unary_unary", "unary_stream", "stream_unary", "stream_stream") if getattr(handler, k))
        return handler._replace(**{kind: refuse})


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _WithSecret(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds the cluster's secret to every call."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def _with_secret(self, details: Any) -> _CallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            [*(details.metadata or ()), (SECRET_KEY, self._secret)],
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_secret(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_secret(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_secret(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._with_secret(details), requests)


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def wrapped(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as e:  # any decoding failure is the caller's mistake, not ours
            return _Malformed(e)

    return wrapped


def _refuse(request: Any, context: grpc.ServicerContext) -> None:
    if isinstance(request, _Malformed):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)


def _checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    for request in requests:
        _refuse(request, context)
        yield request


class RejectMalformed(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Answers undecodable requests with INVALID_ARGUMENT (gRPC's own answer is INTERNAL)."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                _refuse(request, context)
                return inner_uu(request, context)

            return handler._replace(request_deserializer=deserializer, unary_unary=unary_unary)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Any:
                _refuse(request, context)
                return inner_us(request, context)

            return handler._replace(request_deserializer=deserializer, unary_stream=unary_stream)
        if handler.stream_unary:
            inner_su = handler.stream_unary
            return handler._replace(
                request_deserializer=deserializer, stream_unary=lambda rs, ctx: inner_su(_checked(rs, ctx), ctx)
            )
        inner_ss = handler.stream_stream
        return handler._replace(
            request_deserializer=deserializer, stream_stream=lambda rs, ctx: inner_ss(_checked(rs, ctx), ctx)
        )


def make_server(max_workers: int) -> grpc.Server:
    """A server that refuses malformed requests and times the others (fusedfs.metrics)."""
    from fusedfs.metrics import TimeRequests  # (which uses parse_address from here)

    checks: list[grpc.ServerInterceptor] = [RequireSecret(_secret)] if _secret else []  # type: ignore[type-arg]
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=SERVER_OPTIONS,
        interceptors=[*checks, RejectMalformed(), TimeRequests()],
    )


class _CompletionThread:
    """Keeps a channel's completion thread running between calls.

    A sync channel delivers the outcome of `.future()` and streaming calls on a thread of its
    own, which grpcio starts when a call begins on an idle channel and ends when the last call
    in flight finishes. A caller making one call at a time (the mount, mostly) thus pays for a
    new thread per call: a master call took 1,266 µs from the mount, 890 µs with the thread
    kept. This counts one extra call in flight for as long as the channel is open, so the
    thread stays. It relies on grpcio's private `_call_state` (tests/unit/test_grpcutil.py
    checks it still works); where that is missing, nothing is kept and calls are only slower.
    """

    _PROBE = "/fusedfs.rpc.Internal/KeepCompletionThread"  # cancelled at once, or UNIMPLEMENTED
    _RELEASE_TRIES = 100

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel
        state = getattr(channel, "_call_state", None)
        usable = state is not None and isinstance(getattr(state, "managed_calls", None), int)
        self._state = state if usable and hasattr(state, "lock") else None
        self.kept = False
        if self._state is not None:
            with self._probe(), self._state.lock:
                # While the probe is in flight the thread runs, and it ends only when it
                # sees the count reach 0 under this lock: counted from here on, it stays.
                self.kept = self._state.managed_calls > 0
                if self.kept:
                    self._state.managed_calls += 1

    @contextlib.contextmanager
    def _probe(self) -> Iterator[Any]:
        """A call in flight (waiting for the connection, or for the server's answer) for the
        duration of the block, unless it ends sooner."""
        method = self._channel.unary_unary(self._PROBE, request_serializer=None, response_deserializer=None)
        call: Any = method.future(b"", timeout=60, wait_for_ready=True)
        try:
            yield call
        finally:
            call.cancel()

    def release(self) -> None:
        """Lets the thread end with the last call, before the channel closes (a thread still
        waiting then dies with a TypeError traceback on stderr)."""
        if self._state is None or not self.kept:
            return
        self.kept = False
        # The thread checks the count only after a call's end: ours must come off before the
        # probe's end is counted, or the thread waits on with nothing left to end. A probe the
        # server already answered may be counted any moment: then try again with another.
        for _ in range(self._RELEASE_TRIES):
            with self._probe() as probe, self._state.lock:
                uncounted = not probe.done()  # its end is counted after its outcome is set
                if uncounted:
                    self._state.managed_calls -= 1
            if uncounted:
                break
        deadline = time.monotonic() + RELEASE_WAIT
        while self._state.managed_calls and time.monotonic() < deadline:
            time.sleep(0.001)


class ChannelPool:
    """One channel per address, shared by every caller in the process (channels multiplex)."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.Channel] = {}
        self._threads: dict[str, _CompletionThread] = {}
        self._stubs: dict[tuple[str, Callable[[grpc.Channel], Any]], Any] = {}
        self._lock = threading.Lock()

    def get(self, address: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
                self._threads[address] = _CompletionThread(channel)
                if _secret:
                    channel = grpc.intercept_channel(channel, _WithSecret(_secret))
                self._channels[address] = channel
            return channel

    def stub(self, address: str, stub_class: Callable[[grpc.Channel], S]) -> S:
        """A stub of stub_class on the channel to address, made once (making one builds a
        callable per method: a few percent of a small read's time)."""
        key = (address, stub_class)
        stub = self._stubs.get(key)
        if stub is None:
            stub = self._stubs[key] = stub_class(self.get(address))
        return stub  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            for address, channel in self._channels.items():
                self._threads[address].release()
                channel.close()
            self._channels.clear()
            self._threads.clear()
            self._stubs.clear()
