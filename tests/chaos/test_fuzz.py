"""Fuzzing the gRPC surface with malformed and hostile requests, against real processes.

A real master and three real keepers (LocalCluster, through the integration fixtures) receive:

1. as the raw serialized request of every RPC of both services (read from the services'
   descriptors, so a new RPC is fuzzed as soon as it exists): random bytes, and hostile messages
   serialized and then cut short, bit-flipped, padded or given a broken trailing field; client
   streams get several such messages;
2. well-typed messages built from the protobuf classes with hostile values: uint64 at 2**63-1 and
   beyond, int64 at both extremes, inode 0 and unknown inodes, chunk ids of the wrong length, not
   hex, upper case, with a NUL or a path, past 7fffffffffffffff (not ids: they are positive signed
   64-bit numbers), or never issued, names with '/' or NUL, '.', '..', empty or 256+ bytes,
   pipelines to addresses that are not keepers, longer than MAX_PIPELINE or naming a keeper
   twice or the receiver itself, write streams without a header, with fewer or more bytes than
   declared or a wrong checksum, writes of chunks already stored, streams cancelled or timed out
   half-way, replayed and concurrent duplicates of the same request, and chunks derived from
   chunks the keeper does not hold, past their end, or with patches out of range, too big or
   failing their checksums (a derive that succeeds must hold exactly base + zeros + patches).

Every answer must be a clear status within CALL_TIMEOUT: never UNKNOWN or INTERNAL (an exception
the server did not handle), never DEADLINE_EXCEEDED (a hang), and every process keeps serving.
Before fuzzing, a few files are uploaded; afterwards every one downloads byte-identical, every
replica of every chunk on every keeper is unchanged, no attribute or chunk list changed, Status
reports every keeper alive and no chunk under- or over-replicated or lost, no keeper has a partial
write left in tmp/, and no server log holds a traceback.

Chunks are immutable: a write of an id a keeper already holds (a forged one, a replay, a client
retry) is refused with ALREADY_EXISTS and leaves the stored bytes as they were, so the fuzzer also
aims writes at the protected chunks. A pipeline may lead back to a keeper already on it (keepers
check names, not addresses): that keeper then takes two overlapping writes of the id, the first to
finish stays and the other is refused, so a write may be refused ALREADY_EXISTS by a keeper that
holds its very bytes, and keepers further down may store their copies after the client's answer
(test_a_pipeline_back_to_the_receiver; the fuzzer waits for them).

The server bugs this found are pinned by tests at the end (test_bug_*): BUG-1..6 are fixed and
those are regression tests (BUG-6, overlapping writes of one id, by commit 5e457bd: the first to
finish stays). A bug found while open gets a strict-xfail test with the reason in its marker.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fusedfs.chunks import BLOCK_SIZE, MAX_CHUNK_SIZE, PIECE_SIZE, MiB, crc32c, is_valid_chunk_id
from fusedfs.client.files import FileClient
from fusedfs.client.master import MasterClient
from fusedfs.client.transfer import ChunkTransfer
from fusedfs.grpcutil import CHANNEL_OPTIONS
from fusedfs.keeper.service import MAX_PIPELINE
from fusedfs.local import LocalCluster
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc, master_pb2_grpc
from fusedfs.rpc import master_pb2 as mp
from tests.integration import conftest as integration
from tests.integration.conftest import wait_for

# The integration fixtures (real processes on loopback, always stopped afterwards), used here.
make_cluster = integration.make_cluster
cluster = integration.cluster

CALL_TIMEOUT = 10.0  # every call has one: a server that does not answer in time has hung
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
UINT32_MAX = 2**32 - 1
BAD_CODES = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED})
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS
KEEPERS = 3
GOAL = 3

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)


# --- the services, from their descriptors ----------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    path: str
    request: type[Message]
    reply: type[Message]
    client_streaming: bool
    server_streaming: bool

    def __str__(self) -> str:
        return f"{self.service}.{self.name}"


def rpcs_of(pb2: Any, service: str) -> list[Rpc]:
    desc = pb2.DESCRIPTOR.services_by_name[service]
    return [
        Rpc(
            service,
            m.name,
            f"/{desc.full_name}/{m.name}",
            GetMessageClass(m.input_type),
            GetMessageClass(m.output_type),
            m.client_streaming,
            m.server_streaming,
        )
        for m in desc.methods
    ]


MASTER_RPCS = rpcs_of(mp, "Master")
KEEPER_RPCS = rpcs_of(kp, "Keeper")

# Every master RPC, by what it may change (the fuzzer keeps changes away from the protected files).
READ_ONLY = {
    "Lookup",
    "ResolvePath",
    "GetAttr",
    "ReadDir",
    "ReadLink",
    "StatFs",
    "GetXattr",
    "ListXattr",
    "GetChunks",
    "GetConfig",
    "Status",
    "Damaged",
    "ListTrash",
    "Usage",
    "GetGoal",
    "GetQuota",
}
NAMESPACE_CHANGES = {
    "SetAttr",
    "MakeDir",
    "CreateFile",
    "Symlink",
    "MakeSpecial",
    "Link",
    "Unlink",
    "RemoveDir",
    "Rename",
    "SetXattr",
    "RemoveXattr",
    "CommitChunks",
    "PutFile",
    "RestoreTrash",  # (adds names)
    "PurgeTrash",  # (frees deleted files)
    "SetGoal",  # (copies kept of a file's chunks)
    "SetChunkSize",  # (of the files made in a folder)
    "Snapshot",  # (adds names; the source's chunks are only linked)
    "SetQuota",  # (limits what may be added under a folder)
}
# Calls that change no file: reserving chunk ids, giving them back, reporting a replica bad, and a
# mount's session (holding files open keeps them, it does not change them).
CHUNK_BOOKKEEPING = {"AllocateChunks", "AbandonChunks", "ReportBadReplica", "MountSession"}
KEEPER_REPORTS = {"RegisterKeeper", "Heartbeat"}
CLUSTER_CHANGES = {"Drain"}  # (emptying a real keeper is allowed)
# Requests whose every name must be a valid one for the call to succeed.
NAME_CHECKED = {
    "Lookup",
    "MakeDir",
    "CreateFile",
    "Symlink",
    "MakeSpecial",
    "Link",
    "Unlink",
    "RemoveDir",
    "Rename",
    "PutFile",
}
INODE_FIELDS = {"inode", "parent", "new_parent"}
OPTIONAL_INODE = {"RestoreTrash", "PurgeTrash"}  # inode 0: none given (by path instead)
NAME_FIELDS = {"name", "new_name"}


# --- calling with raw bytes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    seconds: float
    replies: tuple[bytes, ...] = ()


def call(channel: grpc.Channel, rpc: Rpc, payloads: list[bytes], timeout: float = CALL_TIMEOUT) -> Outcome:
    """Sends payloads as they are (no serializer) and returns the status; one payload unless streaming."""
    raw = {"request_serializer": None, "response_deserializer": None}  # bytes in, bytes out, as they are
    started = time.monotonic()
    try:
        if rpc.client_streaming:
            replies = [channel.stream_unary(rpc.path, **raw)(iter(payloads), timeout=timeout)]
        elif rpc.server_streaming:
            replies = list(channel.unary_stream(rpc.path, **raw)(payloads[0], timeout=timeout))
        else:
            replies = [channel.unary_unary(rpc.path, **raw)(payloads[0], timeout=timeout)]
    except grpc.RpcError as e:
        assert isinstance(e, grpc.Call)
        return Outcome(e.code(), e.details() or "", time.monotonic() - started)
    return Outcome(OK, "", time.monotonic() - started, tuple(replies))


def call_typed(channel: grpc.Channel, rpc: Rpc, messages: Sequence[Message], timeout: float = CALL_TIMEOUT) -> Outcome:
    return call(channel, rpc, [m.SerializeToString() for m in messages], timeout)


def parse(cls: type[Message], raw: bytes) -> Message | None:
    message = cls()
    try:
        message.ParseFromString(raw)
    except Exception:
        return None
    return message


def walk(message: Message) -> Iterator[tuple[FieldDescriptor, Any]]:
    """Every set scalar field of message and its sub-messages, repeated ones value by value."""
    for fd, value in message.ListFields():
        for v in value if fd.is_repeated else [value]:
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                yield from walk(v)
            else:
                yield fd, v


def chunk_ids_in(message: Message) -> list[str]:
    """The chunk ids of a client's request that names chunks (refused, first thing, if one is invalid)."""
    match message:
        case mp.CommitChunksRequest() | mp.PutFileRequest():
            return [c.chunk_id for c in message.chunks]  # an unset one is "", no id either
        case mp.AbandonChunksRequest():
            return list(message.chunk_ids)
        case mp.BadReplicaRequest():
            return [message.chunk_id]
    return []


