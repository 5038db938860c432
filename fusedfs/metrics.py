"""Prometheus metrics, for the monitoring users already run (as JuiceFS, SeaweedFS and HDFS
offer): each process started with `--metrics HOST:PORT` serves its own at /metrics (and the
master its status page at /: statusview.py). What every part shares lives here: the endpoint, and
the timing of the requests a gRPC server answers.

The master's metrics are its `status` (status_gauges: keepers, chunk health, files, metadata
copies), the keeper's its disk, the mount's its requests (fusedfs/mount/operations.py).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fusedfs.grpcutil import parse_address
from fusedfs.rpc import master_pb2 as mp

log = logging.getLogger(__name__)

# Seconds, from a cached answer to a stuck disk.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Gauge = tuple[str, str, float, dict[str, str]]  # name, help, value, labels

RPC_SECONDS = Histogram(
    "fusedfs_rpc_seconds",
    "gRPC requests this process answered, by method and outcome (a stream: until its end)",
    ["method", "code"],
    buckets=LATENCY_BUCKETS,
)


def serve_metrics(address: str, gauges: Callable[[], Iterable[Gauge]], page: Callable[[], str] | None = None) -> int:
    """Serves this process's metrics, with the gauges `gauges()` reads when scraped, at
    http://address/metrics (HOST:PORT; port 0: any free one), and `page()` (a web page) at /,
    from a thread of its own; returns the port. ValueError for a bad address."""
    host, port = parse_address(address)
    REGISTRY.register(GaugesOf(gauges))
    disable_created_metrics()  # type: ignore[no-untyped-call]  # (a _created series per counter: noise)
    server = _MetricsServer((host, port), page)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    port = server.server_port
    log.info("metrics at http://%s:%d/metrics", host, port)
    return port


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], page: Callable[[], str] | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _MetricsHandler)
        self.page = page


class _MetricsHandler(BaseHTTPRequestHandler):
    server: _MetricsServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        page = self.server.page
        if path == "/metrics":
            body, kind = generate_latest(REGISTRY), CONTENT_TYPE_LATEST
        elif path == "/" and page is not None:
            body, kind = page().encode(), "text/html; charset=utf-8"
        else:
            self.send_error(404, "not here: try /metrics" + (" or /" if page is not None else ""))
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # (scrapes every few seconds: not worth a log line)
        pass


class TimeRequests(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Observes each request's time and status code into RPC_SECONDS."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return handler
        method = details.method.rpartition("/")[2]
        kind = next(k for k in ("unary_unary", "unary_stream", "stream_unary", "stream_stream") if getattr(handler, k))
        inner = getattr(handler, kind)
        streams_out = kind.endswith("_stream")

        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                answer = inner(request, context)
            except BaseException:
                _observe(method, context, started, failed=True)
                raise
            if streams_out:
                return _timed_stream(answer, method, context, started)
            _observe(method, context, started)
            return answer

        return handler._replace(**{kind: timed})


def _timed_stream(answers: Iterable[Any], method: str, context: grpc.ServicerContext, started: float) -> Iterator[Any]:
    failed = True
    try:
        yield from answers
        failed = False
    finally:
        _observe(method, context, started, failed)


_RPC_SERIES: dict[tuple[str, str], Any] = {}  # (method, code) -> its RPC_SECONDS series, found once


def _observe(method: str, context: grpc.ServicerContext, started: float, failed: bool = False) -> None:
    code = context.code() if hasattr(context, "code") else None  # (set by abort)
    key = (method, code.name if isinstance(code, grpc.StatusCode) else ("UNKNOWN" if failed else "OK"))
    series = _RPC_SERIES.get(key)
    if series is None:
        series = _RPC_SERIES[key] = RPC_SECONDS.labels(*key)
    series.observe(time.perf_counter() - started)


class GaugesOf(Collector):
    """Gauges read when scraped: `read()` gives (name, help, value, labels) tuples."""

    def __init__(self, read: Callable[[], Iterable[Gauge]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for name, text, value, labels in self.read():
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, text, labels=sorted(labels))
            family.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()


KEEPER_GAUGES = {
    "alive": "1 if the keeper heartbeats, else 0",
    "capacity_bytes": "the keeper's disk size",
    "used_bytes": "bytes the keeper's chunks take",
    "free_bytes": "bytes the keeper may still fill",
    "draining": "1 if the keeper is being emptied before it is taken away",
    "chunks_to_move": "a draining keeper's chunks still short of the goal elsewhere",
    "chunks": "chunks the keeper holds",
    "load": "transfers the keeper is serving",
    "seconds_since_heartbeat": "since the keeper's last heartbeat",
    "scrub_checked": "chunks the keeper's scrubber has re-read",
    "scrub_bad": "bad or missing replicas the keeper's scrubber found",
    "disk_stalled_seconds": "how long the keeper's disk has not answered (0: it answers)",
    "damaged_copies": "copies the keeper found damaged and set aside (kept a week, for repair)",
}


def keeper_gauges(health: dict[str, float]) -> Iterator[Gauge]:
    """A keeper's own metrics: what its heartbeats tell the master (fusedfs_keeper_*, as the
    master shows every keeper's, there labelled by keeper)."""
    for name, value in health.items():
        yield f"fusedfs_keeper_{name}", KEEPER_GAUGES[name], value, {}


def status_gauges(status: mp.StatusReply, now_ns: int) -> Iterator[Gauge]:
    """The master's metrics: what `fusedfs client status` shows, as gauges."""
    for name, text in (
        ("files", "files in the namespace"),
        ("directories", "directories in the namespace"),
        ("mounts", "mounts heard from within the session timeout"),
        ("open_orphans", "unlinked files kept because a mount has them open"),
        ("goal", "copies kept of every chunk"),
        ("trash_files", "deleted files kept in the trash"),
        ("trash_bytes", "bytes of the files in the trash"),
        ("metadata_room_bytes", "bytes the metadata can grow by on the master's disk (a copy still fitting)"),
        ("metadata_reserve_bytes", "below this room the master takes only deletions"),
    ):
        yield f"fusedfs_{name}", text, getattr(status, name), {}
    for field in status.chunks.DESCRIPTOR.fields:
        yield "fusedfs_chunks", "chunks by health", getattr(status.chunks, field.name), {"health": field.name}
    for keeper in status.keepers:
        labels = {"keeper": keeper.keeper_id, "address": keeper.address, "domain": keeper.failure_domain}
        for name, text in KEEPER_GAUGES.items():
            yield f"fusedfs_keeper_{name}", text, float(getattr(keeper, name)), labels
    yield "fusedfs_metadata_copy_keepers", "keepers holding the newest metadata copy", status.metadata_copy_keepers, {}
    if status.metadata_copy_taken_ns:
        age = max(0.0, (now_ns - status.metadata_copy_taken_ns) / 1e9)
        yield "fusedfs_metadata_copy_age_seconds", "since the newest metadata copy on the keepers was taken", age, {}
    yield (
        "fusedfs_metadata_changes_unsent",
        "metadata changes made since the newest copy that some of its keepers lack yet",
        status.metadata_changes_unsent,
        {},
    )