def channel_to(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


# --- the verdict on every answer -----------------------------------------------------------------


class Tally:
    """How often each RPC got each status (printed with -s: what the fuzzer reached)."""

    def __init__(self) -> None:
        self.answers: Counter[str] = Counter()  # "Service.Rpc CODE" -> how often

    def summary(self) -> str:
        return "answers:\n" + "\n".join(f"  {n:5d}  {answer}" for answer, n in sorted(self.answers.items()))


def expect_clear(rpc: Rpc, outcome: Outcome, sent: object, tally: Tally) -> None:
    """The answer is a clear status (anything but UNKNOWN, INTERNAL or DEADLINE_EXCEEDED), in time."""
    tally.answers[f"{rpc} {outcome.code.name}"] += 1
    if outcome.code not in BAD_CODES:
        assert outcome.seconds < CALL_TIMEOUT, f"{rpc} took {outcome.seconds:.1f} s"
        return
    shown = repr(sent)
    raise AssertionError(
        f"{rpc} answered {outcome.code.name} ({outcome.details!r}) after {outcome.seconds:.1f} s "
        f"to {shown[:600]}{'...' if len(shown) > 600 else ''}"
    )


# --- the cluster under test: serving, intact, clean logs ------------------------------------------


def tmp_files(cluster: LocalCluster) -> list[Path]:
    return [p for i in range(KEEPERS) for p in (cluster.keeper_dir(i) / "tmp").iterdir()]


def tracebacks(cluster: LocalCluster) -> list[str]:
    """The exception line of every traceback in the processes' logs, as 'log: line'."""
    found = []
    for path in sorted((cluster.data_dir / "logs").glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if line.startswith("Traceback (most recent call last):"):
                j = i + 1
                while j < len(lines) and lines[j][:1] in (" ", "\t"):
                    j += 1
                found.append(f"{path.name}: {lines[j] if j < len(lines) else '(cut off)'}")
    return found


UNKNOWN_CHUNK = "7eeeeeeeeeeeeeee"  # a well-formed id no master issues (they count up from 1)


class Servers:
    """Raw channels to the master and the keepers, and the 'still serving' check."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.master = channel_to(cluster.master_address)
        self.keepers = [channel_to(cluster.keeper_address(i)) for i in range(KEEPERS)]
        self.master_stub = master_pb2_grpc.MasterStub(self.master)
        self.keeper_stubs = [keeper_pb2_grpc.KeeperStub(c) for c in self.keepers]
        self.by_address = {cluster.keeper_address(i): stub for i, stub in enumerate(self.keeper_stubs)}

    def assert_serving(self) -> None:
        running = sorted(self.cluster.pids())
        expected = sorted(["master", *(f"keeper{i}" for i in range(KEEPERS))])
        logs = self.cluster.data_dir / "logs"
        assert running == expected, f"processes running: {running}; logs in {logs}"
        try:
            self.master_stub.GetConfig(cp.Empty(), timeout=5)
        except grpc.RpcError as e:
            raise AssertionError(f"the master no longer answers GetConfig: {e}; logs in {logs}") from None
        for i, stub in enumerate(self.keeper_stubs):
            try:
                list(stub.ReadChunk(kp.ReadChunkRequest(chunk_id=UNKNOWN_CHUNK), timeout=5))
            except grpc.RpcError as e:
                assert isinstance(e, grpc.Call)
                if e.code() == NOT_FOUND:
                    continue
                raise AssertionError(f"keeper{i} no longer answers: {e.code()} {e.details()}; logs in {logs}") from None
            raise AssertionError(f"keeper{i} served a chunk it cannot have")

    def close(self) -> None:
        for channel in [self.master, *self.keepers]:
            channel.close()


PROTECTED = b"keep-intact-test-fuzz"
PROTECTED_FILES: dict[str, tuple[bytes, int | None]] = {  # path: (content, chunk size or the default)
    "empty": (b"", None),
    "one-byte": (b"!", None),
    "small": (os.urandom(100_000), None),
    "three-chunks": (os.urandom(2 * MiB + 12_345), MiB),
    "with-a-hole": (b"head" + bytes(2 * MiB) + b"tail", MiB),  # the all-zero middle chunk is not stored
    "sub/nested": (os.urandom(70_000), None),
}


def attr_key(attr: mp.Attr) -> tuple[int, ...]:
    """What must not change (atime may: reading is allowed)."""
    return (
        attr.inode,
        attr.mode,
        attr.nlink,
        attr.uid,
        attr.gid,
        attr.size,
        attr.mtime_ns,
        attr.ctime_ns,
        attr.chunk_size,
    )


class Protected:
    """Files uploaded before fuzzing; assert_intact() checks nothing about them changed."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.files = FileClient(MasterClient(cluster.master_address, wait=20))
        self.servers = Servers(cluster)
        self.paths = {f"/{PROTECTED.decode()}/{name}": content for name, (content, _) in PROTECTED_FILES.items()}
        for name, (content, chunk_size) in PROTECTED_FILES.items():
            self.files.upload(io.BytesIO(content), f"/{PROTECTED.decode()}/{name}", chunk_size=chunk_size)
        status = cluster.status()
        self.keeper_ids = frozenset(k.keeper_id for k in status.keepers)
        self.keeper_addresses = frozenset(k.address for k in status.keepers)
        by_address = {k.address: k.keeper_id for k in status.keepers}
        self.keeper_id_of = [by_address[cluster.keeper_address(i)] for i in range(KEEPERS)]  # by index
        assert len(self.keeper_ids) == KEEPERS
        wait_for(self._healthy, 20, "the protected files at the replication goal")
        self.snapshot = self._snapshot()
        self.inodes = frozenset(key[0] for key in self.snapshot["attrs"].values())
        self.chunks: dict[str, bytes] = {}  # chunk id -> the bytes every replica must hold
        for path, chunk_list in self.snapshot["chunks"].items():
            chunk_size = self.snapshot["attrs"][path][-1]
            for index, chunk_id, _, stored_length, _ in chunk_list:
                start = index * chunk_size
                self.chunks[chunk_id] = self.paths[path][start : start + stored_length]
        assert len(self.chunks) == 8  # 0 (empty) + 1 + 1 + 3 + 2 (one slot is a hole) + 1
        self.chunk_ids = frozenset(self.chunks)

    def _snapshot(self) -> dict[str, Any]:
        stub = self.servers.master_stub
        attrs, chunks, listings = {}, {}, {}
        folders = [f"/{PROTECTED.decode()}", f"/{PROTECTED.decode()}/sub"]
        for path in [*folders, *self.paths]:
            attrs[path] = attr_key(stub.ResolvePath(mp.PathRequest(path=path), timeout=5))
        for path in folders:
            reply = stub.ReadDir(mp.ReadDirRequest(inode=attrs[path][0]), timeout=5)
            listings[path] = sorted((e.name, e.attr.inode) for e in reply.entries)
        for path in self.paths:
            reply = stub.GetChunks(mp.GetChunksRequest(inode=attrs[path][0]), timeout=5)
            chunks[path] = [(c.index, c.chunk_id, c.length, c.stored_length, c.crc32c) for c in reply.chunks]
        return {"attrs": attrs, "chunks": chunks, "listings": listings}

    def _healthy(self) -> bool:
        status = self.cluster.status()
        ours = [k for k in status.keepers if k.keeper_id in self.keeper_ids]  # fuzzed registrations aside
        health = status.chunks
        return (
            len(ours) == KEEPERS
            and all(k.alive for k in ours)
            and health.under_replicated == 0
            and health.over_replicated == 0
            and health.lost == 0
            and health.unavailable == 0
        )

    def assert_intact(self) -> None:
        self.servers.assert_serving()
        wait_for(self._healthy, 20, "Status: every keeper alive, every chunk at the goal")
        assert self._snapshot() == self.snapshot, "a protected file's attributes, names or chunk list changed"
        for path, content in self.paths.items():
            sink = io.BytesIO()
            self.files.download(path, sink)
            assert sink.getvalue() == content, f"{path} no longer downloads byte-identical"
        # Every replica, not only the one a download picks: a client fails over a bad one silently.
        stub = self.servers.master_stub
        for path in self.paths:
            inode = self.snapshot["attrs"][path][0]
            for ref in stub.GetChunks(mp.GetChunksRequest(inode=inode), timeout=5).chunks:
                assert len(ref.replicas) == GOAL, f"chunk {ref.chunk_id} of {path} has {len(ref.replicas)} replicas"
                for replica in ref.replicas:
                    keeper = self.servers.by_address[replica.address]
                    pieces = list(keeper.ReadChunk(kp.ReadChunkRequest(chunk_id=ref.chunk_id), timeout=10))
                    data = b"".join(p.data for p in pieces)
                    assert data == self.chunks[ref.chunk_id], f"replica of {ref.chunk_id} on {replica.address} changed"
                    assert pieces[0].chunk_crc32c == crc32c(data)
        wait_for(lambda: not tmp_files(self.cluster), 10, "no partial write left in any keeper's tmp/")
        found = tracebacks(self.cluster)
        assert not found, f"tracebacks in the logs ({self.cluster.data_dir / 'logs'}): {found}"

    def close(self) -> None:
        self.servers.close()
        self.files.master.pool.close()

    # --- what a fuzzed request may not touch ----------------------------------------------------

    def touches(self, rpc: Rpc, message: Message | None) -> bool:
        """True for a request that could legitimately change the protected files, or the cluster.

        Such requests are valid and allowed (nothing authenticates a client or a keeper), so
        their effect is not a bug; the fuzzer does not send them. Requests that must be refused
        even on the protected files (committing their chunks into another file, abandoning them,
        reporting them bad, writing them again on a keeper) are sent.
        """
        if message is None:
            return False
        if rpc.service == "Keeper":  # chunks are immutable: even a write of a protected chunk must be refused
            return False
        if rpc.name in READ_ONLY or rpc.name in CHUNK_BOOKKEEPING:
            return False
        if rpc.name in CLUSTER_CHANGES:
            named = message.keeper  # type: ignore[attr-defined]
            return named in self.keeper_addresses or any(k.startswith(named) for k in self.keeper_ids)
        if rpc.name in ("SetGoal", "SetChunkSize") and message.recursive:  # type: ignore[attr-defined]
            return True  # (the root's, or any folder's that may lead to the protected files)
        if rpc.name == "SetQuota" and (message.max_entries or message.max_bytes):  # type: ignore[attr-defined]
            return True  # (a limit on a folder above the sandbox would refuse the fuzzer's own changes)
        for fd, value in walk(message):
            if rpc.name in KEEPER_REPORTS and value in self.keeper_ids | self.chunk_ids:
                return True  # speaking for a real keeper, or claiming a real chunk
            if fd.name in INODE_FIELDS and value in self.inodes:
                return True
            if fd.name in NAME_FIELDS and value == PROTECTED:
                return True
            if fd.name in ("path", "destination") and PROTECTED.decode(errors="replace") in value:
                return True  # (a restore or a snapshot into the protected folder)
            if fd.name == "chunk_id" and reserved_maybe(value) and value not in self.chunk_ids:
                return True  # maybe reserved by a fuzzed AllocateChunks and never written: a lost chunk
        return False


def reserved_maybe(chunk_id: str) -> bool:
    """A chunk id the master may have issued (they count up from 1)."""
    return is_valid_chunk_id(chunk_id) and int(chunk_id, 16) < 2**24


@pytest.fixture
def protected(cluster: LocalCluster) -> Iterator[Protected]:
    guarded = Protected(cluster)
    yield guarded
    guarded.close()


@dataclass(frozen=True)
class Sandbox:
    dir: int
    file: int
    data_file: int
    subdir: int
    link: int

    @property
    def inodes(self) -> list[int]:
        return [self.dir, self.file, self.data_file, self.subdir, self.link]


def make_sandbox(protected: Protected) -> Sandbox:
    """Things the fuzzer may change: /sandbox with a file, a file with data, a folder and a symlink."""
    stub = protected.servers.master_stub
    folder = stub.MakeDir(mp.MakeNodeRequest(parent=1, name=b"sandbox", mode=0o755), timeout=5).attr
    file = stub.CreateFile(mp.MakeNodeRequest(parent=folder.inode, name=b"f", mode=0o644), timeout=5).attr
    sub = stub.MakeDir(mp.MakeNodeRequest(parent=folder.inode, name=b"d", mode=0o755), timeout=5).attr
    link = stub.Symlink(mp.SymlinkRequest(parent=folder.inode, name=b"l", target=b"f"), timeout=5).attr
    data = protected.files.upload(io.BytesIO(os.urandom(3000)), "/sandbox/data")
    return Sandbox(folder.inode, file.inode, data.inode, sub.inode, link.inode)


# --- hostile values -----------------------------------------------------------------------------


def u64(*extra: int) -> st.SearchStrategy[int]:
    edges = [0, 1, 2, 255, 2**31, 2**32 - 1, 2**32, 2**53 + 1, INT64_MAX, INT64_MAX + 1, UINT64_MAX, *extra]
    return st.sampled_from(edges) | st.integers(0, UINT64_MAX)


I64 = st.sampled_from([-(2**63), -1, 0, 1, INT64_MAX]) | st.integers(-(2**63), INT64_MAX)
U32 = st.sampled_from([0, 1, 2, 3, 4, 0o777, 0o7777, 0o170777, 2**31, UINT32_MAX]) | st.integers(0, UINT32_MAX)
INVALID_NAMES = [b"", b".", b"..", b"/", b"a/b", b"/etc/passwd", b"\0", b"a\0b", b"x" * 256, b"x" * 4097]
EXISTING_NAMES = [b"f", b"d", b"l", b"data", b"sandbox"]  # what make_sandbox creates
NAMES = st.one_of(
    st.sampled_from(EXISTING_NAMES),  # often a name that exists, so calls get past the lookup
    st.sampled_from([*INVALID_NAMES, b"x" * 255, b"\xff\xfe\xfd", b" ", b"\n", b"new"]),
    st.binary(max_size=300).filter(lambda n: n != PROTECTED),
)
TARGETS = st.sampled_from([b"", b"/", b"\0", b"a\0b", b"../../../etc/passwd", b"x" * 4096, b"x" * 4097]) | st.binary(
    max_size=300
)
PATHS = st.sampled_from(
    [
        "",
        "/",
        "relative",
        "/..",
        "/a/../b",
        "/./.",
        "//",
        "/\0",
        "/sandbox/f/x",
        "/sandbox/l/x",
        "/" + "x" * 256,
        "/x" * 3000,
        "/sandbox/../sandbox",
        f"/{PROTECTED.decode()}/small",
    ]
) | st.text(max_size=300)
MALFORMED_CHUNK_IDS = [
    "",
    "0",
    "0" * 15,
    "0" * 17,
    "ABCDEF0123456789",
    "abcdef012345678g",
    "zzzzzzzzzzzzzzzz",
    "../../etc/passwd",
    "0000000000000/01",
    "000000000000001\0",
    " 00000000000001 ",
    "-000000000000001",
    "0x00000000000001",
    "0000000000000001\n",
    "\u0661" * 16,  # digits, but not ASCII ones
    "x" * 10_000,
    # Past a signed 64-bit number (what SQLite keeps): never an id, however well-formed.
    "8000000000000000",
    "8000000000000001",
    "fffffffffffffffe",
    "ffffffffffffffff",
]
UNISSUED_CHUNK_IDS = ["0000000000000000", "7fffffffffffffff"]
FRESH_CHUNK_IDS = st.integers(0x7000000000000000, 0x7000000000000FFF).map(lambda n: f"{n:016x}")
CHUNK_IDS = st.sampled_from(MALFORMED_CHUNK_IDS + UNISSUED_CHUNK_IDS) | FRESH_CHUNK_IDS | st.text(max_size=40)
PHANTOM_KEEPERS = st.sampled_from(["", "phantom-1", "phantom-2", "\0", "p" * 1000])
# Only addresses that fail without a DNS lookup (a keeper dials downstream addresses).
BOGUS_ADDRESSES = [
    "",
    ":::",
    "[::1",
    "127.0.0.1:99999",
    "127.0.0.1:1",
    "0.0.0.0:0",
    "unix:/nonexistent",
    "ipv4:bogus",
    "\0",
]
DEFAULT_VALUES: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_UINT64: u64(),
    FieldDescriptor.TYPE_INT64: I64,
    FieldDescriptor.TYPE_SINT64: I64,
    FieldDescriptor.TYPE_UINT32: U32,
    FieldDescriptor.TYPE_FIXED32: U32,
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_STRING: st.text(max_size=64),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_DOUBLE: st.floats(),
}
Pick = Callable[[FieldDescriptor], "st.SearchStrategy[Any] | None"]


@st.composite
def messages_of(draw: st.DrawFn, cls: type[Message], pick: Pick) -> Message:
    """A message of cls with each field absent or drawn from pick (or its type's hostile values)."""
    message = cls()
    # types-protobuf types descriptors as the union of the Python and the upb classes (one API).
    for fd in cls.DESCRIPTOR.fields:
        if not draw(st.sampled_from([True, True, True, False])):  # a field is left unset a quarter of the time
            continue
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            sub = GetMessageClass(fd.message_type)  # type: ignore[arg-type]  # the upb/Python union
            if fd.is_repeated:
                for value in draw(st.lists(messages_of(sub, pick), max_size=3)):
                    getattr(message, fd.name).add().CopyFrom(value)
            else:
                getattr(message, fd.name).CopyFrom(draw(messages_of(sub, pick)))
            continue
        picked = pick(fd)  # type: ignore[arg-type]  # the upb/Python union
        values = DEFAULT_VALUES[fd.type] if picked is None else picked
        if fd.is_repeated:
            getattr(message, fd.name).extend(draw(st.lists(values, max_size=4)))
        else:
            setattr(message, fd.name, draw(values))
    return message


@st.composite
def mangled(draw: st.DrawFn, messages: st.SearchStrategy[Message]) -> bytes:
    """A serialized message, then cut short, bit-flipped, padded or given a broken trailing field."""
    raw = bytearray(draw(messages).SerializeToString())
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["cut", "flip", "insert", "append"]))
        at = draw(st.integers(0, len(raw)))
        if op == "cut":
            del raw[at:]
        elif op == "flip" and at < len(raw):
            raw[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            raw += draw(
                st.sampled_from(
                    [
                        b"\xff",  # a tag with no end
                        b"\x0a\xff\xff\xff\xff\x0f",  # a length far past the end
                        b"\x12\x10abc",  # a length past the end
                        b"\x80" * 11,  # a varint longer than 64 bits
                        b"\x0b",  # a group start with no end
                        b"\x0c",  # a group end with no start
                        b"\x07",  # wire type 7 (does not exist)
                        b"\x00",  # field number 0
                        b"\xfa\xff\xff\xff\x0f\x00",  # field number 2**29-1, empty
                    ]
                )
            )
    return bytes(raw)


class Hostile:
    """The hostile values of each field, given the cluster (what exists, what is protected)."""

    def __init__(self, protected: Protected, sandbox: Sandbox, cluster: LocalCluster) -> None:
        self.protected = protected
        self.sandbox = sandbox
        edges = [0, 10**6, 2**31, 2**32, 2**53, INT64_MAX, INT64_MAX + 1, UINT64_MAX]
        unsafe = protected.inodes
        existing = st.sampled_from([1, *sandbox.inodes])  # often one that exists: calls get further
        random = st.integers(0, UINT64_MAX).filter(lambda i: i not in unsafe)
        self.changeable_inodes = st.one_of(existing, existing, existing, st.sampled_from(edges), random)
        self.any_inode = st.one_of(self.changeable_inodes, st.sampled_from(sorted(unsafe)))
        self.real_chunks = st.sampled_from(sorted(protected.chunk_ids))
        self.chunk_ids_and_real = CHUNK_IDS | self.real_chunks
        self.real_keepers = st.sampled_from(sorted(protected.keeper_ids))
        self.new_ids = itertools.count(0x7800000000000000)
        self.keeper_ids = self.real_keepers | PHANTOM_KEEPERS | st.text(max_size=40)
        self.self_and_others = [cluster.keeper_address(i) for i in range(KEEPERS)] + [cluster.master_address]
        self.downstream_addresses = st.sampled_from(BOGUS_ADDRESSES + self.self_and_others)

    def master_pick(self, rpc: Rpc) -> Pick:
        changes = rpc.name not in READ_ONLY
        reports = rpc.name in KEEPER_REPORTS

        def pick(fd: FieldDescriptor) -> st.SearchStrategy[Any] | None:
            match fd.name:
                case "inode" | "parent" | "new_parent":
                    return self.changeable_inodes if changes else self.any_inode
                case "open_inodes":
                    return self.any_inode
                case "value":
                    return st.binary(max_size=64) | st.sampled_from([b"v" * 65_536, b"v" * 65_537, b"v" * MiB])
                case "name" | "new_name":
                    return NAMES
                case "target":
                    return TARGETS
                case "path":
                    return PATHS
                case "chunk_id" | "chunk_ids" | "added" | "removed":
                    # Keepers may not claim real chunks (no authentication: a trust issue, not a bug);
                    # clients may try to commit, abandon or report them: that must be refused or harmless.
                    return CHUNK_IDS if reports else self.chunk_ids_and_real
                case "keeper_id":
                    return PHANTOM_KEEPERS if reports else self.keeper_ids
                case "stored_on" | "exclude_keepers" | "target_id":
                    return self.keeper_ids
                case "address":
                    return st.sampled_from(BOGUS_ADDRESSES) | st.text(max_size=40)
                case "capacity_bytes" | "used_bytes" | "free_bytes":
                    return u64()
                case "chunk_size":
                    return u64(4096, MiB, 8 * MiB, MAX_CHUNK_SIZE, MAX_CHUNK_SIZE + 1)
                case "length" | "size":
                    return u64(MAX_CHUNK_SIZE, MAX_CHUNK_SIZE + 1, 3000)
                case "flags":
                    return st.sampled_from([0, 1, 2, 3, 4, UINT32_MAX]) | U32
            return None

        return pick

    def master_request(self, rpc: Rpc) -> st.SearchStrategy[Message]:
        return messages_of(rpc.request, self.master_pick(rpc))

    def keeper_pick(self, fd: FieldDescriptor) -> st.SearchStrategy[Any] | None:
        match fd.name:
            case "chunk_id":
                return self.chunk_ids_and_real  # a write of a stored chunk must be refused
            case "keeper_id":
                return self.keeper_ids
            case "address":
                return self.downstream_addresses
            case "length" | "offset":
                return u64(MAX_CHUNK_SIZE, MAX_CHUNK_SIZE + 1, 4096, 65536)
            case "data":
                return st.binary(max_size=4096)
        return None

    def keeper_request(self, rpc: Rpc) -> st.SearchStrategy[Message]:
        return messages_of(rpc.request, self.keeper_pick)

    def raw_payloads(self, rpc: Rpc) -> st.SearchStrategy[list[bytes]]:
        typed = self.master_request(rpc) if rpc.service == "Master" else self.keeper_request(rpc)
        one = st.binary(max_size=512) | mangled(typed) | typed.map(lambda m: m.SerializeToString())
        return st.lists(one, max_size=4) if rpc.client_streaming else one.map(lambda raw: [raw])


# --- 0. the fuzzers know every RPC ---------------------------------------------------------------


def test_every_rpc_is_fuzzed() -> None:
    """The RPC lists come from the descriptors; here they must match the generated servicers."""
    for rpcs, servicer in [
        (MASTER_RPCS, master_pb2_grpc.MasterServicer),
        (KEEPER_RPCS, keeper_pb2_grpc.KeeperServicer),
    ]:
        assert {r.name for r in rpcs} == {n for n in vars(servicer) if not n.startswith("_")}
    classified = READ_ONLY | NAMESPACE_CHANGES | CHUNK_BOOKKEEPING | KEEPER_REPORTS | CLUSTER_CHANGES
    assert {r.name for r in MASTER_RPCS} == classified, "classify the new master RPC above"
    # Metadata copies and changes: fuzzed as raw bytes (they are taken only with this cluster's
    # id, which the fuzzers never send); chunk RPCs also as well-typed hostile messages.
    known = {
        kp.WriteChunkMessage,
        kp.DeriveChunkRequest,
        kp.LinkChunksRequest,
        kp.ReadChunkRequest,
        kp.MetadataCopyPiece,
        kp.MetadataJournal,
        cp.Empty,
    }
    assert {r.request for r in KEEPER_RPCS} <= known, "a new keeper RPC"


# --- 1. raw bytes ----------------------------------------------------------------------------------


def fuzz_raw(protected: Protected, rpcs: list[Rpc], examples: int) -> None:
    servers = protected.servers
    hostile = Hostile(protected, make_sandbox(protected), protected.cluster)
    tally = Tally()

    @settings(FUZZ, max_examples=examples)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        rpc = data.draw(st.sampled_from(rpcs), label="rpc")
        payloads = data.draw(hostile.raw_payloads(rpc), label="payloads")
        messages = [parse(rpc.request, raw) for raw in payloads]
        if any(protected.touches(rpc, m) for m in messages):
            event("not sent: could legitimately change the protected files")
            tally.answers["(not sent: could legitimately change the protected files)"] += 1
            return
        event(f"{rpc}: {'decodable' if all(m is not None for m in messages) else 'undecodable'}")
        channel = servers.master if rpc.service == "Master" else data.draw(st.sampled_from(servers.keepers))
        outcome = call(channel, rpc, payloads)
        expect_clear(rpc, outcome, payloads, tally)
        if messages and messages[0] is None:  # a request that cannot be decoded is refused as such
            assert outcome.code == INVALID, f"{rpc} answered {outcome.code.name} to undecodable {payloads!r}"
        elif any(m is None for m in messages):  # or, in a stream, for what the messages before said
            before = {INVALID, EXISTS, grpc.StatusCode.RESOURCE_EXHAUSTED}
            if rpc.name == "PutMetadataCopy":  # another cluster's copy is refused before its data is read
                before.add(grpc.StatusCode.FAILED_PRECONDITION)
            assert outcome.code in before, f"{rpc} answered {outcome.code.name} to undecodable {payloads!r}"
        elif rpc.service == "Master":
            bad_ids = [i for m in messages if m is not None for i in chunk_ids_in(m) if not is_valid_chunk_id(i)]
            assert not bad_ids or outcome.code == INVALID, f"{rpc} answered {outcome.code.name} to ids {bad_ids!r}"
        servers.assert_serving()

    fuzz()
    print(tally.summary())


def test_raw_bytes_to_every_master_rpc(protected: Protected) -> None:
    fuzz_raw(protected, MASTER_RPCS, examples=300)
    protected.assert_intact()


def test_raw_bytes_to_every_keeper_rpc(protected: Protected) -> None:
    fuzz_raw(protected, KEEPER_RPCS, examples=200)
    protected.assert_intact()


# --- 2. well-typed hostile messages ----------------------------------------------------------------


def test_hostile_master_requests(protected: Protected) -> None:
    servers = protected.servers
    hostile = Hostile(protected, make_sandbox(protected), protected.cluster)
    tally = Tally()

    @settings(FUZZ, max_examples=600)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        rpc = data.draw(st.sampled_from(MASTER_RPCS), label="rpc")
        message = data.draw(hostile.master_request(rpc), label="request")
        if protected.touches(rpc, message):
            event("not sent: could legitimately change the protected files")
            tally.answers["(not sent: could legitimately change the protected files)"] += 1
            return
        outcome = call_typed(servers.master, rpc, [message])
        event(f"{rpc}: {outcome.code.name}")
        expect_clear(rpc, outcome, message, tally)
        if rpc.name in NAME_CHECKED:
            names = [getattr(message, f) for f in ("name", "new_name") if f in rpc.request.DESCRIPTOR.fields_by_name]
            bad = [n for n in names if n in INVALID_NAMES or b"/" in n or b"\0" in n or len(n) > 255]
            assert not bad or outcome.code != OK, f"{rpc} accepted the name(s) {bad!r}: {message}"
        inodes = [getattr(message, f) for f in INODE_FIELDS if f in rpc.request.DESCRIPTOR.fields_by_name]
        if any((i == 0 and rpc.name not in OPTIONAL_INODE) or i >= 10**6 for i in inodes):  # none that high here
            assert outcome.code != OK, f"{rpc} accepted inode 0 or an unknown inode: {message}"
        if rpc.name in ("CommitChunks", "PutFile") and len(message.chunks) > 0:  # type: ignore[attr-defined]
            # None of these chunks is an upload in progress: they are malformed, never issued, or
            # already part of a (protected) file.
            assert outcome.code != OK, f"{rpc} committed chunks that are not uploads in progress: {message}"
        bad_ids = [i for i in chunk_ids_in(message) if not is_valid_chunk_id(i)]
        assert not bad_ids or outcome.code == INVALID, f"{rpc} answered {outcome.code.name} to chunk ids {bad_ids!r}"
        servers.assert_serving()

    fuzz()
    print(tally.summary())
    protected.assert_intact()


@dataclass(frozen=True)
class Write:
    """One hostile write: the messages of the stream, and what a correct keeper answers to it."""

    messages: list[kp.WriteChunkMessage]
    chunk_id: str
    data: bytes
    downstream: list[str]  # addresses

    def sent(self, unary: bool) -> list[kp.WriteChunkMessage]:
        return self.messages[:1] if unary else self.messages

    def sent_data(self, unary: bool) -> bytes:
        return b"".join(m.data for m in self.sent(unary))

    def revisits(self, address: str) -> bool:
        """The pipeline leads back to a keeper already on it: to the receiver (at address), or to one
        keeper twice, under other names (a keeper checks the names, not the addresses: test_bug_3)."""
        return len({address, *self.downstream}) < 1 + len(self.downstream)

    def answers(self, unary: bool, keeper_id: str, address: str, holds: bool) -> set[grpc.StatusCode]:
        """The statuses a correct keeper (keeper_id at address, holding chunk_id already or not) may answer."""
        sent = self.sent(unary)
        if not sent or not sent[0].HasField("header"):
            return {INVALID}
        header = sent[0].header
        ids = [k.keeper_id for k in header.downstream]
        if len(ids) > MAX_PIPELINE or keeper_id in ids or len(set(ids)) != len(ids):
            return {INVALID}
        if not is_valid_chunk_id(header.chunk_id) or not 0 < header.length <= MAX_CHUNK_SIZE:
            return {INVALID}
        if holds:  # chunks are immutable, whatever the write carries
            return {EXISTS}
        data = self.sent_data(unary)
        if any(m.HasField("header") for m in sent[1:]):
            # A second header means the writer gave the write up (Forwarder.abandon): refused
            # however right the bytes are, unless the space the header announces is refused first.
            return {INVALID} if header.length <= len(data) else {INVALID, grpc.StatusCode.RESOURCE_EXHAUSTED}
        if header.length == len(data) and header.crc32c == crc32c(data):
            # A pipeline back to the receiver makes it take its own forwarded copy while it writes: two
            # overlapping writes of one id, of which the first to finish stays and the other is refused
            # (test_bug_6). When the forwarded copy finishes first, the write is refused ALREADY_EXISTS,
            # and the receiver holds its bytes all the same (fuzz_writes checks that).
            return {OK, EXISTS} if address in self.downstream else {OK}
        # Refused when the bytes do not match the header; the space the header announces may be
        # refused first (before any byte arrives).
        return {INVALID} if header.length <= len(data) else {INVALID, grpc.StatusCode.RESOURCE_EXHAUSTED}


WRITE_FAULTS = ["chunk id", "stored chunk", "length", "checksum", "pipeline", "pipeline names", "no header"]


@st.composite
def hostile_writes(draw: st.DrawFn, hostile: Hostile, unary: bool) -> Write:
    """A write with some of its parts wrong (none, now and then: then what follows is tested too)."""
    faults = draw(st.sets(st.sampled_from(WRITE_FAULTS), max_size=3))
    event(f"write faults: {len(faults)}")
    pieces = draw(
        st.lists(st.binary(min_size=1, max_size=2048), min_size=1, max_size=4)
        | st.lists(st.binary(max_size=2048), max_size=4)
    )
    if unary:  # WriteSmallChunk takes one message
        pieces = [b"".join(pieces)]
    data = b"".join(pieces)
    # Not ids the master may have issued (other than the protected chunks): it deletes a stray copy of
    # one a moment later, so whether a keeper holds it would be a race (test_bug_1 writes chunk 0).
    unissued = [c for c in UNISSUED_CHUNK_IDS if not reserved_maybe(c)]
    if "chunk id" in faults:
        chunk_id = draw(st.sampled_from(MALFORMED_CHUNK_IDS) | st.text(max_size=40))
    elif "stored chunk" in faults:
        chunk_id = draw(hostile.real_chunks)  # held by every keeper: refused
    elif draw(st.booleans()):
        chunk_id = draw(FRESH_CHUNK_IDS | st.sampled_from(unissued))  # drawn again and again: often held
    else:
        chunk_id = f"{next(hostile.new_ids):016x}"  # never written before
    length = len(data)
    if "length" in faults:
        wrong = [max(len(data) - 1, 0), len(data) + 1, 0, MAX_CHUNK_SIZE + 1, INT64_MAX, UINT64_MAX]
        length = draw(st.sampled_from(wrong) | st.integers(0, UINT64_MAX))
    crc = draw(U32) if "checksum" in faults else crc32c(data)
    # Short pipelines; or some as long as allowed, or longer. Downstream keepers are named by a fresh
    # id, or (a wrong pipeline) by a real keeper's (maybe the receiver's own, maybe twice), at any address.
    if "pipeline" in faults:
        count = draw(st.integers(MAX_PIPELINE - 1, MAX_PIPELINE + 2))
        addresses = draw(st.lists(hostile.downstream_addresses, min_size=count, max_size=count))
    else:
        addresses = draw(st.lists(hostile.downstream_addresses, max_size=3))
    name = hostile.real_keepers if "pipeline names" in faults else st.none()
    names = draw(st.lists(st.none() | name, min_size=len(addresses), max_size=len(addresses)))
    ids = [n or f"downstream-{i}" for i, n in enumerate(names)]
    downstream = [cp.KeeperRef(keeper_id=n, address=a) for n, a in zip(ids, addresses, strict=True)]
    header = kp.WriteChunkHeader(chunk_id=chunk_id, length=length, crc32c=crc, downstream=downstream)
    if "no header" in faults:
        shape = "no header"
    else:
        shape = draw(
            st.sampled_from(["header with data", "header alone", "second header", "empties"][: 2 if unary else 4])
        )
    first_data, rest = (pieces[0], pieces[1:]) if pieces else (b"", [])
    if shape == "header with data":
        messages = [kp.WriteChunkMessage(header=header, data=first_data), *(kp.WriteChunkMessage(data=p) for p in rest)]
    elif shape == "header alone":
        messages = [kp.WriteChunkMessage(header=header), *(kp.WriteChunkMessage(data=p) for p in pieces)]
    elif shape == "no header":
        messages = [kp.WriteChunkMessage(data=p) for p in pieces]
    elif shape == "second header":
        other = kp.WriteChunkHeader(chunk_id=draw(FRESH_CHUNK_IDS), length=1, crc32c=0)
        messages = [kp.WriteChunkMessage(header=header, data=first_data), kp.WriteChunkMessage(header=other)]
        messages += [kp.WriteChunkMessage(data=p) for p in rest]
    else:
        messages = [kp.WriteChunkMessage(header=header)]
        for p in pieces:
            messages += [kp.WriteChunkMessage(), kp.WriteChunkMessage(data=p)]
    return Write(messages, chunk_id, data, addresses)


def read_whole(stub: keeper_pb2_grpc.KeeperStub, chunk_id: str) -> bytes | None:
    """The chunk's bytes on that keeper, or None when it does not have it."""
    try:
        return b"".join(p.data for p in stub.ReadChunk(kp.ReadChunkRequest(chunk_id=chunk_id), timeout=5))
    except grpc.RpcError as e:
        assert isinstance(e, grpc.Call) and e.code() == NOT_FOUND, (chunk_id, e)
        return None


def settled(cluster: LocalCluster, stubs: list[keeper_pb2_grpc.KeeperStub], chunk_id: str) -> list[bytes | None]:
    """What every keeper holds of chunk_id once no write is in progress and that has not changed for
    a while (a keeper may begin its part of a pipeline only after the client has its answer)."""
    quiet, deadline = 0.25, time.monotonic() + 10
    held: list[bytes | None] | None = None
    since = time.monotonic()
    while True:
        wait_for(lambda: not tmp_files(cluster), 5, "no partial write left behind")
        now = [read_whole(stub, chunk_id) for stub in stubs]
        if now != held:
            held, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return held
        assert time.monotonic() < deadline, f"what the keepers hold of {chunk_id} kept changing"
        time.sleep(0.02)


def test_hostile_keeper_requests(protected: Protected) -> None:
    cluster, servers = protected.cluster, protected.servers
    hostile = Hostile(protected, make_sandbox(protected), cluster)
    tally = Tally()
    writes = [r for r in KEEPER_RPCS if r.request is kp.WriteChunkMessage]
    reads = [r for r in KEEPER_RPCS if r.request is kp.ReadChunkRequest]
    derives = [r for r in KEEPER_RPCS if r.request is kp.DeriveChunkRequest]
    stored: dict[tuple[int, str], bytes] = {}  # (keeper, chunk id) -> what the fuzzer stored there

    @settings(FUZZ, max_examples=150)
    @given(data=st.data())
    def fuzz_writes(data: st.DataObject) -> None:
        rpc = data.draw(st.sampled_from(writes), label="rpc")
        unary = not rpc.client_streaming
        write = data.draw(hostile_writes(hostile, unary), label="write")
        k = data.draw(st.integers(0, KEEPERS - 1), label="keeper")
        valid = is_valid_chunk_id(write.chunk_id)
        address = cluster.keeper_address(k)
        before = [read_whole(stub, write.chunk_id) for stub in servers.keeper_stubs] if valid else [None] * KEEPERS
        sent = write.sent(unary)
        outcome = call_typed(servers.keepers[k], rpc, sent or ([kp.WriteChunkMessage()] if unary else []))
        event(f"{rpc}: {outcome.code.name}")
        expect_clear(rpc, outcome, write, tally)
        wait_for(lambda: not tmp_files(cluster), 5, "no partial write left behind")
        expected = write.answers(unary, protected.keeper_id_of[k], address, holds=before[k] is not None)
        if not valid:
            after: list[bytes | None] = [None] * KEEPERS
        elif OK in expected and write.revisits(address):
            # A keeper reached twice takes two overlapping writes of the id; the one refused gives up
            # its part of the pipeline when it has forwarded all of it, so the keepers after it may
            # still store their copies after the answer: wait until that is over.
            after = settled(cluster, servers.keeper_stubs, write.chunk_id)
        else:
            after = [read_whole(stub, write.chunk_id) for stub in servers.keeper_stubs]
        assert outcome.code in expected, (
            f"{rpc} to keeper{k} answered {outcome.code.name} ({outcome.details!r}), not "
            f"{sorted(c.name for c in expected)}: {write}"
        )
        for j in range(KEEPERS):  # nothing stored is ever replaced
            assert before[j] is None or after[j] == before[j], f"keeper{j}'s copy of {write.chunk_id} changed: {write}"
        data_sent = write.sent_data(unary)
        # Refused as already stored although keeper k did not hold it: only when the pipeline led back
        # to keeper k and that copy of this very write finished first (Write.answers); stored, then.
        own_copy_first = outcome.code == EXISTS and before[k] is None
        if own_copy_first:
            event("refused: the copy forwarded back to the receiver finished first")
            assert after[k] == data_sent, f"keeper{k} refused {write.chunk_id} as already stored; holds {after[k]!r}"
        if outcome.code == OK:
            reply = kp.WriteChunkReply.FromString(outcome.replies[0])
            assert reply.stored_on[0] == protected.keeper_id_of[k], reply
            assert after[k] == data_sent, f"keeper{k} holds something else than the write it acknowledged"
            holding = {protected.keeper_id_of[j] for j in range(KEEPERS) if after[j] == data_sent}
            assert set(reply.stored_on) <= holding, f"acknowledged by {list(reply.stored_on)}, held by {holding}"
            for failure in reply.failures:  # a downstream keeper's refusal is reported, with a clear status
                # (UNKNOWN is gRPC's own code for a target it cannot parse, such as "" or "ipv4:bogus")
                unparsable = failure.code == "UNKNOWN" and failure.message.startswith("Failed to create channel")
                assert unparsable or failure.code not in {c.name for c in BAD_CODES}, (failure, write)
                tally.answers[f"{rpc} OK, downstream {failure.code}"] += 1
        if outcome.code == OK or own_copy_first:
            for j in set(range(KEEPERS)) - {k}:  # a downstream keeper took the copy, or kept what it had
                downstream = cluster.keeper_address(j) in write.downstream
                assert after[j] == before[j] or (downstream and after[j] == data_sent), (j, write)
        else:
            assert after == before, f"a refused write changed chunk {write.chunk_id} on a keeper: {write}"
        for j, held in enumerate(after):
            if held is None:
                stored.pop((j, write.chunk_id), None)
            else:
                stored[(j, write.chunk_id)] = held
        servers.assert_serving()

    @settings(FUZZ, max_examples=100)
    @given(data=st.data())
    def fuzz_reads(data: st.DataObject) -> None:
        rpc = data.draw(st.sampled_from(reads), label="rpc")
        chunk_id = data.draw(
            CHUNK_IDS | st.sampled_from(sorted(protected.chunk_ids)) | st.sampled_from(sorted({c for _, c in stored})),
            label="chunk_id",
        )
        k = data.draw(st.integers(0, KEEPERS - 1), label="keeper")
        expected = protected.chunks.get(chunk_id, stored.get((k, chunk_id)))
        size = len(expected) if expected is not None else 0
        offset = data.draw(st.sampled_from([0, 1, size - 1, size, size + 1]) | u64(), label="offset")
        length = data.draw(st.sampled_from([0, 1, size, size + 1, PIECE_SIZE, PIECE_SIZE + 1]) | u64(), label="length")
        request = kp.ReadChunkRequest(chunk_id=chunk_id, offset=max(offset, 0), length=max(length, 0))
        outcome = call_typed(servers.keepers[k], rpc, [request])
        event(f"{rpc}: {outcome.code.name}")
        expect_clear(rpc, outcome, request, tally)
        one_piece = not rpc.server_streaming  # ReadSmallRange: a range within one piece, as one reply
        bad_range = one_piece and not 0 < request.length <= PIECE_SIZE  # checked first
        if bad_range or not is_valid_chunk_id(chunk_id):
            code = INVALID
        elif expected is None or rpc.name == "ReadDamagedChunk":  # (no copy here was ever found damaged)
            code = NOT_FOUND
        elif request.offset > size or (one_piece and len(piece_starts(size, request.offset, request.length)) != 1):
            code = INVALID
        else:
            code = OK
        assert outcome.code == code, (rpc, request, outcome)
        if code == OK:
            assert expected is not None
            pieces = [kp.ChunkPiece.FromString(raw) for raw in outcome.replies]
            # The block-aligned pieces covering the range, in order, each the chunk's own bytes.
            assert [p.offset for p in pieces] == piece_starts(size, request.offset, request.length), request
            end = size if request.length == 0 else min(size, request.offset + request.length)
            assert not pieces or pieces[-1].offset + len(pieces[-1].data) >= end, request
            assert pieces[0].chunk_length == size and pieces[0].chunk_crc32c == crc32c(expected) if pieces else True
            for piece in pieces:
                assert piece.data == expected[piece.offset : piece.offset + len(piece.data)], request
                assert piece.block_size == BLOCK_SIZE, request
                crcs = [crc32c(piece.data[i : i + BLOCK_SIZE]) for i in range(0, len(piece.data), BLOCK_SIZE)]
                assert list(piece.block_crc32c) == crcs, request
        servers.assert_serving()

    @settings(FUZZ, max_examples=100)
    @given(data=st.data())
    def fuzz_derives(data: st.DataObject) -> None:
        rpc = data.draw(st.sampled_from(derives), label="rpc")
        k = data.draw(st.integers(0, KEEPERS - 1), label="keeper")
        faults = data.draw(st.sets(st.sampled_from(DERIVE_FAULTS), max_size=2), label="faults")
        event(f"derive faults: {len(faults)}")
        # (stored is left as fuzz_writes left it: hypothesis replays examples, which must draw alike)
        ours = sorted(c for j, c in stored if j == k)
        bases = hostile.real_chunks | (st.sampled_from(ours) if ours else st.nothing())
        base_id = data.draw(CHUNK_IDS if "base" in faults else bases, label="base")
        base = protected.chunks.get(base_id, stored.get((k, base_id)))
        size = len(base) if base is not None else 0
        chunk_id = f"{next(hostile.new_ids):016x}"
        if "chunk id" in faults:
            chunk_id = data.draw(st.sampled_from(MALFORMED_CHUNK_IDS) | hostile.real_chunks, label="id")
        lengths = [1, max(size - 1, 1), size, size + 1, size + BLOCK_SIZE + 3]
        if "length" in faults:
            lengths = [0, MAX_CHUNK_SIZE + 1, INT64_MAX, UINT64_MAX]
        length = data.draw(st.sampled_from(lengths), label="length")
        kept = data.draw(u64() if "kept" in faults else st.sampled_from([0, 1, size]), label="base_kept")
        offsets = u64() if "patch" in faults else st.integers(0, max(length - 1, 0))
        patches = [
            kp.ChunkPatch(offset=offset, data=piece[: max(length - offset, 0)] if "patch" not in faults else piece)
            for offset, piece in data.draw(st.lists(st.tuples(offsets, st.binary(max_size=300)), max_size=3), label="p")
        ]
        for patch in patches:
            patch.crc32c = crc32c(patch.data) ^ data.draw(st.sampled_from([0, 1]) if "patch" in faults else st.just(0))
        if "patch" in faults and data.draw(st.booleans(), label="oversized"):
            patches.append(kp.ChunkPatch(offset=0, data=bytes(PIECE_SIZE + 1), crc32c=crc32c(bytes(PIECE_SIZE + 1))))
        request = kp.DeriveChunkRequest(
            chunk_id=chunk_id, length=length, base_chunk_id=base_id, base_kept=kept, patches=patches
        )
        before = [read_whole(stub, chunk_id) for stub in servers.keeper_stubs] if is_valid_chunk_id(chunk_id) else []
        outcome = call_typed(servers.keepers[k], rpc, [request])
        event(f"{rpc}: {outcome.code.name}")
        expect_clear(rpc, outcome, request, tally)
        wait_for(lambda: not tmp_files(cluster), 5, "no partial write left behind")
        # The keeper's checks, in its order: the ids, the length, the patches, the base, the id taken.
        bad_ids = not (is_valid_chunk_id(chunk_id) and is_valid_chunk_id(base_id))
        too_much = sum(len(p.data) for p in patches) > PIECE_SIZE
        bad_patch = any(p.offset + len(p.data) > length or crc32c(p.data) != p.crc32c for p in patches)
        if bad_ids or not 0 < length <= MAX_CHUNK_SIZE or too_much or bad_patch:
            code = INVALID
        elif base is None:
            code = NOT_FOUND
        elif min(kept, length) > size:
            code = INVALID
        elif before[k] is not None:
            code = EXISTS
        else:
            code = OK
        assert outcome.code == code, (rpc, k, request, outcome)
        servers.assert_serving()
        if not before:
            return
        after = [read_whole(stub, chunk_id) for stub in servers.keeper_stubs]
        assert after[:k] + after[k + 1 :] == before[:k] + before[k + 1 :], "another keeper's chunks changed"
        if code != OK:
            assert after[k] == before[k], f"a refused derive changed chunk {chunk_id}: {request}"
            return
        assert base is not None
        expected = bytearray(base[: min(kept, length)]) + bytes(length - min(kept, length))
        for p in patches:
            expected[p.offset : p.offset + len(p.data)] = p.data
        assert after[k] == bytes(expected), request
        reply = kp.WriteChunkReply.FromString(outcome.replies[0])
        assert list(reply.stored_on) == [protected.keeper_id_of[k]] and reply.crc32c == crc32c(bytes(expected))

    fuzz_writes()
    fuzz_reads()
    fuzz_derives()
    print(tally.summary())
    protected.assert_intact()


DERIVE_FAULTS = ["chunk id", "base", "length", "kept", "patch"]


def piece_starts(size: int, offset: int, length: int) -> list[int]:
    """Where the pieces a keeper sends for a range of a chunk of size bytes start (0 length: to the end).

    Whole BLOCK_SIZE blocks from the one holding offset, at most PIECE_SIZE a piece.
    """
    end = size if length == 0 else min(size, offset + length)
    starts, pos = [], offset - offset % BLOCK_SIZE
    while pos < end:
        starts.append(pos)
        pos += min(PIECE_SIZE, size - pos, -(-(end - pos) // BLOCK_SIZE) * BLOCK_SIZE)
    return starts


def small_write(chunk_id: str, data: bytes, downstream: Sequence[cp.KeeperRef] = ()) -> kp.WriteChunkMessage:
    """A whole, correct write of data as one message."""
    header = kp.WriteChunkHeader(chunk_id=chunk_id, length=len(data), crc32c=crc32c(data), downstream=downstream)
    return kp.WriteChunkMessage(header=header, data=data)


def opening(
    chunk_id: str,
    first_piece: bytes,
    data: bytes,
    downstream: list[cp.KeeperRef],
    length: int | None = None,
    crc: int | None = None,
) -> kp.WriteChunkMessage:
    """The first message of a write of data (its header says length and crc, by default data's)."""
    header = kp.WriteChunkHeader(
        chunk_id=chunk_id,
        length=len(data) if length is None else length,
        crc32c=crc32c(data) if crc is None else crc,
        downstream=downstream,
    )
    return kp.WriteChunkMessage(header=header, data=first_piece)


def test_write_streams_cut_short_cancelled_or_overlong(protected: Protected) -> None:
    """A write stream that ends early, says less than it sends, or is abandoned stores nothing."""
    cluster, servers = protected.cluster, protected.servers
    write = next(r for r in KEEPER_RPCS if r.name == "WriteChunk")
    data = os.urandom(300_000)
    crc = crc32c(data)
    pieces = [data[i : i + 64_000] for i in range(0, len(data), 64_000)]
    for n, pipeline in enumerate([False, True]):
        downstream = [cp.KeeperRef(keeper_id=f"k{i}", address=cluster.keeper_address(i)) for i in (1, 2)]
        first = functools.partial(opening, first_piece=pieces[0], data=data, downstream=downstream if pipeline else [])

        def nowhere(chunk_id: str) -> None:
            """No keeper holds chunk_id, nor a partial copy of it."""
            wait_for(lambda: not tmp_files(cluster), 10, "partial copies removed")
            for i, stub in enumerate(servers.keeper_stubs):
                assert read_whole(stub, chunk_id) is None, f"keeper{i} stored the broken write {chunk_id}"

        cases: dict[str, list[kp.WriteChunkMessage]] = {
            "header only": [first(f"71000000000000{n}1")],
            "stops early": [first(f"71000000000000{n}2"), *(kp.WriteChunkMessage(data=p) for p in pieces[1:-1])],
            "more than declared": [
                first(f"71000000000000{n}3"),
                *(kp.WriteChunkMessage(data=p) for p in pieces[1:]),
                kp.WriteChunkMessage(data=b"!"),
            ],
            "declares less": [
                first(f"71000000000000{n}4", length=len(data) - 1),
                *(kp.WriteChunkMessage(data=p) for p in pieces[1:]),
            ],
            "wrong checksum": [
                first(f"71000000000000{n}5", crc=crc ^ 1),
                *(kp.WriteChunkMessage(data=p) for p in pieces[1:]),
            ],
            # Every byte arrives, then the writer gives up: how a keeper ends what it forwards when
            # its own copy fails (a cancelled stream may look ended to the next keeper).
            "given up after every byte": [
                first(f"71000000000000{n}6"),
                *(kp.WriteChunkMessage(data=p) for p in pieces[1:]),
                kp.WriteChunkMessage(header=kp.WriteChunkHeader()),
            ],
        }
        for what, messages in cases.items():
            outcome = call_typed(servers.keepers[0], write, messages)
            assert outcome.code == INVALID, (what, pipeline, outcome)
            nowhere(messages[0].header.chunk_id)

        # The client goes away half-way: by cancelling, or by its deadline passing.
        for ending in ("cancel", "deadline"):
            chunk_id = f"72000000000000{n}{'1' if ending == 'cancel' else '2'}"
            release = threading.Event()

            def stalled(
                chunk_id: str = chunk_id, release: threading.Event = release, first: Any = first
            ) -> Iterator[bytes]:
                yield first(chunk_id).SerializeToString()
                yield kp.WriteChunkMessage(data=pieces[1]).SerializeToString()
                release.wait(10)

            stub = servers.keepers[0].stream_unary(write.path, request_serializer=None, response_deserializer=None)
            future = stub.future(stalled(), timeout=30 if ending == "cancel" else 1.0)
            holders = [0, 1, 2] if pipeline else [0]

            def begun(holders: list[int] = holders, chunk_id: str = chunk_id) -> bool:
                return all(
                    any(p.name.startswith(chunk_id) for p in (cluster.keeper_dir(i) / "tmp").iterdir()) for i in holders
                )

            wait_for(begun, 10, "the write to begin on every keeper of the pipeline")
            if ending == "cancel":
                assert future.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leave Future.cancel untyped
                with pytest.raises(grpc.FutureCancelledError):
                    future.result(timeout=15)
            else:
                with pytest.raises(grpc.RpcError) as ended:
                    future.result(timeout=15)
                assert isinstance(ended.value, grpc.Call)
                assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            release.set()
            nowhere(chunk_id)
        servers.assert_serving()

    # Many tiny messages are fine: the stream's shape is free, only its bytes count.
    tiny = os.urandom(2000)
    messages = [opening("7300000000000001", b"", tiny, [])]
    messages += [kp.WriteChunkMessage(data=tiny[i : i + 1]) for i in range(2000)]
    assert call_typed(servers.keepers[0], write, messages).code == OK
    assert read_whole(servers.keeper_stubs[0], "7300000000000001") == tiny
    protected.assert_intact()


def test_duplicate_and_replayed_requests(protected: Protected) -> None:
    """A replayed or concurrent copy of a request changes nothing more than the first one did."""
    servers = protected.servers
    master = servers.master_stub
    transfer = ChunkTransfer(protected.files.master)

    def code(method: Callable[..., Any], request: Message) -> grpc.StatusCode:
        try:
            method(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as e:
            assert isinstance(e, grpc.Call)
            assert e.code() not in BAD_CODES, (request, e)
            return e.code()
        return OK

    def content(path: str) -> bytes:
        sink = io.BytesIO()
        protected.files.download(path, sink)
        return sink.getvalue()

    # PutFile eight times at once with the same chunk: one creates the file, the rest are refused.
    data = os.urandom(5000)
    chunk = transfer.write(0, data)
    put = mp.PutFileRequest(parent=1, name=b"dup", mode=0o644, size=len(data), chunk_size=MiB, chunks=[chunk])
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: code(master.PutFile, put), range(8)))
    assert sorted(codes, key=str) == sorted([OK] + [INVALID] * 7, key=str), codes
    assert code(master.PutFile, put) == INVALID  # and replayed later
    other = mp.PutFileRequest(parent=1, name=b"dup-other", size=len(data), chunk_size=MiB, chunks=[chunk])
    assert code(master.PutFile, other) == INVALID  # a chunk belongs to one file
    assert content("/dup") == data

    # CommitChunks replayed.
    file = master.CreateFile(mp.MakeNodeRequest(parent=1, name=b"dup2", mode=0o644), timeout=5).attr
    data2 = os.urandom(7000)
    chunk2 = transfer.write(0, data2)
    commit = mp.CommitChunksRequest(inode=file.inode, size=len(data2), chunks=[chunk2])
    assert code(master.CommitChunks, commit) == OK
    assert code(master.CommitChunks, commit) == INVALID
    # Abandoning committed chunks, twice, does nothing.
    abandon = mp.AbandonChunksRequest(chunk_ids=[chunk.chunk_id, chunk2.chunk_id])
    assert [code(master.AbandonChunks, abandon) for _ in range(2)] == [OK, OK]
    assert content("/dup") == data and content("/dup2") == data2

    # Namespace calls replayed: the second answer says why, and nothing changes twice.
    mkdir = mp.MakeNodeRequest(parent=1, name=b"dup-dir", mode=0o755)
    create = mp.MakeNodeRequest(parent=1, name=b"dup-file", mode=0o644, exclusive=True)
    symlink = mp.SymlinkRequest(parent=1, name=b"dup-link", target=b"dup")
    link = mp.LinkRequest(inode=file.inode, new_parent=1, new_name=b"dup2-link")
    rename = mp.RenameRequest(parent=1, name=b"dup2-link", new_parent=1, new_name=b"dup2-renamed")
    unlink = mp.EntryRequest(parent=1, name=b"dup2-renamed")
    rmdir = mp.EntryRequest(parent=1, name=b"dup-dir")
    exists, missing = grpc.StatusCode.ALREADY_EXISTS, NOT_FOUND
    for method, request, again in [
        (master.MakeDir, mkdir, exists),
        (master.CreateFile, create, exists),
        (master.Symlink, symlink, exists),
        (master.Link, link, exists),
        (master.Rename, rename, missing),
        (master.Unlink, unlink, missing),
        (master.RemoveDir, rmdir, missing),
    ]:
        assert code(method, request) == OK, request
        assert code(method, request) == again, request
    assert master.GetAttr(mp.InodeRequest(inode=file.inode), timeout=5).nlink == 1
    assert content("/dup2") == data2

    # The same, sent with a request id (as clients send changes: see Retries in master.proto):
    # every copy, one after another or eight at once, gets the first's answer, made once.
    def answers(method: Callable[..., Any], request: Message, copies: int = 2) -> list[bytes]:
        with ThreadPoolExecutor(copies) as pool:
            return list(pool.map(lambda _: method(request, timeout=CALL_TIMEOUT).SerializeToString(), range(copies)))

    data3 = os.urandom(3000)
    put3 = mp.PutFileRequest(
        parent=1, name=b"once", mode=0o644, size=len(data3), chunk_size=MiB, chunks=[transfer.write(0, data3)]
    )
    put3.request_id = 7_000_001
    assert len(set(answers(master.PutFile, put3, copies=8))) == 1
    ids = itertools.count(7_000_002)
    for method, request in [
        (master.MakeDir, mp.MakeNodeRequest(parent=1, name=b"once-dir", mode=0o755)),
        (master.CreateFile, mp.MakeNodeRequest(parent=1, name=b"once-file", mode=0o644, exclusive=True)),
        (master.Link, mp.LinkRequest(inode=file.inode, new_parent=1, new_name=b"once-link")),
        (master.Rename, mp.RenameRequest(parent=1, name=b"once-link", new_parent=1, new_name=b"once-moved")),
        (master.Rename, mp.RenameRequest(parent=1, name=b"once", new_parent=1, new_name=b"dup2", flags=2)),
        (master.Unlink, mp.EntryRequest(parent=1, name=b"once-moved")),
        (master.RemoveDir, mp.EntryRequest(parent=1, name=b"once-dir")),
    ]:
        request.request_id = next(ids)  # type: ignore[attr-defined]
        assert len(set(answers(method, request, copies=3))) == 1, request
    assert content("/dup2") == data3 and content("/once") == data2  # exchanged once, not back again
    assert master.GetAttr(mp.InodeRequest(inode=file.inode), timeout=5).nlink == 1

    # The same chunk written twice (a client retry), then eight times at once: stored once, and every
    # later copy refused (chunks are immutable), the same bytes or not.
    for n, rpc in enumerate(r for r in KEEPER_RPCS if r.request is kp.WriteChunkMessage):
        for k, stub in enumerate(servers.keeper_stubs):
            chunk_id = f"74000000000000{k}{n}"
            payload = os.urandom(3000)
            retry = functools.partial(call_typed, servers.keepers[k], rpc, [small_write(chunk_id, payload)])
            assert [retry().code for _ in range(2)] == [OK, EXISTS]
            with ThreadPoolExecutor(8) as pool:
                outcomes = list(pool.map(lambda _, retry=retry: retry(), range(8)))
            assert [o.code for o in outcomes] == [EXISTS] * 8, outcomes
            rewrite = call_typed(servers.keepers[k], rpc, [small_write(chunk_id, os.urandom(3000))])
            assert rewrite.code == EXISTS, rewrite
            assert read_whole(stub, chunk_id) == payload

            # A fresh chunk written eight times at once: stored, intact, and never answered unclearly.
            # (Only one should be acknowledged: see test_bug_6.)
            fresh = f"74100000000000{k}{n}"
            first = functools.partial(call_typed, servers.keepers[k], rpc, [small_write(fresh, payload)])
            with ThreadPoolExecutor(8) as pool:
                codes = [o.code for o in pool.map(lambda _, first=first: first(), range(8))]
            assert OK in codes and set(codes) <= {OK, EXISTS}, codes
            assert read_whole(stub, fresh) == payload
            assert [read_whole(s, fresh) for j, s in enumerate(servers.keeper_stubs) if j != k] == [None, None]
    protected.assert_intact()


def test_a_pipeline_back_to_the_receiver(protected: Protected) -> None:
    """A pipeline that leads back to the receiver under another name (a keeper checks names, not
    addresses: test_bug_3) makes it take its own forwarded copy while it writes its own: two
    overlapping writes of one id, of which the first to finish stays (test_bug_6). Which one that is
    is a race: when it is the forwarded copy, the write is refused ALREADY_EXISTS although the
    receiver did not hold the chunk before. Either way the receiver, and the keepers on the way,
    hold the bytes sent, and the others nothing (fuzz_writes expects the same)."""
    cluster, servers = protected.cluster, protected.servers
    ids = protected.keeper_id_of
    back = cp.KeeperRef(keeper_id="back", address=cluster.keeper_address(0))
    via = cp.KeeperRef(keeper_id=ids[1], address=cluster.keeper_address(1))
    answers: Counter[str] = Counter()
    for n in range(50):
        downstream = [back] if n % 2 == 0 else [via, back]
        chunk_id, payload = f"79{n:014x}", os.urandom(3000)
        outcome = status_of(servers.keepers[0], "WriteSmallChunk", small_write(chunk_id, payload, downstream))
        answers[f"{len(downstream)} hop(s): {outcome.code.name}"] += 1
        wait_for(lambda: not tmp_files(cluster), 5, "no partial write left behind")
        held = [read_whole(stub, chunk_id) for stub in servers.keeper_stubs]
        assert held == [payload, payload if via in downstream else None, None], (n, outcome)
        if outcome.code == OK:
            reply = kp.WriteChunkReply.FromString(outcome.replies[0])
            assert list(reply.stored_on) == ids[: len(downstream)], reply  # keeper0, and keeper1 on the way
            assert [(f.keeper.keeper_id, f.code) for f in reply.failures] == [("back", EXISTS.name)], reply
        else:
            assert outcome.code == EXISTS and "already stored" in outcome.details, outcome
    print(answers)
    protected.assert_intact()


# --- 3. the bugs found: a regression test each (a strict-xfail one while a bug is open) -----------


def status_of(channel: grpc.Channel, rpc_name: str, request: Message, timeout: float = CALL_TIMEOUT) -> Outcome:
    rpc = next(r for r in MASTER_RPCS + KEEPER_RPCS if r.name == rpc_name and r.request is type(request))
    return call_typed(channel, rpc, [request], timeout)


def test_bug_1_numbers_past_int64_are_invalid_arguments(protected: Protected) -> None:
    """BUG-1 (fixed): uint64 values and chunk ids above 2**63-1 reached SQLite unchecked, whose
    OverflowError was answered INTERNAL. Chunk ids are now positive signed 64-bit numbers, so
    8000000000000000 and up are not ids; any other number SQLite cannot hold is INVALID_ARGUMENT."""
    sandbox = make_sandbox(protected)
    master, keeper = protected.servers.master, protected.servers.keepers[0]
    huge = INT64_MAX + 1
    cases: list[tuple[grpc.Channel, str, Message]] = [
        (master, "GetAttr", mp.InodeRequest(inode=huge)),
        (master, "ReadLink", mp.InodeRequest(inode=UINT64_MAX)),
        (master, "Lookup", mp.EntryRequest(parent=UINT64_MAX, name=b"x")),
        (master, "ReadDir", mp.ReadDirRequest(inode=1, after=huge)),
        (master, "GetChunks", mp.GetChunksRequest(inode=sandbox.data_file, first_index=huge)),
        (master, "GetChunks", mp.GetChunksRequest(inode=sandbox.data_file, count=UINT64_MAX)),
        (master, "SetAttr", mp.SetAttrRequest(inode=sandbox.file, size=UINT64_MAX)),
        (master, "MakeDir", mp.MakeNodeRequest(parent=huge, name=b"x")),
        (master, "PutFile", mp.PutFileRequest(parent=sandbox.dir, name=b"huge", size=UINT64_MAX)),
        (master, "Link", mp.LinkRequest(inode=sandbox.file, new_parent=huge, new_name=b"x")),
        (master, "Rename", mp.RenameRequest(parent=sandbox.dir, name=b"f", new_parent=huge, new_name=b"x")),
        (master, "AbandonChunks", mp.AbandonChunksRequest(chunk_ids=["ffffffffffffffff"])),
        (master, "ReportBadReplica", mp.BadReplicaRequest(chunk_id="8000000000000000", keeper_id="x")),
        (
            master,
            "CommitChunks",
            mp.CommitChunksRequest(
                inode=sandbox.file, size=10, chunks=[mp.NewChunk(index=0, chunk_id="8000000000000000", length=10)]
            ),
        ),
        (keeper, "ReadChunk", kp.ReadChunkRequest(chunk_id="8000000000000000")),
        (keeper, "ReadChunk", kp.ReadChunkRequest(chunk_id=min(protected.chunk_ids), offset=UINT64_MAX)),
        (keeper, "WriteSmallChunk", small_write("ffffffffffffffff", b"x")),
        (keeper, "WriteChunk", small_write("8000000000000000", b"x")),
        (keeper, "WriteChunk", small_write("8" + UNKNOWN_CHUNK[1:], b"x")),
    ]
    answers = [(rpc, request, status_of(channel, rpc, request)) for channel, rpc, request in cases]
    protected.servers.assert_serving()
    wrong = [f"{rpc}({request}): {o.code.name} {o.details}" for rpc, request, o in answers if o.code != INVALID]
    assert not wrong, "\n".join(wrong)
    # Up to int64, a count is only a limit: all there is.
    count = mp.GetChunksRequest(inode=sandbox.data_file, count=INT64_MAX)
    assert len(protected.servers.master_stub.GetChunks(count, timeout=5).chunks) == 1
    for i in range(KEEPERS):
        stored = [p.name for p in (protected.cluster.keeper_dir(i) / "chunks").glob("*/*") if p.name[0] in "89abcdef"]
        assert not stored, f"keeper{i} stored chunks with ids past int64: {stored}"
    # The edges of the range are ids.
    for chunk_id in ("0000000000000000", INT64_MAX.to_bytes(8).hex()):
        assert status_of(keeper, "WriteSmallChunk", small_write(chunk_id, b"edge")).code == OK, chunk_id
    protected.assert_intact()  # and no OverflowError in any log


def test_bug_2_a_stored_chunk_is_never_rewritten(protected: Protected) -> None:
    """BUG-2 (fixed): a write of a chunk id the keeper already held replaced the chunk. Now it is
    refused (ALREADY_EXISTS) and the stored bytes stay, whether the write is direct, the same bytes
    again, or reaches the keeper down a pipeline (then the keeper before it reports the refusal)."""
    servers = protected.servers
    victim = os.urandom(100_000)
    attr = protected.files.upload(io.BytesIO(victim), "/victim")
    ref = servers.master_stub.GetChunks(mp.GetChunksRequest(inode=attr.inode), timeout=5).chunks[0]
    assert len(ref.replicas) == GOAL
    evil = b"evil" * 1000
    for replica in ref.replicas:
        keeper = channel_to(replica.address)
        for rpc in ("WriteChunk", "WriteSmallChunk"):
            for data in (evil, victim):
                outcome = status_of(keeper, rpc, small_write(ref.chunk_id, data))
                assert outcome.code == EXISTS, (replica.address, rpc, outcome)
        held = read_whole(keeper_pb2_grpc.KeeperStub(keeper), ref.chunk_id)
        shown = held[:16] if held else held
        assert held == victim, f"the replica of {ref.chunk_id} on {replica.address} now holds {shown!r}..."
        keeper.close()

    # Down a pipeline: keeper0 takes a chunk keeper1 already holds; keeper1 refuses, keeper0 says so.
    cluster = protected.cluster
    chunk_id, first, second = "7600000000000001", os.urandom(5000), os.urandom(5000)
    assert status_of(servers.keepers[1], "WriteSmallChunk", small_write(chunk_id, first)).code == OK
    refs = [cp.KeeperRef(keeper_id=protected.keeper_id_of[j], address=cluster.keeper_address(j)) for j in (1, 2)]
    outcome = status_of(servers.keepers[0], "WriteChunk", small_write(chunk_id, second, refs))
    assert outcome.code == OK, outcome
    reply = kp.WriteChunkReply.FromString(outcome.replies[0])
    assert list(reply.stored_on) == [protected.keeper_id_of[0]], reply
    assert [(f.keeper.keeper_id, f.code) for f in reply.failures] == [(protected.keeper_id_of[1], EXISTS.name)], reply
    assert [read_whole(stub, chunk_id) for stub in servers.keeper_stubs] == [second, first, None]
    # The same through WriteSmallChunk: keeper2 takes it, keeper0 (downstream) refuses.
    ref0 = cp.KeeperRef(keeper_id=protected.keeper_id_of[0], address=cluster.keeper_address(0))
    outcome = status_of(servers.keepers[2], "WriteSmallChunk", small_write(chunk_id, first, [ref0]))
    assert outcome.code == OK, outcome
    reply = kp.WriteChunkReply.FromString(outcome.replies[0])
    assert list(reply.stored_on) == [protected.keeper_id_of[2]], reply
    assert [(f.keeper.keeper_id, f.code) for f in reply.failures] == [(protected.keeper_id_of[0], EXISTS.name)], reply
    # Now that every keeper holds it, the write is refused outright, with or without a pipeline.
    for rpc in ("WriteChunk", "WriteSmallChunk"):
        for k in range(KEEPERS):
            downstream = [r for r in [ref0, *refs] if r.address != cluster.keeper_address(k)]
            for pipeline in ([], downstream):
                outcome = status_of(servers.keepers[k], rpc, small_write(chunk_id, b"other", pipeline))
                assert outcome.code == EXISTS, (rpc, k, pipeline, outcome)
    assert [read_whole(stub, chunk_id) for stub in servers.keeper_stubs] == [second, first, first]
    sink = io.BytesIO()
    protected.files.download("/victim", sink)
    assert sink.getvalue() == victim
    protected.assert_intact()


def test_bug_3_pipelines_are_bounded_and_name_no_keeper_twice(protected: Protected) -> None:
    """BUG-3 (fixed): a write whose pipeline looped back to the same keeper 64+ times took every worker
    thread of that keeper, which then hung. Now a keeper refuses (INVALID_ARGUMENT), before it
    stores or forwards a byte, a downstream list longer than MAX_PIPELINE or one naming itself or a
    keeper twice; and every keeper down the pipeline checks the rest of it again."""
    cluster, servers = protected.cluster, protected.servers
    ids = protected.keeper_id_of
    me = cp.KeeperRef(keeper_id="me-again", address=cluster.keeper_address(0))
    payload = b"loop"
    looping = small_write("7500000000000001", payload, [me] * 80)
    looped: list[Outcome] = []
    writer = threading.Thread(target=lambda: looped.append(status_of(servers.keepers[0], "WriteChunk", looping)))
    writer.start()
    time.sleep(0.2)
    read = status_of(servers.keepers[0], "ReadChunk", kp.ReadChunkRequest(chunk_id=UNKNOWN_CHUNK), timeout=2)
    writer.join()
    assert read.code == NOT_FOUND, f"another client's read got {read.code.name} after {read.seconds:.1f} s"
    assert looped[0].code == INVALID, looped[0]

    real = [cp.KeeperRef(keeper_id=ids[j], address=cluster.keeper_address(j)) for j in range(KEEPERS)]
    fakes = [cp.KeeperRef(keeper_id=f"fake-{i}", address="127.0.0.1:1") for i in range(MAX_PIPELINE + 1)]
    refused = {
        "one longer than allowed": fakes,
        "far longer": fakes * 100,
        "itself": [real[0]],
        "itself, later": [real[1], fakes[0], real[0]],
        "itself by id, elsewhere": [cp.KeeperRef(keeper_id=ids[0], address=cluster.keeper_address(2))],
        "a keeper twice": [real[1], real[2], real[1]],
        "a fake keeper twice": [fakes[0], fakes[0]],
    }
    for n, (what, downstream) in enumerate(refused.items()):
        chunk_id = f"75100000000000{n:02x}"
        for rpc in ("WriteChunk", "WriteSmallChunk"):
            outcome = status_of(servers.keepers[0], rpc, small_write(chunk_id, payload, downstream))
            assert outcome.code == INVALID, (what, rpc, outcome)
        assert [read_whole(stub, chunk_id) for stub in servers.keeper_stubs] == [None] * KEEPERS, what

    # As long as allowed is fine (the next keeper is not there: reported, not failed).
    outcome = status_of(servers.keepers[0], "WriteChunk", small_write("7520000000000001", payload, fakes[:-1]))
    assert outcome.code == OK, outcome
    reply = kp.WriteChunkReply.FromString(outcome.replies[0])
    assert list(reply.stored_on) == [ids[0]] and [f.keeper.keeper_id for f in reply.failures] == ["fake-0"], reply
    # The keeper after this one finds itself named further down, and refuses; this one reports it.
    disguised = [cp.KeeperRef(keeper_id="disguised", address=cluster.keeper_address(1)), real[1]]
    outcome = status_of(servers.keepers[0], "WriteChunk", small_write("7520000000000002", payload, disguised))
    assert outcome.code == OK, outcome
    reply = kp.WriteChunkReply.FromString(outcome.replies[0])
    assert list(reply.stored_on) == [ids[0]], reply
    assert [(f.keeper.keeper_id, f.code) for f in reply.failures] == [("disguised", INVALID.name)], reply
    assert [read_whole(stub, "7520000000000002") for stub in servers.keeper_stubs] == [payload, None, None]
    # Looping back by address under MAX_PIPELINE other names is bounded: it ends, in time.
    back = [cp.KeeperRef(keeper_id=f"back-{i}", address=cluster.keeper_address(0)) for i in range(MAX_PIPELINE)]
    outcome = status_of(servers.keepers[0], "WriteChunk", small_write("7520000000000003", payload, back))
    assert outcome.code not in BAD_CODES, outcome
    servers.assert_serving()
    protected.assert_intact()


def test_bug_4_one_chunk_in_two_slots_is_refused(protected: Protected) -> None:
    """BUG-4 (fixed): PutFile/CommitChunks accepted one chunk in two slots (the last slot kept it, the
    others silently became holes). Now that is INVALID_ARGUMENT, and the chunk is still there to
    commit properly."""
    servers = protected.servers
    master = servers.master_stub
    data = os.urandom(4096)
    chunk = ChunkTransfer(protected.files.master).write(0, data)
    again = mp.NewChunk()
    again.CopyFrom(chunk)
    again.index = 1
    put = mp.PutFileRequest(parent=1, name=b"twice", size=8192, chunk_size=4096, chunks=[chunk, again])
    outcome = status_of(servers.master, "PutFile", put)
    assert outcome.code == INVALID and "two slots" in outcome.details, outcome
    assert status_of(servers.master, "ResolvePath", mp.PathRequest(path="/twice")).code == NOT_FOUND

    file = master.CreateFile(mp.MakeNodeRequest(parent=1, name=b"twice-commit", mode=0o644), timeout=5).attr
    commit = mp.CommitChunksRequest(inode=file.inode, size=file.chunk_size + 4096, chunks=[chunk, again])
    outcome = status_of(servers.master, "CommitChunks", commit)
    assert outcome.code == INVALID and "two slots" in outcome.details, outcome
    assert attr_key(master.GetAttr(mp.InodeRequest(inode=file.inode), timeout=5)) == attr_key(file)
    assert not master.GetChunks(mp.GetChunksRequest(inode=file.inode), timeout=5).chunks

    once = mp.PutFileRequest(parent=1, name=b"once", mode=0o644, size=len(data), chunk_size=4096, chunks=[chunk])
    assert status_of(servers.master, "PutFile", once).code == OK
    sink = io.BytesIO()
    protected.files.download("/once", sink)
    assert sink.getvalue() == data
    protected.assert_intact()


def test_bug_5_statfs_survives_huge_keeper_reports(protected: Protected) -> None:
    """BUG-5 (fixed): StatFs summed the byte counts keepers report into a uint64 without bounds and
    answered INTERNAL once they overflowed. Now the sums stop at 2**64-1."""
    servers = protected.servers
    for i in range(3):
        report = mp.RegisterKeeperRequest(
            keeper=cp.KeeperRef(keeper_id=f"huge-{i}", address="127.0.0.1:1"),
            capacity_bytes=UINT64_MAX,
            free_bytes=UINT64_MAX,
            used_bytes=UINT64_MAX,
        )
        assert status_of(servers.master, "RegisterKeeper", report).code == OK
    beat = mp.HeartbeatRequest(keeper_id="huge-0", capacity_bytes=UINT64_MAX, free_bytes=UINT64_MAX, load=UINT32_MAX)
    assert status_of(servers.master, "Heartbeat", beat).code == OK
    reply = servers.master_stub.StatFs(cp.Empty(), timeout=5)
    assert (reply.capacity_bytes, reply.free_bytes) == (UINT64_MAX, UINT64_MAX), reply
    status = servers.master_stub.Status(cp.Empty(), timeout=5)
    assert {k.keeper_id: k.capacity_bytes for k in status.keepers if k.keeper_id.startswith("huge-")} == {
        f"huge-{i}": UINT64_MAX for i in range(3)
    }
    protected.assert_intact()


def test_bug_6_overlapping_writes_of_one_chunk_id(protected: Protected) -> None:
    """Of two writes of one chunk id that overlap in time, at most one may be acknowledged, and the
    keeper must then hold the bytes of that one."""
    cluster, servers = protected.cluster, protected.servers
    rpc = next(r for r in KEEPER_RPCS if r.name == "WriteChunk")
    chunk_id = "7700000000000001"
    slow, quick = os.urandom(100_000), os.urandom(100_000)
    release = threading.Event()

    def stalled() -> Iterator[bytes]:
        yield opening(chunk_id, slow[:50_000], slow, []).SerializeToString()
        release.wait(10)
        yield kp.WriteChunkMessage(data=slow[50_000:]).SerializeToString()

    stream = servers.keepers[0].stream_unary(rpc.path, request_serializer=None, response_deserializer=None)
    future = stream.future(stalled(), timeout=CALL_TIMEOUT)
    wait_for(
        lambda: any(p.name.startswith(chunk_id) for p in (cluster.keeper_dir(0) / "tmp").iterdir()),
        10,
        "the slow write to begin",
    )
    quick_code = status_of(servers.keepers[0], "WriteSmallChunk", small_write(chunk_id, quick)).code
    release.set()
    try:
        future.result(timeout=CALL_TIMEOUT)
        slow_code = OK
    except grpc.RpcError as e:
        assert isinstance(e, grpc.Call)
        slow_code = e.code()
    assert {quick_code, slow_code} <= {OK, EXISTS}, (quick_code, slow_code)
    acknowledged = [data for code, data in [(quick_code, quick), (slow_code, slow)] if code == OK]
    held = read_whole(servers.keeper_stubs[0], chunk_id)
    assert len(acknowledged) == 1, f"{len(acknowledged)} writes acknowledged; held: the slow one's? {held == slow}"
    assert held == acknowledged[0], "the keeper holds other bytes than the write it acknowledged"
