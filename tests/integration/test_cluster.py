"""End to end: real master and keeper processes on loopback, driven through the CLI and client library."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from fusedfs import grpcutil
from fusedfs.chunkfile import data_offset, read_header
from fusedfs.chunks import BLOCK_SIZE, MiB, crc32c
from fusedfs.client.files import FileClient
from fusedfs.client.master import MasterClient
from fusedfs.client.transfer import ChunkTransfer
from fusedfs.errors import FsError
from fusedfs.keeper.chunkstore import ChunkStore
from fusedfs.local import LocalCluster, free_port
from fusedfs.master.cluster import LOST_AFTER_START
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import keeper_pb2_grpc, master_pb2_grpc
from fusedfs.rpc import master_pb2 as mp
from tests.integration.conftest import MakeCluster, SmallDisk, run_cli, wait_for


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(files: FileClient, name: str, data: bytes) -> None:
    files.upload(io.BytesIO(data), name)


def download(files: FileClient, name: str) -> bytes:
    sink = io.BytesIO()
    files.download(name, sink)
    return sink.getvalue()


def chunk_files(cluster: LocalCluster, index: int) -> list[Path]:
    return sorted((cluster.keeper_dir(index) / "chunks").glob("*/*"))


def replicas_at_goal(cluster: LocalCluster) -> bool:
    health = cluster.status().chunks
    unreadable = health.lost + health.unavailable
    return health.under_replicated == 0 and unreadable == 0 and health.over_replicated == 0


def test_cli_roundtrip_100_mib(cluster: LocalCluster, tmp_path: Path) -> None:
    data = os.urandom(100 * MiB)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    up = run_cli("client", cluster.master_address, "upload", "/big/dir/data.bin", str(source))
    assert up.returncode == 0, up.stderr
    back = tmp_path / "back.bin"
    down = run_cli("client", cluster.master_address, "download", "/big/dir/data.bin", str(back))
    assert down.returncode == 0, down.stderr
    assert sha256(back.read_bytes()) == sha256(data)
    listing = run_cli("client", cluster.master_address, "ls", "/big/dir")
    assert b"data.bin" in listing.stdout and str(len(data)).encode() in listing.stdout
    status = json.loads(run_cli("client", cluster.master_address, "status", "--json").stdout)
    assert status["files"] == 1
    # A reader that went away (`status | head -1`) gets no error message (it was "Broken pipe").
    gone, writer = os.pipe()
    os.close(gone)
    try:
        piped = subprocess.run(
            [sys.executable, "-m", "fusedfs", "client", cluster.master_address, "status"],
            stdout=writer,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(writer)
    assert piped.returncode == 141 and piped.stderr == b"", piped.stderr
    assert status["chunks"]["total"] == 13  # 100 MiB in 8 MiB chunks
    chunks = status["chunks"]
    assert chunks["under_replicated"] == chunks["lost"] == chunks["unavailable"] == 0
    assert status["chunks"]["pending"] == 0  # every chunk the upload reserved was committed
    assert [k["alive"] for k in status["keepers"]] == [True, True, True]
    assert all(k["chunks"] == 13 for k in status["keepers"])
    master = MasterClient(cluster.master_address)
    master.call("AllocateChunks", mp.AllocateChunksRequest(length=10))  # an upload that never commits
    shown = run_cli("client", cluster.master_address, "status").stdout.decode()
    assert "0 garbage, 1 reserved for uploads" in shown, shown
    master.pool.close()


def test_cli_uploads_and_downloads_a_folder_with_r(cluster: LocalCluster, tmp_path: Path) -> None:
    tree = tmp_path / "project"
    (tree / "src" / "deep").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "README").write_text("hello\n")
    (tree / "src" / "data.bin").write_bytes(os.urandom(3 * MiB + 7))
    (tree / "src" / "deep" / "empty.txt").write_bytes(b"")
    os.chmod(tree / "src" / "deep" / "empty.txt", 0o600)
    for i in range(20):
        (tree / "src" / f"small{i:02}.py").write_bytes(os.urandom(i * 100))
    (tree / ("n" * 255)).write_bytes(b"the longest name")  # (its download's temporary name is shorter)
    not_utf8 = tree / os.fsdecode(b"folder \xfe")  # names a mount takes need not be UTF-8
    not_utf8.mkdir()
    (not_utf8 / os.fsdecode(b"file \xff")).write_bytes(b"in a folder whose name is no UTF-8")
    os.symlink("README", tree / "link")  # left out, and said so
    master = cluster.master_address
    up = run_cli("client", master, "upload", "-r", "/backup/project", str(tree))
    assert up.returncode == 0, up.stderr
    assert b"25 files" in up.stderr and b"1 symlinks and special files left out" in up.stderr
    assert b"small07.py" in run_cli("client", master, "ls", "/backup/project/src").stdout
    back = tmp_path / "back"
    down = run_cli("client", master, "download", "-r", "/backup/project", str(back))
    assert down.returncode == 0, down.stderr
    (tree / "link").unlink()
    assert subprocess.run(["diff", "-r", str(tree), str(back)]).returncode == 0
    assert stat.S_IMODE((back / "src" / "deep" / "empty.txt").stat().st_mode) == 0o600
    assert (back / "empty").is_dir()
    # Mistakes are one readable line each.
    for args in (("upload", "-r", "/x", str(tree / "README")), ("download", "-r", "/backup/project/README", "y")):
        wrong = run_cli("client", master, *args)
        assert wrong.returncode != 0 and b"not a folder" in wrong.stderr and b"Traceback" not in wrong.stderr


def test_stdin_stdout_and_holes(files: FileClient, cluster: LocalCluster) -> None:
    data = b"head" + bytes(20 * MiB) + b"tail"  # the all-zero chunk in the middle is stored as a hole
    up = run_cli("client", cluster.master_address, "upload", "/piped", "-", stdin=data)
    assert up.returncode == 0, up.stderr
    down = run_cli("client", cluster.master_address, "download", "/piped", "-")
    assert down.returncode == 0 and down.stdout == data
    assert cluster.status().chunks.total == 2


def test_replace_is_atomic_and_old_chunks_are_collected(files: FileClient, cluster: LocalCluster) -> None:
    old = os.urandom(20 * MiB)
    upload(files, "/f", old)
    new = os.urandom(3 * MiB)
    upload(files, "/f", new)
    assert download(files, "/f") == new
    # The old version is in the trash (24 h by default), chunks and all ...
    listed = json.loads(run_cli("client", cluster.master_address, "trash", "list", "--json").stdout)
    assert [(e["path"], e["size"]) for e in listed["entries"]] == [("/f", 20 * MiB)]
    time.sleep(3)  # the garbage grace (1 s) and maintenance ticks
    assert sum(len(chunk_files(cluster, i)) for i in range(3)) == 3 * 4
    # ... until purged.
    purged = run_cli("client", cluster.master_address, "trash", "purge", "f")
    assert purged.returncode == 0 and b"purged 1 files (20.0 MiB)" in purged.stdout, purged
    wait_for(lambda: sum(len(chunk_files(cluster, i)) for i in range(3)) == 3, 15, "old chunks deleted")
    files.remove("/f")
    assert run_cli("client", cluster.master_address, "trash", "purge", "/").returncode == 0
    wait_for(lambda: sum(len(chunk_files(cluster, i)) for i in range(3)) == 0, 15, "all chunks deleted")
    assert cluster.status().chunks.garbage == 0 or wait_for(lambda: cluster.status().chunks.garbage == 0, 10, "purge")
    assert cluster.status().trash_files == 0


def test_killed_keeper_is_read_around_and_repaired(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(keepers=4)
    # (Over the network, as from another machine: the dead keeper's files are still on this one.)
    files = FileClient(MasterClient(cluster.master_address, wait=20), short_circuit=False)
    data = os.urandom(40 * MiB)
    upload(files, "/survivor", data)
    victim = max(range(4), key=lambda i: len(chunk_files(cluster, i)))
    assert chunk_files(cluster, victim)
    killed_at = time.monotonic()
    cluster.kill_keeper(victim)
    assert sha256(download(files, "/survivor")) == sha256(data)  # before the master even noticed
    noticed = wait_for(lambda: sum(not k.alive for k in cluster.status().keepers) == 1, 10, "keeper reported dead")
    assert time.monotonic() - killed_at < 4.0, f"dead keeper noticed after {noticed:.1f} s"
    wait_for(lambda: replicas_at_goal(cluster), 60, "every chunk back at 3 copies")
    status = cluster.status()
    alive = [k for k in status.keepers if k.alive]
    assert len(alive) == 3 and all(k.chunks == status.chunks.total for k in alive)
    assert sha256(download(files, "/survivor")) == sha256(data)
    files.master.pool.close()


def test_a_keeper_that_hangs_holds_a_write_up_for_seconds_not_a_minute(
    cluster: LocalCluster, files: FileClient
) -> None:
    # A small chunk goes to every keeper at once: the client now has a connection to each.
    upload(files, "/warm", os.urandom(512 * 1024))
    hung = cluster.keeper_procs[0]
    assert hung is not None
    os.kill(hung.pid, signal.SIGSTOP)  # no answer, no reset: as a stalled process, or a cut cable
    data = os.urandom(512 * 1024)
    try:
        started = time.monotonic()
        upload(files, "/during", data)
        took = time.monotonic() - started
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    assert download(files, "/during") == data
    # gRPC pings a connection with calls in flight every 2 s, and gives up after 2 s without an
    # answer; its pings used to wait 60 s for one, and the write with them (its own timeout).
    assert took < 10, took


def test_keeper_killed_mid_upload(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(keepers=3)
    files = FileClient(MasterClient(cluster.master_address, wait=30))
    data = os.urandom(160 * MiB)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            upload(files, "/during-failure", data)
        except BaseException as e:
            errors.append(e)

    uploader = threading.Thread(target=work)
    uploader.start()
    time.sleep(0.4)
    cluster.kill_keeper(1)
    uploader.join(120)
    assert not uploader.is_alive() and not errors, errors
    assert sha256(download(files, "/during-failure")) == sha256(data)
    cluster.start_keeper(1)  # back with its old chunks: over- and under-replication settle to the goal
    wait_for(lambda: replicas_at_goal(cluster), 60, "replication goal restored")
    files.master.pool.close()


def test_master_killed_and_restarted(cluster: LocalCluster, files: FileClient) -> None:
    contents = {f"/d{i}/file{i}": os.urandom(i * MiB + 123) for i in range(1, 6)}
    for name, data in contents.items():
        upload(files, name, data)
    files.mkdir("/made-just-before-the-crash")
    cluster.kill_master()
    cluster.start_master()
    for name, data in contents.items():
        assert download(files, name) == data, name
    assert files.stat("/made-just-before-the-crash").inode > 1
    wait_for(lambda: replicas_at_goal(cluster), 20, "replicas known again")


def test_a_master_started_on_empty_metadata_never_wipes_the_keepers(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--chunk-size", "1"])
    files = FileClient(MasterClient(cluster.master_address))
    data = os.urandom(3 * MiB)
    upload(files, "/precious", data)
    held = [chunk_files(cluster, i) for i in range(3)]
    first_id = cluster.status().cluster_id
    cluster.kill_master()
    (cluster.data_dir / "master").rename(cluster.data_dir / "master-aside")  # a wrong or empty --data
    cluster.start_master()
    assert cluster.status().cluster_id != first_id
    # Had the keepers joined it, its new chunks (ids starting over) would make every chunk of the
    # old cluster look like long-collected garbage of its own: deleted.
    with contextlib.suppress(FsError):
        upload(FileClient(MasterClient(cluster.master_address, wait=3)), "/new", os.urandom(5 * MiB))
    time.sleep(3)  # garbage grace (1 s) and maintenance ticks
    assert [chunk_files(cluster, i) for i in range(3)] == held
    assert not [k for k in cluster.status().keepers if k.alive]
    logs = cluster.data_dir / "logs"
    assert "refused this keeper" in (logs / "keeper0.log").read_text()
    assert (logs / "master.log").read_text().count("refused") == 3  # once per keeper
    # The right metadata back: the keepers join again, nothing was lost.
    cluster.kill_master()
    shutil.rmtree(cluster.data_dir / "master")
    (cluster.data_dir / "master-aside").rename(cluster.data_dir / "master")
    cluster.start_master()
    cluster.wait_ready(3)
    assert download(files, "/precious") == data


def test_a_keeper_given_a_wrong_master_says_so(tmp_path: Path) -> None:
    """A keeper pointed at an address no master answers on logs that it cannot reach it (it said
    nothing at all but that it was serving, unless it had been registered before)."""
    log_path = tmp_path / "keeper.log"
    master, listen = free_port("127.0.0.1"), free_port("127.0.0.1")
    command = [sys.executable, "-m", "fusedfs", "keeper", f"127.0.0.1:{master}", "--listen", f"127.0.0.1:{listen}"]
    with open(log_path, "wb") as log, subprocess.Popen([*command, "--data", str(tmp_path / "k")], stderr=log) as keeper:
        try:
            wait_for(lambda: b"unreachable" in log_path.read_bytes(), 10, "the keeper saying it cannot reach it")
        finally:
            keeper.terminate()
    assert f"master 127.0.0.1:{master} unreachable" in log_path.read_text()


def newest_copy_taken(cluster: LocalCluster, keeper: int) -> int:
    """When the newest metadata copy on a keeper was taken (wall ns; 0: it holds none)."""
    names = sorted(p.name for p in (cluster.keeper_dir(keeper) / "metadata").glob("*.sqlite3"))
    return int(names[-1].split("-")[0]) if names else 0


def test_a_metadata_copy_its_keeper_lost_is_taken_again(make_cluster: MakeCluster) -> None:
    """A keeper holding the newest metadata copy dies, then comes back with an empty disk: status
    says the copy is on 2 keepers, and the master takes another at once, though nothing changed
    since. (It waited for a change and --metadata-copies-every, 600 s here, while status went on
    saying 3 keepers held it: with each keeper's disk replaced in turn, none held any copy.)"""
    cluster = make_cluster(master_args=["--metadata-copies-every", "600"])
    files = FileClient(MasterClient(cluster.master_address))
    upload(files, "/kept", b"the namespace must outlive the master's disk")
    files.master.pool.close()
    wait_for(lambda: all(newest_copy_taken(cluster, i) for i in range(3)), 15, "a copy on every keeper")
    # ... and the master has heard so (a keeper killed between writing the copy and answering
    # would leave it on 2 as far as the master knows: not the case this test is about).
    wait_for(lambda: cluster.status().metadata_copy_keepers == 3, 10, "status: the copy on 3 keepers")
    cluster.kill_keeper(1)
    wait_for(lambda: cluster.status().metadata_copy_keepers == 2, 10, "status: the copy on 2 keepers")
    shutil.rmtree(cluster.keeper_dir(1))
    cluster.start_keeper(1)
    wait_for(lambda: newest_copy_taken(cluster, 1), 25, "a copy on the keeper with the new disk")
    wait_for(lambda: cluster.status().metadata_copy_keepers == 3, 5, "status: the copy on 3 keepers")


def test_a_change_sent_again_to_a_restarted_master_is_made_once(make_cluster: MakeCluster) -> None:
    """The master is SIGKILLed after making changes and before their answers arrive (a chaos
    sweep did this 30 times under a mount): the client sends them again to the restarted
    master and gets the first answers. Without request ids an append's commit was refused as
    stale and made again (lines twice in the log), a commit was EINVAL, a rename ENOENT."""
    cluster = make_cluster()
    master = MasterClient(cluster.master_address)
    transfer = ChunkTransfer(master)
    log_file = master.call("CreateFile", mp.MakeNodeRequest(parent=1, name=b"log", mode=0o644)).attr
    line = b"line 1\n"
    append = mp.CommitChunksRequest(
        inode=log_file.inode, size=len(line), chunks=[transfer.write(0, line)], appended_at=0
    )
    changes: list[tuple[str, Any]] = [
        ("CommitChunks", append),
        ("Rename", mp.RenameRequest(parent=1, name=b"log", new_parent=1, new_name=b"log.1")),
        ("MakeDir", mp.MakeNodeRequest(parent=1, name=b"dir", mode=0o755)),
        ("CreateFile", mp.MakeNodeRequest(parent=1, name=b"new", mode=0o644, exclusive=True)),
    ]
    first = [master.call(method, request).SerializeToString() for method, request in changes]
    assert all(request.request_id for _, request in changes)  # (given by the client library)
    cluster.kill_master()
    cluster.start_master()
    cluster.wait_ready(3)
    again = [master.call(method, request).SerializeToString() for method, request in changes]
    assert again == first
    assert master.call("ResolvePath", mp.PathRequest(path="/log.1")).size == len(line)
    sink = io.BytesIO()
    FileClient(master).download("/log.1", sink)
    assert sink.getvalue() == line
    # A change sent again with a new id (or none) is made (or refused) anew.
    rename = changes[1][1]
    rename.request_id = 0
    with pytest.raises(FsError) as refused:
        master.call("Rename", rename)
    assert refused.value.errno == errno.ENOENT
    master.pool.close()


def test_a_metadata_copy_on_fewer_keepers_than_there_are_is_taken_again(make_cluster: MakeCluster) -> None:
    """The first copy goes to the one keeper there is; two more join: the master takes another
    copy within seconds, though nothing changed since. (It waited for a change and
    --metadata-copies-every, 600 s here: the same as a copy one of its keepers refused.)"""
    cluster = make_cluster(keepers=1, master_args=["--metadata-copies-every", "600"])
    wait_for(lambda: cluster.status().metadata_copy_keepers == 1, 15, "status: the first copy on the keeper")
    for _ in range(2):
        cluster.start_keeper()
    cluster.wait_ready(3)
    wait_for(lambda: cluster.status().metadata_copy_keepers == 3, 20, "status: a copy on 3 keepers")
    assert all(newest_copy_taken(cluster, i) for i in range(3))


def test_the_metadata_outlives_the_masters_disk(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(master_args=["--metadata-copies-every", "30", "--chunk-size", "1"])
    files = FileClient(MasterClient(cluster.master_address))
    kept, changed = os.urandom(3 * MiB), os.urandom(2 * MiB)
    upload(files, "/docs/kept", kept)
    upload(files, "/docs/changed", changed)
    written = time.time_ns()
    wait_for(lambda: all(newest_copy_taken(cluster, i) > written for i in range(3)), 15, "a copy on every keeper")

    def status_says_copied() -> bool:
        # The keepers write the copy before the master has their replies.
        status = cluster.status()
        return status.metadata_copy_keepers == 3 and status.metadata_copy_taken_ns > written

    wait_for(status_says_copied, 5, "status: the copy on 3 keepers")
    # After the copy: a file changes (its old chunks become garbage), one is added, one removed.
    rewritten = os.urandom(MiB)
    upload(files, "/docs/changed", rewritten)
    upload(files, "/docs/late", b"after the copy")
    files.remove("/docs/kept")
    # The changes reach the keepers as they are made, not with the next copy (in 30 s).
    started = time.monotonic()
    wait_for(lambda: cluster.status().metadata_changes_unsent == 0, 2, "the changes on the keepers")
    print(f"changes on the keepers within {time.monotonic() - started:.2f} s")
    time.sleep(3)  # the garbage grace (1 s) and maintenance ticks: no copy shows them garbage yet
    held = {path.name for i in range(3) for path in chunk_files(cluster, i)}  # ids issued so far
    # The master's disk is lost; a new one is restored from a keeper's copy and changes.
    cluster.kill_master()
    shutil.rmtree(cluster.data_dir / "master")
    cluster.master_args += ["--restore-from", cluster.keeper_address(1)]
    cluster.start_master()
    cluster.wait_ready(3)
    # Chunk ids issued after the copy (keepers hold chunks under them) are never issued again.
    fresh = [c.chunk_id for c in files.master.call("AllocateChunks", mp.AllocateChunksRequest(count=8)).chunks]
    files.master.call("AbandonChunks", mp.AbandonChunksRequest(chunk_ids=fresh))
    assert len(fresh) == 8 and not set(fresh) & held, (fresh, held)
    assert download(files, "/docs/changed") == rewritten
    assert download(files, "/docs/late") == b"after the copy"
    with pytest.raises(FsError):
        download(files, "/docs/kept")
    upload(files, "/docs/new", b"new")
    assert download(files, "/docs/new") == b"new"
    # Nor are inode numbers: a mount may still have a lost file open under its number.
    assert files.stat("/docs/new").inode > files.stat("/docs/late").inode + (1 << 31)
    wait_for(lambda: replicas_at_goal(cluster), 20, "replicas at the goal")
    log = (cluster.data_dir / "logs" / "master.log").read_text()
    assert "restored the metadata from keeper" in log and "lost" in log


def test_a_restore_from_every_keeper_takes_the_one_with_the_newest_metadata(make_cluster: MakeCluster) -> None:
    """A keeper is down while a file is written; the master's disk is then lost and the keeper
    comes back. Restored from every keeper (that one named first), the master takes a keeper
    with the newest changes: the file is there. (Restored from the stale keeper alone, as a
    chaos sweep did, the file was lost and its chunks collected as unknown.)"""
    cluster = make_cluster(master_args=["--metadata-copies-every", "600"])
    files = FileClient(MasterClient(cluster.master_address))
    upload(files, "/before", b"written with every keeper up")
    wait_for(lambda: cluster.status().metadata_copy_keepers == 3, 15, "status: a copy on 3 keepers")
    cluster.kill_keeper(0)
    wait_for(lambda: cluster.status().metadata_copy_keepers == 2, 10, "status: the copy on 2 keepers")
    upload(files, "/while-keeper0-was-down", b"the newest change")
    wait_for(lambda: cluster.status().metadata_changes_unsent == 0, 5, "the change on keepers 1 and 2")
    cluster.kill_master()
    shutil.rmtree(cluster.data_dir / "master")
    cluster.start_keeper(0)
    keepers = ",".join(cluster.keeper_address(i) for i in range(3))
    cluster.master_args += ["--restore-from", f"{keepers},127.0.0.1:1"]  # (and one that is not there)
    cluster.start_master()
    cluster.wait_ready(3)
    assert download(files, "/while-keeper0-was-down") == b"the newest change"
    assert download(files, "/before") == b"written with every keeper up"
    log = (cluster.data_dir / "logs" / "master.log").read_text()
    assert f"restored the metadata from keeper {cluster.keeper_address(0)}" not in log
    assert "(the most changes of 4 asked)" in log and "no metadata copy from keeper 127.0.0.1:1" in log
    files.master.pool.close()


def test_a_master_killed_under_load_is_restored_to_within_a_second_of_its_last_change(
    make_cluster: MakeCluster,
) -> None:
    """Files made, renamed and removed one after another; the master is killed and its disk
    lost at a random moment, seconds after its one metadata copy. The restored namespace is
    exactly the state after some acknowledged operation (whole transactions only), at most a
    second before the kill, with every file's bytes intact."""
    rng = random.Random(7)
    cluster = make_cluster(master_args=["--metadata-copies-every", "60"])
    files = FileClient(MasterClient(cluster.master_address, wait=5), short_circuit=False)
    folder = files.mkdir("/d").inode
    state: dict[str, bytes] = {}
    history: list[tuple[float, dict[str, bytes]]] = [(time.monotonic(), {})]
    kill_at = time.monotonic() + 5 + 3 * rng.random()
    while time.monotonic() < kill_at:
        op = rng.random()
        name = f"f{len(history)}"
        if op < 0.6 or len(state) < 3:
            state[name] = os.urandom(rng.choice([0, 10, 5000, 200_000]))
            files.upload(io.BytesIO(state[name]), f"/d/{name}")
        elif op < 0.8:
            old = rng.choice(sorted(state))
            request = mp.RenameRequest(parent=folder, name=old.encode(), new_parent=folder, new_name=name.encode())
            files.master.call("Rename", request)
            state[name] = state.pop(old)
        else:
            old = rng.choice(sorted(state))
            files.remove(f"/d/{old}")
            del state[old]
        history.append((time.monotonic(), dict(state)))
    cluster.kill_master()
    killed = time.monotonic()
    shutil.rmtree(cluster.data_dir / "master")
    cluster.master_args += ["--restore-from", cluster.keeper_address(rng.randrange(3))]
    cluster.start_master()
    cluster.wait_ready(3)
    names = {name.decode() for name, _ in files.listdir("/d")}
    matches = [i for i, (_, after) in enumerate(history) if set(after) == names]
    assert matches, f"the restored folder ({len(names)} names) is the state after no operation"
    done, restored = history[matches[-1]]
    age = 0.0 if matches[-1] == len(history) - 1 else killed - done
    print(f"{len(history) - 1} operations; restored as of {age:.2f} s before the kill")
    assert age < 1.0, f"restored as of {age:.2f} s before the kill"
    for name, data in restored.items():
        assert download(files, f"/d/{name}") == data, name


def test_fsck_names_the_files_a_dead_keeper_took_down_and_info_shows_where_chunks_are(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(master_args=["--goal", "2"])
    files = FileClient(MasterClient(cluster.master_address))
    for i in range(12):
        upload(files, f"/docs/f{i}", os.urandom(1000 + i))
    wait_for(lambda: replicas_at_goal(cluster), 20, "2 copies of every chunk")
    healthy = run_cli("client", cluster.master_address, "fsck")
    assert healthy.returncode == 0 and b"HEALTHY: every chunk at the goal" in healthy.stdout, healthy
    info = run_cli("client", cluster.master_address, "info", "/docs/f0")
    assert info.returncode == 0 and b"1 chunks, all at the goal of 2" in info.stdout, info
    # Two of the three keepers die: a chunk they both held is unavailable (lost, unless they
    # come back); one they shared with the third is below the goal, with nowhere to be copied to.
    held = [{p.name for p in chunk_files(cluster, i)} for i in range(3)]
    chunk_of = {
        f"/docs/f{i}": files.master.call("GetChunks", mp.GetChunksRequest(inode=files.stat(f"/docs/f{i}").inode))
        .chunks[0]
        .chunk_id
        for i in range(12)
    }
    down = {path for path, chunk in chunk_of.items() if chunk not in held[2]}
    assert down and len(down) < 12  # (placement spreads 12 chunks over the three pairs)
    cluster.kill_keeper(0)
    cluster.kill_keeper(1)
    wait_for(lambda: cluster.status().chunks.unavailable == len(down), 10, "the unavailable chunks counted")
    assert cluster.status().chunks.lost == 0
    fsck = run_cli("client", cluster.master_address, "fsck")
    out = fsck.stdout.decode()
    assert fsck.returncode == 1, fsck
    listed = [line.split(":")[0] for line in out.splitlines() if line.startswith("/") and "unavailable" in line]
    assert set(listed) == down and out.splitlines()[: len(down)] == [f"{p}: 1 chunks unavailable" for p in listed]
    assert (
        f"DAMAGED: 0 chunks lost (no keeper holds them), {len(down)} unavailable (only on keepers that are down),"
        f" {12 - len(down)} below the goal" in out
    ), out
    report = json.loads(run_cli("client", cluster.master_address, "fsck", "--json").stdout)
    assert {f["path"] for f in report["files"] if f["unavailable_chunks"]} == down and len(report["files"]) == 12
    assert report["lost_chunks"] == 0 and report["unavailable_chunks"] == len(down)
    victim = sorted(down)[0]
    shown = run_cli("client", cluster.master_address, "info", victim).stdout.decode()
    assert "0/2 (unavailable: its keepers are down): -" in shown, shown
    assert "1 chunks: 0 LOST, 1 unavailable, 0 below the goal of 2" in shown, shown
    survivor = sorted(set(chunk_of) - down)[0]
    described = json.loads(run_cli("client", cluster.master_address, "info", survivor, "--json").stdout)
    assert described["chunks"][0]["keepers"] == [cluster.keeper_address(2)]
    cluster.kill_master()  # not being able to check is not "chunks lost": fsck(8)'s operational error
    unchecked = run_cli("client", cluster.master_address, "--wait", "2", "fsck")
    assert unchecked.returncode == 8 and unchecked.stderr.decode().count("\n") == 1, unchecked


def test_copies_go_to_different_machines_and_a_whole_machine_can_die(make_cluster: MakeCluster) -> None:
    # Two "machines" of two disks each, a keeper per disk; goal 2. Machine a comes up first.
    cluster = make_cluster(keepers=2, master_args=["--goal", "2"], keeper_args=["--failure-domain", "box-a"])
    files = FileClient(MasterClient(cluster.master_address), short_circuit=False)
    domain_of = {cluster.keeper_address(i): "box-a" for i in range(2)}

    def domains(path: str) -> list[list[str]]:
        info = json.loads(run_cli("client", cluster.master_address, "info", path, "--json").stdout)
        return [sorted(domain_of[k] for k in chunk["keepers"]) for chunk in info["chunks"]]

    early = {f"/early/f{i}": os.urandom(5000 + i) for i in range(12)}
    for path, data in early.items():
        upload(files, path, data)
    assert all(d == [["box-a", "box-a"]] for d in map(domains, early))  # the best there is, for now
    for _ in range(2):
        domain_of[cluster.keeper_address(cluster.start_keeper(extra_args=["--failure-domain", "box-b"]))] = "box-b"
    cluster.wait_ready(4)
    # Written while one machine was up: each chunk gets a copy on the other, and loses one of
    # its two on the first.
    wait_for(
        lambda: all(d == [["box-a", "box-b"]] for d in map(domains, early)) and replicas_at_goal(cluster),
        30,
        "the early files' copies spread over both machines",
    )
    assert cluster.status().chunks.misplaced == 0
    late = {f"/late/f{i}": os.urandom(5000 + i) for i in range(12)}
    for path, data in late.items():
        upload(files, path, data)
        assert domains(path) == [["box-a", "box-b"]], path  # placed so from the start
    status = json.loads(run_cli("client", cluster.master_address, "status", "--json").stdout)
    assert sorted(k["failure_domain"] for k in status["keepers"]) == ["box-a", "box-a", "box-b", "box-b"]
    # Machine b dies: both of its disks at once. No file loses a chunk.
    cluster.kill_keeper(2)
    cluster.kill_keeper(3)
    wait_for(lambda: sum(k.alive for k in cluster.status().keepers) == 2, 10, "machine b noticed dead")
    assert cluster.status().chunks.lost == cluster.status().chunks.unavailable == 0
    for path, data in {**early, **late}.items():
        assert download(files, path) == data, path
    files.master.pool.close()


def test_a_drained_keeper_is_taken_away_with_every_chunk_still_at_the_goal(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(keepers=4)
    files = FileClient(MasterClient(cluster.master_address, wait=20), short_circuit=False)
    data = {f"/d/f{i}": os.urandom(200_000 + i) for i in range(10)}
    for path, content in data.items():
        upload(files, path, content)
    wait_for(lambda: replicas_at_goal(cluster), 20, "3 copies of every chunk")
    victim = max(range(4), key=lambda i: len(chunk_files(cluster, i)))
    address = cluster.keeper_address(victim)
    held = {p.name for p in chunk_files(cluster, victim)}
    assert held
    started = run_cli("client", cluster.master_address, "drain", address)
    assert started.returncode == 0 and b"is draining" in started.stdout, started
    # A master restarted mid-way still knows.
    cluster.kill_master()
    cluster.start_master()

    def drained() -> bool:  # (once it registered again with the restarted master)
        shown = [k for k in cluster.status(wait=20).keepers if k.address == address]
        return bool(shown) and shown[0].alive and shown[0].draining and shown[0].chunks_to_move == 0

    wait_for(drained, 30, "the keeper drained")
    shown = run_cli("client", cluster.master_address, "status").stdout.decode()
    assert "drained: every chunk it holds has the goal's worth of copies elsewhere, safe to stop" in shown, shown
    others = [{p.name for p in chunk_files(cluster, i)} for i in range(4) if i != victim]
    assert all(sum(chunk in o for o in others) >= 3 for chunk in held)  # on disk, not just in the master's books
    more = {f"/e/f{i}": os.urandom(1000) for i in range(10)}  # new chunks go elsewhere
    for path, content in more.items():
        upload(files, path, content)
    assert {p.name for p in chunk_files(cluster, victim)} == held  # (its copies stay until it goes)
    cluster.kill_keeper(victim)
    for path, content in {**data, **more}.items():
        assert download(files, path) == content, path
    files.master.pool.close()
    # Another drained with 3 keepers left for a goal of 3: it cannot finish, and status says why.
    second = cluster.keeper_address(next(i for i in range(4) if i != victim))
    assert run_cli("client", cluster.master_address, "drain", second).returncode == 0
    shown = run_cli("client", cluster.master_address, "status").stdout.decode()
    assert "(only 2 other keepers for a goal of 3: it finishes once another keeper joins)" in shown, shown


def test_a_folders_goal_keeps_its_files_at_that_many_copies(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(keepers=4)
    master = cluster.master_address
    files = FileClient(MasterClient(master, wait=20), short_circuit=False)
    want = {"scratch": 1, "precious": 4, "plain": 3}  # plain: the cluster's goal
    for folder in want:
        files.mkdir(f"/{folder}")
    for folder, copies in (("scratch", "1"), ("precious", "4")):
        shown = run_cli("client", master, "goal", f"/{folder}", copies)
        assert shown.returncode == 0 and b"for 0 file(s) and 1 folder(s)" in shown.stdout, shown
    # Files in a folder made below take its goal too.
    data = {f"/{folder}/sub/f{i}": os.urandom(300_000 + i) for folder in want for i in range(4)}

    def copies_on_disk(paths: Iterable[str] = data) -> dict[str, set[int]]:  # folder -> its chunks' copies
        held = [{p.name for p in chunk_files(cluster, i)} for i in range(4)]
        found: dict[str, set[int]] = {}
        for path in paths:
            for chunk in json.loads(run_cli("client", master, "info", path, "--json").stdout)["chunks"]:
                found.setdefault(path.split("/")[1], set()).add(sum(chunk["chunk_id"] in h for h in held))
        return found

    for path, content in data.items():
        upload(files, path, content)
        folder = path.split("/")[1]
        assert copies_on_disk([path]) == {folder: {want[folder]}}, path  # written so, not copied or trimmed after

    def at(goals: dict[str, int]) -> bool:
        return copies_on_disk() == {folder: {n} for folder, n in goals.items()} and replicas_at_goal(cluster)

    wait_for(lambda: at(want), 30, "each folder's chunks at its goal, on disk")
    said = run_cli("client", master, "goal", "/scratch/sub/f0").stdout
    assert said == b"/scratch/sub/f0: 1 copy (its own; the cluster's is 3)\n", said
    assert b"1 copy (its own" in run_cli("client", master, "goal", "/scratch/sub").stdout
    # A restarted master still knows (else it would copy the scratch files up to 3).
    cluster.kill_master()
    cluster.start_master()
    wait_for(lambda: replicas_at_goal(cluster) and at(want), 30, "the goals kept across a restart")
    time.sleep(2)
    assert at(want)
    # Back to the cluster's goal, all the way down.
    shown = run_cli("client", master, "goal", "/", "default", "-r")
    assert shown.returncode == 0 and b"the cluster's goal for 12 file(s) and 7 folder(s)" in shown.stdout, shown
    wait_for(lambda: at(dict.fromkeys(want, 3)), 30, "every chunk back at 3 copies")
    assert b"3 copies (the cluster's" in run_cli("client", master, "goal", "/precious/sub/f1").stdout
    bad = run_cli("client", master, "goal", "/plain", "17")
    assert bad.returncode != 0 and bad.stderr.count(b"\n") == 1 and b"1 to 16" in bad.stderr, bad
    for path, content in data.items():
        assert download(files, path) == content, path
    files.master.pool.close()


def test_du_shows_what_each_folder_holds(cluster: LocalCluster, files: FileClient) -> None:
    sizes = {"/p/src/a.py": 1000, "/p/src/deep/b.py": 3 * MiB, "/p/docs/c.md": 10, "/p/top.txt": 7}
    for path, size in sizes.items():
        upload(files, path, os.urandom(size))
    files.mkdir("/p/empty")
    assert run_cli("client", cluster.master_address, "goal", "/p/docs", "1", "-r").returncode == 0
    shown = json.loads(run_cli("client", cluster.master_address, "du", "/p", "--json").stdout)
    assert shown["total"] == {
        "files": 4,
        "folders": 5,  # p itself, src, deep, docs, empty
        "bytes": sum(sizes.values()),
        "chunks": 4,
        "stored_bytes": sum(sizes.values()),
        "kept_bytes": 3 * sum(sizes.values()) - 2 * 10,  # docs/c.md: one copy
    }
    assert [(f["name"], f["files"], f["bytes"]) for f in shown["folders"]] == [
        ("src", 2, 1000 + 3 * MiB),
        ("docs", 1, 10),
        ("empty", 0, 0),
    ]
    assert shown["others"]["files"] == 1 and shown["others"]["bytes"] == 7 and shown["goal"] == 3
    text = run_cli("client", cluster.master_address, "du", "p").stdout.decode()
    assert (
        "/p: 3.0 MiB in 4 files and 5 folders; 4 chunks, 9.0 MiB on the keepers with every copy (the cluster's goal: 3)"
        in text
    ), text
    assert text.splitlines()[0].endswith("src/")


def test_corrupt_replicas_are_read_around_and_repaired(cluster: LocalCluster, files: FileClient) -> None:
    data = os.urandom(3 * MiB)
    upload(files, "/fragile", data)
    victims = chunk_files(cluster, 0) + chunk_files(cluster, 1)
    assert len(victims) == 2
    originals = {}
    for path in victims:
        originals[path] = path.read_bytes()
        with open(path, "r+b") as f:
            f.seek(8192 + 1000)
            f.write(b"\xff" * 16 if originals[path][8192 + 1000] != 0xFF else b"\x00" * 16)
    # Whichever replica each download picks, the data is intact; a bad one is dropped when hit.
    for _ in range(30):
        assert download(files, "/fragile") == data
        if any(not p.exists() for p in victims):
            break
    # Scrubbing finds the rest in the background (issue 4); here, every bad replica a read hit is
    # replaced by a good copy and the goal is restored.
    wait_for(
        lambda: (
            replicas_at_goal(cluster) and all(p.exists() for p in chunk_files(cluster, 0) + chunk_files(cluster, 1))
        ),
        30,
        "repair",
    )
    for i in range(3):
        store = ChunkStore(cluster.keeper_dir(i))
        for chunk_id in store.chunk_ids():
            if store.verify(chunk_id):
                continue
            assert any(p.name == chunk_id for p in victims)  # only a never-read corrupt copy may remain


def test_a_chunk_whose_every_copy_is_damaged_fails_at_once_and_repair_pieces_it_together(
    cluster: LocalCluster, files: FileClient
) -> None:
    """Every copy of a chunk damaged: a read fails with EIO in seconds, where it waited the
    client's whole wait (20 s here) as for a cluster that is down; each copy is set aside on its
    keeper, not deleted; fsck names the file. `repair` then takes each block from a copy that
    holds it intact: damaged each in another block, the file comes back whole; a block damaged
    in every copy is left as it is, or put back as zeros with --zeros."""
    began = time.monotonic()  # (the master started before)
    data = {"/doomed": os.urandom(MiB), "/worse": os.urandom(MiB)}
    for name, content in data.items():
        upload(files, name, content)
    chunk_ids = {}
    for name in data:
        [ref] = files.master.call("GetChunks", mp.GetChunksRequest(inode=files.stat(name).inode)).chunks
        chunk_ids[name] = ref.chunk_id
    start = data_offset(MiB)
    for i in range(3):
        for name, block in (("/doomed", i), ("/worse", 5)):  # /doomed: block i in copy i; /worse: 5 in each
            with open(cluster.keeper_dir(i) / "chunks" / chunk_ids[name][-2:] / chunk_ids[name], "r+b") as f:
                f.seek(start + block * BLOCK_SIZE + 100)
                old = f.read(16)
                f.seek(start + block * BLOCK_SIZE + 100)
                f.write(bytes(b ^ 0xFF for b in old))
    time.sleep(max(0.0, LOST_AFTER_START - (time.monotonic() - began)))  # (none is lost before)
    for name in data:
        started = time.monotonic()
        with pytest.raises(FsError) as failed:
            download(files, name)
        took = time.monotonic() - started
        assert failed.value.errno == errno.EIO and "is lost" in failed.value.message, failed.value
        assert took < 10, f"EIO after {took:.1f} s"
    for i in range(3):
        aside = sorted(p.name.split(".")[0] for p in (cluster.keeper_dir(i) / "damaged").iterdir())
        assert aside == sorted(chunk_ids.values()) and not chunk_files(cluster, i)
    fsck = run_cli("client", cluster.master_address, "fsck")
    assert fsck.returncode == 1 and b"/doomed: 1 chunks LOST" in fsck.stdout and b"/worse" in fsck.stdout, fsck
    assert cluster.status().chunks.lost == 2 and cluster.status().chunks.unavailable == 0
    info = run_cli("client", cluster.master_address, "info", "/worse")
    assert b"LOST, no keeper has it: `repair` may piece it together" in info.stdout, info
    wait_for(lambda: [k.damaged_copies for k in cluster.status().keepers] == [2, 2, 2], 5, "2 set aside on each")

    repaired = run_cli("client", cluster.master_address, "repair", "/doomed")
    assert repaired.returncode == 0 and b"whole again, from 3 damaged copies" in repaired.stdout, repaired
    assert download(files, "/doomed") == data["/doomed"]
    left = run_cli("client", cluster.master_address, "repair", "/worse")
    assert left.returncode == 1 and b"intact in none of its 3 damaged copies" in left.stdout, left
    assert b"left as it is" in left.stdout
    zeroed = run_cli("client", cluster.master_address, "repair", "--zeros", "/worse")
    assert zeroed.returncode == 1 and b"put back with zeros" in zeroed.stdout, zeroed
    hole = slice(5 * BLOCK_SIZE, 6 * BLOCK_SIZE)
    expected = bytearray(data["/worse"])
    expected[hole] = bytes(BLOCK_SIZE)
    assert download(files, "/worse") == expected
    wait_for(lambda: run_cli("client", cluster.master_address, "fsck").returncode == 0, 20, "every chunk at its goal")
    nothing = run_cli("client", cluster.master_address, "repair", "/doomed")
    assert nothing.returncode == 0 and b"no chunk is lost" in nothing.stdout, nothing


def test_a_keeper_file_holding_another_chunk_s_bytes_is_read_around_and_replaced(
    cluster: LocalCluster, files: FileClient
) -> None:
    """A keeper's file of chunk B holds chunk A's bytes, sound in itself (a misplaced or restored
    file): readers take another replica, and the keeper, asked to verify it, checks it against
    the master's length and checksum too, so it is set aside and B copied back."""
    data = {"/a": os.urandom(MiB), "/b": os.urandom(MiB)}
    ids = {}
    for name, content in data.items():
        upload(files, name, content)
        [ref] = files.master.call("GetChunks", mp.GetChunksRequest(inode=files.stat(name).inode)).chunks
        ids[name] = ref.chunk_id
    folder = cluster.keeper_dir(0) / "chunks"
    wrong = folder / ids["/b"][-2:] / ids["/b"]
    a_bytes = (folder / ids["/a"][-2:] / ids["/a"]).read_bytes()
    wrong.write_bytes(a_bytes)

    def set_aside() -> bool:
        assert download(files, "/b") == data["/b"]  # (whichever replica it takes)
        return (wrong.exists() and wrong.read_bytes() != a_bytes) or any((folder.parent / "damaged").glob("*"))

    wait_for(set_aside, 30, "keeper 0's wrong file of /b set aside")
    [aside] = (folder.parent / "damaged").iterdir()
    assert aside.read_bytes() == a_bytes
    wait_for(lambda: wrong.exists() and replicas_at_goal(cluster), 30, "/b copied back to keeper 0")
    with open(wrong, "rb") as f:
        header = read_header(ids["/b"], f)
    assert (header.length, header.crc) == (MiB, crc32c(data["/b"]))


def test_chunks_on_this_machine_are_read_from_the_keepers_disk(cluster: LocalCluster, files: FileClient) -> None:
    data = os.urandom(10 * MiB)  # a whole chunk and part of another
    upload(files, "/local", data)
    keepers = [cp.KeeperRef(keeper_id=k.keeper_id, address=k.address) for k in cluster.status().keepers]
    wait_for(lambda: all(files.transfer.local.folder(k) is not None for k in keepers), 5, "keeper folders learnt")
    stopped = [proc for proc in cluster.keeper_procs if proc is not None]
    for proc in stopped:  # no keeper answers: only their disks can
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert download(files, "/local") == data
        # Asked over the network, the first read would wait for gRPC to give up on its keeper
        # (1 to 3 s), then on the next, and fail in the end.
        assert time.monotonic() - started < 1.0
    finally:
        for proc in stopped:
            os.kill(proc.pid, signal.SIGCONT)
    # Only the keeper's user (and root) may: another user cannot get at the files' bytes.
    assert stat.S_IMODE(cluster.keeper_dir(0).stat().st_mode) == 0o700
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in chunk_files(cluster, 0))
    # Rot in the file read there is found as a keeper would find it: read around and reported.
    victim = chunk_files(cluster, 0)[0]
    with open(victim, "r+b") as f:
        f.seek(4096 + 10)
        old = f.read(1)
        f.seek(4096 + 10)
        f.write(bytes([old[0] ^ 1]))

    def repaired() -> bool:
        try:
            with open(victim, "rb") as f:
                f.seek(4096 + 10)
                return f.read(1) == old  # copied back whole
        except FileNotFoundError:
            return True  # dropped, to be copied back

    for _ in range(30):  # (the master lists a chunk's replicas in random order: read until it is met)
        assert download(files, "/local") == data
        if repaired():
            break
    wait_for(repaired, 20, "repair")


def test_a_disk_here_that_hangs_holds_a_read_up_for_seconds_not_for_good(
    cluster: LocalCluster, files: FileClient
) -> None:
    data = os.urandom(3 * MiB)
    upload(files, "/held", data)
    inode = files.stat("/held").inode
    ref = files.master.call("GetChunks", mp.GetChunksRequest(inode=inode)).chunks[0]
    ids = [(cluster.keeper_dir(i) / "keeper-id").read_text().strip() for i in range(3)]
    wait_for(lambda: all(files.transfer.local.folder(r) is not None for r in ref.replicas), 5, "folders learnt")
    # Keeper 0's replica is read first, from its disk, where its file now hangs whoever opens
    # it (a FIFO with no writer), as a failing disk does; keeper 0 itself is dead, so asking it
    # over the network fails at once.
    ordered = mp.ChunkRef()
    ordered.CopyFrom(ref)
    del ordered.replicas[:]
    ordered.replicas.extend(sorted(ref.replicas, key=lambda r: r.keeper_id != ids[0]))
    cluster.kill_keeper(0)
    hung = cluster.keeper_dir(0) / "chunks" / ref.chunk_id[-2:] / ref.chunk_id
    hung.unlink()
    os.mkfifo(hung)
    try:
        started = time.monotonic()
        assert files.transfer.read(inode, ordered) == data
        assert time.monotonic() - started < 4.0  # the next replica asked after ~1 s (was: the disk's 5 s)
    finally:  # free the thread still opening the FIFO (ENXIO: none is)
        with contextlib.suppress(OSError):
            os.close(os.open(hung, os.O_WRONLY | os.O_NONBLOCK))


def test_a_keeper_that_hangs_on_a_read_holds_it_up_about_a_second(cluster: LocalCluster, files: FileClient) -> None:
    """A keeper that answers gRPC's pings but not a read (its disk hangs under that chunk's file;
    a FIFO with no writer stands in for it) holds the read up about a second: then the next
    replica is asked too, as HDFS's hedged reads do. It was held for the whole transfer timeout
    (10 s + 1 s per MiB; 60 s before this session)."""
    data = os.urandom(3 * MiB)
    upload(files, "/hung", data)
    inode = files.stat("/hung").inode
    ref = files.master.call("GetChunks", mp.GetChunksRequest(inode=inode)).chunks[0]
    ids = [(cluster.keeper_dir(i) / "keeper-id").read_text().strip() for i in range(3)]
    first = ids.index(ref.replicas[0].keeper_id)  # asked first, over the network (no short-circuit)
    hung = cluster.keeper_dir(first) / "chunks" / ref.chunk_id[-2:] / ref.chunk_id
    hung.unlink()
    os.mkfifo(hung)
    network = ChunkTransfer(files.master, short_circuit=False)
    try:
        started = time.monotonic()
        assert network.read(inode, ref) == data
        assert time.monotonic() - started < 4.0  # hedge_after(3 MiB): 1.05 s
    finally:  # free the keeper's thread still opening the FIFO
        with contextlib.suppress(OSError):
            os.close(os.open(hung, os.O_WRONLY | os.O_NONBLOCK))


@contextlib.contextmanager
def cluster_on_small_disks(make_cluster: MakeCluster, small_disk: SmallDisk, mib: int = 20) -> Iterator[LocalCluster]:
    """A master and 3 keepers, each keeper on a tmpfs of `mib` MiB; stopped before the disks go.
    No trash: a file removed gives its space back at once."""
    cluster = make_cluster(keepers=0, start=False, master_args=["--trash-hours", "0"])
    try:
        cluster.start_master()
        for i in range(3):
            small_disk(cluster.keeper_dir(i), mib)
            cluster.start_keeper()
        cluster.wait_ready(3)
        yield cluster
    finally:
        cluster.stop()


def test_a_replica_found_rotten_while_being_copied_is_dropped(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    files = FileClient(MasterClient(cluster.master_address))
    upload(files, "/f", os.urandom(MiB))  # one chunk, on every keeper
    rotten = [chunk_files(cluster, i)[0] for i in (0, 2)]
    for path in rotten:  # rot in the data (which starts at 4 KiB), found only by reading it
        with open(path, "r+b") as f:
            f.seek(4096 + 100)
            old = f.read(1)
            f.seek(4096 + 100)
            f.write(bytes([old[0] ^ 0xFF]))
    cluster.kill_keeper(1)
    for path in chunk_files(cluster, 1):
        path.unlink()
    cluster.start_keeper(1)
    # Keeper 1 wants the chunk back, and the master asks keeper 0 or 2 to copy it there. A source
    # meets its rot in the middle of the copy: it drops its replica, so that the master does not
    # pick it again, and again (it used to, 20 times a second, for good).
    wait_for(lambda: not any(path.exists() for path in rotten), 20, "the rotten replicas dropped")
    files.master.pool.close()


def test_full_cluster_gives_enospc(small_disk: SmallDisk, make_cluster: MakeCluster, tmp_path: Path) -> None:
    with cluster_on_small_disks(make_cluster, small_disk) as cluster:
        source = tmp_path / "too-big"
        source.write_bytes(os.urandom(64 * MiB))
        result = run_cli(
            "client", cluster.master_address, "--wait", "10", "upload", "/too-big", str(source), dump_after=8
        )
        assert result.returncode == 1
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "space" in lines[0], result.stderr
        assert b"Traceback" not in result.stderr
        assert cluster.status().files == 0  # the failed upload left no file behind
        # ... and its chunks, abandoned, are collected: the space comes back.
        wait_for(lambda: all(not chunk_files(cluster, i) for i in range(3)), 15, "abandoned chunks collected")
        wait_for(lambda: all(k.free_bytes > 16 * MiB for k in cluster.status().keepers), 5, "space reported free")
        fits = os.urandom(10 * MiB)
        ok = run_cli("client", cluster.master_address, "upload", "/fits", "-", stdin=fits)
        assert ok.returncode == 0, ok.stderr
        assert run_cli("client", cluster.master_address, "download", "/fits", "-").stdout == fits


def test_a_full_metadata_disk_is_enospc_and_deletions_make_room(
    small_disk: SmallDisk, make_cluster: MakeCluster
) -> None:
    """The master's disk runs low: a change that adds metadata is ENOSPC, saying why (it was EIO,
    with a traceback in the master's log for each); reads and deletions go on; once deletions
    have made room (the copy of the metadata taken soon after lets the pages they free be used
    again: the journal holds every change since the last copy), changes are taken again."""
    cluster = make_cluster(start=False, master_args=["--reserve", "4", "--metadata-copies-every", "600"])
    small_disk(cluster.data_dir / "master", 24)
    cluster.start()
    master = MasterClient(cluster.master_address, wait=5)
    try:
        folder = master.call("MakeDir", mp.MakeNodeRequest(parent=1, name=b"d", mode=0o755)).attr.inode
        value = os.urandom(60_000)
        names: list[bytes] = []
        with pytest.raises(FsError) as full:
            for i in range(1000):  # (each about twice its size: the row, and the journal's copy)
                master.call("SetXattr", mp.SetXattrRequest(inode=folder, name=b"user.v%d" % i, value=value))
                names.append(b"user.v%d" % i)
        assert full.value.errno == errno.ENOSPC and "nearly full" in full.value.message, full.value
        assert len(names) > 20
        shown = run_cli("client", cluster.master_address, "status").stdout.decode()
        assert "metadata disk: room for" in shown and "LOW, only deletions are taken" in shown, shown
        with pytest.raises(FsError) as refused:
            master.call("CreateFile", mp.MakeNodeRequest(parent=folder, name=b"f", mode=0o644))
        assert refused.value.errno == errno.ENOSPC
        assert master.call("GetXattr", mp.XattrRequest(inode=folder, name=names[0])).value == value
        for name in names:
            master.call("RemoveXattr", mp.XattrRequest(inode=folder, name=name))

        def takes_changes() -> bool:
            try:
                master.call("CreateFile", mp.MakeNodeRequest(parent=folder, name=b"f", mode=0o644))
            except FsError as e:
                assert e.errno == errno.ENOSPC, e
                return False
            return True

        wait_for(takes_changes, 30, "changes taken again once deletions made room")
        status = cluster.status()
        assert status.metadata_reserve_bytes == 4 * MiB and status.metadata_room_bytes > 4 * MiB, status
        log_path = cluster.data_dir / "logs" / "master.log"

        def copied_since_low() -> bool:  # (copies are every 600 s here: this one is for the room)
            return "metadata copy" in log_path.read_text().partition("only deletions taken")[2]

        wait_for(copied_since_low, 15, "a metadata copy soon after the disk ran low")
        log = log_path.read_text()
        assert "Traceback" not in log and "room again" in log
    finally:
        master.pool.close()


def test_a_new_keeper_gets_its_share_of_the_chunks(small_disk: SmallDisk, make_cluster: MakeCluster) -> None:
    cluster = make_cluster(keepers=0, start=False, master_args=["--goal", "2", "--chunk-size", "1"])
    try:
        cluster.start_master()
        for i in range(3):
            small_disk(cluster.keeper_dir(i), 64)
            cluster.start_keeper()
        cluster.wait_ready(3)
        files = FileClient(MasterClient(cluster.master_address), short_circuit=False)
        data = {f"/f{i}": os.urandom(3 * MiB) for i in range(10)}  # 2 copies: 60 MiB on 3 disks of 64 MiB
        for path, content in data.items():
            upload(files, path, content)
        wait_for(lambda: replicas_at_goal(cluster), 20, "2 copies of every chunk")
        small_disk(cluster.keeper_dir(3), 64)
        new = cluster.keeper_address(cluster.start_keeper())
        cluster.wait_ready(4)

        def balanced() -> bool:
            keepers = [k for k in cluster.status().keepers if k.alive]
            mean = sum(k.used_bytes for k in keepers) / sum(k.capacity_bytes for k in keepers)
            fills = {k.address: k.used_bytes / k.capacity_bytes for k in keepers}
            return fills[new] > 0.15 and all(abs(f - mean) < 0.07 for f in fills.values()) and replicas_at_goal(cluster)

        wait_for(balanced, 60, "the chunks spread over all four keepers")
        assert len(chunk_files(cluster, 3)) >= 10
        for path, content in data.items():
            assert download(files, path) == content, path
        files.master.pool.close()
    finally:
        cluster.stop()


def test_full_keepers_get_space_back_even_when_no_metadata_copy_fits(
    small_disk: SmallDisk, make_cluster: MakeCluster
) -> None:
    with cluster_on_small_disks(make_cluster, small_disk) as cluster:
        files = FileClient(MasterClient(cluster.master_address))
        upload(files, "/old", os.urandom(5 * MiB))
        for i in range(3):  # the disks fill up to the last byte: no metadata copy fits either
            with open(cluster.keeper_dir(i) / "ballast", "wb") as f, contextlib.suppress(OSError):
                while True:
                    f.write(bytes(64 * 1024))
        files.remove("/old")
        # Garbage waits for a copy that shows it unreferenced, but not for one that cannot be stored.
        wait_for(lambda: all(not chunk_files(cluster, i) for i in range(3)), 20, "the old file's chunks deleted")
        assert "no keeper took the metadata copy" in (cluster.data_dir / "logs" / "master.log").read_text()


def test_full_keeper_is_written_around(small_disk: SmallDisk, make_cluster: MakeCluster) -> None:
    cluster = make_cluster(keepers=3)
    small_disk(cluster.keeper_dir(3), 12)
    try:
        cluster.start_keeper()
        cluster.wait_ready(4)
        files = FileClient(MasterClient(cluster.master_address, wait=20))
        data = os.urandom(64 * MiB)
        upload(files, "/big", data)  # 8 chunks: at most one fits on the small keeper
        assert download(files, "/big") == data
        assert len(chunk_files(cluster, 3)) <= 1
        assert replicas_at_goal(cluster)
        files.master.pool.close()
    finally:
        cluster.stop()


def test_the_masters_retry_later_reaches_the_caller_at_once(cluster: LocalCluster) -> None:
    # The master's EIO travels as gRPC's UNAVAILABLE, which a dropped connection gets too. Taken
    # for one, it was asked again, unchanged, until the wait ran out: a full-cluster upload
    # then ended in "master did not answer within 10 s" instead of ENOSPC (a CI flake).
    master = MasterClient(cluster.master_address, wait=10)
    everyone = [k.keeper_id for k in cluster.status().keepers]
    started = time.monotonic()
    with pytest.raises(FsError) as caught:
        master.call("AllocateChunks", mp.AllocateChunksRequest(exclude_keepers=everyone, length=MiB))
    assert caught.value.errno == errno.EIO and "too few" in caught.value.message, caught.value.message
    assert time.monotonic() - started < 2
    master.pool.close()


def test_bad_input_gets_one_clear_line(cluster: LocalCluster, tmp_path: Path) -> None:
    master = cluster.master_address
    cases = [
        (("client", master, "download", "/no/such/file", str(tmp_path / "x")), "not found"),
        (("client", master, "upload", "/x", str(tmp_path / "missing-local-file")), "No such file"),
        (("client", master, "rm", "/"), "root"),
        (("client", "bad:address:99999", "ls"), "out of range"),
        (("client", f"127.0.0.1:{free_port()}", "--wait", "1", "ls"), "did not answer"),
        (("client", master, "frobnicate"), "invalid choice"),
        (("keeper",), "MASTER"),
        # A second master or keeper on a folder in use (it would delete what the first one wrote).
        (("master", "--listen", f"127.0.0.1:{free_port()}", "--data", str(cluster.data_dir / "master")), "in use"),
        (("keeper", master, "--listen", f"127.0.0.1:{free_port()}", "--data", str(cluster.keeper_dir(0))), "in use"),
    ]
    for args, expected in cases:
        started = time.monotonic()
        result = run_cli(*args, timeout=30)
        stderr = result.stderr.decode()
        assert result.returncode != 0, args
        assert len(stderr.strip().splitlines()) == 1, (args, stderr)
        assert expected in stderr and "Traceback" not in stderr, (args, stderr)
        assert time.monotonic() - started < 15, args
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.fusedfs-part").exists()


def test_hostile_requests_get_invalid_argument(cluster: LocalCluster) -> None:
    keeper = keeper_pb2_grpc.KeeperStub(grpc.insecure_channel(cluster.keeper_address(0)))
    for bad_id in ("../../etc/passwd", "", "0123456789ABCDEF", "x" * 10_000):
        with pytest.raises(grpc.RpcError) as read_error:
            list(keeper.ReadChunk(kp.ReadChunkRequest(chunk_id=bad_id), timeout=5))
        assert read_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        header = kp.WriteChunkHeader(chunk_id=bad_id, length=4, crc32c=0)
        with pytest.raises(grpc.RpcError) as write_error:
            keeper.WriteChunk(iter([kp.WriteChunkMessage(header=header, data=b"evil")]), timeout=5)
        assert write_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as no_header:
        keeper.WriteChunk(iter([kp.WriteChunkMessage(data=b"no header")]), timeout=5)
    assert no_header.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A chunk whose data does not match its checksum is refused and leaves nothing behind.
    header = kp.WriteChunkHeader(chunk_id="00000000000000ff", length=4, crc32c=12345)
    with pytest.raises(grpc.RpcError) as bad_crc:
        keeper.WriteChunk(iter([kp.WriteChunkMessage(header=header, data=b"data")]), timeout=5)
    assert bad_crc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not list((cluster.keeper_dir(0) / "tmp").iterdir())

    master = master_pb2_grpc.MasterStub(grpc.insecure_channel(cluster.master_address))
    for call, request in [
        (master.ResolvePath, mp.PathRequest(path="relative/path")),
        (master.Lookup, mp.EntryRequest(parent=1, name=b"a/b")),
        (master.MakeDir, mp.MakeNodeRequest(parent=1, name=b"x" * 256)),
        (master.CommitChunks, mp.CommitChunksRequest(inode=1, chunks=[mp.NewChunk(chunk_id="../x")])),
        (master.AllocateChunks, mp.AllocateChunksRequest(length=4096, count=257)),
        (
            master.PutFile,
            mp.PutFileRequest(
                parent=1, name=b"f", size=10, chunks=[mp.NewChunk(index=0, chunk_id="00000000deadbeef", length=10)]
            ),
        ),
    ]:
        with pytest.raises(grpc.RpcError) as error:
            call(request, timeout=5)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, error.value)
    assert cluster.status().files == 0
    # Chunk ids reserved many at once are distinct, each with its own goal's worth of keepers.
    reply = master.AllocateChunks(mp.AllocateChunksRequest(length=4096, count=256), timeout=5)
    assert len({c.chunk_id for c in reply.chunks}) == 256
    assert all(len({k.keeper_id for k in c.pipeline}) == 3 for c in reply.chunks)


def test_undecodable_requests_get_invalid_argument(cluster: LocalCluster) -> None:
    master = grpc.insecure_channel(cluster.master_address)
    for method in ("GetAttr", "ResolvePath", "PutFile", "Heartbeat"):
        call = master.unary_unary(f"/fusedfs.rpc.Master/{method}", None, None)
        with pytest.raises(grpc.RpcError) as error:
            call(b"\xff\xff\xff", timeout=5)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
    keeper = grpc.insecure_channel(cluster.keeper_address(0))
    header = kp.WriteChunkMessage(header=kp.WriteChunkHeader(chunk_id="0000000000000001", length=8, crc32c=0))
    write = keeper.stream_unary("/fusedfs.rpc.Keeper/WriteChunk", None, None)
    with pytest.raises(grpc.RpcError) as truncated:  # a valid header, then garbage
        write(iter([header.SerializeToString(), b"\x12\x10abc"]), timeout=5)
    assert truncated.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    read = keeper.unary_stream("/fusedfs.rpc.Keeper/ReadChunk", None, None)
    with pytest.raises(grpc.RpcError) as garbage:
        list(read(b"\x0a\xff\xff\xff\xff\x0f", timeout=5))
    assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not list((cluster.keeper_dir(0) / "tmp").iterdir())
    assert cluster.status().keepers[0].alive  # still serving


def test_scrub_finds_bit_rot_and_lost_files_and_the_master_repairs_them(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(keeper_args=["--scrub-interval", "1"])
    files = FileClient(MasterClient(cluster.master_address, wait=20))
    data = os.urandom(20 * MiB)
    upload(files, "/rotting", data)
    rotten, lost = chunk_files(cluster, 0)[0], chunk_files(cluster, 1)[-1]
    with open(rotten, "r+b") as f:  # a flipped bit in the data, as a failing disk does
        f.seek(-5000, os.SEEK_END)
        byte = f.read(1)
        f.seek(-5000, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x01]))
    lost.unlink()
    wait_for(lambda: sum(k.scrub_bad for k in cluster.status().keepers) >= 2, 20, "the scrub to find both")
    wait_for(lambda: replicas_at_goal(cluster), 30, "the bad replicas replaced")
    # Every replica of every chunk now reads back verified, straight from its keeper.
    master = files.master
    inode = master.call("ResolvePath", mp.PathRequest(path="/rotting")).inode
    refs = master.call("GetChunks", mp.GetChunksRequest(inode=inode)).chunks
    assert sum(len(ref.replicas) for ref in refs) == 3 * len(refs)
    for ref in refs:
        for replica in ref.replicas:
            stub = keeper_pb2_grpc.KeeperStub(master.pool.get(replica.address))
            pieces = stub.ReadChunk(kp.ReadChunkRequest(chunk_id=ref.chunk_id), timeout=10)
            assert sum(len(p.data) for p in pieces) == ref.stored_length
    assert sha256(download(files, "/rotting")) == sha256(data)
    files.master.pool.close()


def test_a_cluster_with_a_secret_takes_calls_only_with_it(
    make_cluster: MakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every part given the cluster's secret works as without one (a mount's writes go down a
    pipeline of keepers, the CLI downloads); a call without it, or with another, is refused
    by the master and the keepers alike, and the CLI says so in one line."""
    secret, wrong = tmp_path / "secret", tmp_path / "wrong"
    secret.write_text("a long random secret\n")
    wrong.write_text("another one\n")
    monkeypatch.setattr(grpcutil, "_secret", "a long random secret")  # (this process asks the cluster too)
    given = ["--secret-file", str(secret)]
    cluster = make_cluster(master_args=given, keeper_args=given)
    mnt = cluster.mount(tmp_path / "mnt", given)
    data = os.urandom(3 * MiB + 1)
    (mnt / "f").write_bytes(data)
    assert (mnt / "f").read_bytes() == data
    wait_for(lambda: replicas_at_goal(cluster), 30, "3 copies")
    out = tmp_path / "out"
    down = run_cli("client", *given, cluster.master_address, "download", "/f", str(out))
    assert down.returncode == 0 and out.read_bytes() == data, down.stderr
    by_environment = subprocess.run(
        [sys.executable, "-m", "fusedfs", "client", cluster.master_address, "ls", "/"],
        capture_output=True,
        env={**os.environ, "FUSEDFS_SECRET_FILE": str(secret)},
        timeout=60,
    )
    assert by_environment.returncode == 0 and b"f" in by_environment.stdout, by_environment.stderr
    for other in ([], ["--secret-file", str(wrong)]):
        refused = run_cli("client", *other, cluster.master_address, "ls", "/")
        assert refused.returncode == 1 and refused.stderr.count(b"\n") == 1, refused.stderr
        assert b"secret" in refused.stderr and b"Traceback" not in refused.stderr
    with grpc.insecure_channel(cluster.master_address) as bare, pytest.raises(grpc.RpcError) as info:
        master_pb2_grpc.MasterStub(bare).GetAttr(mp.InodeRequest(inode=1), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with grpc.insecure_channel(f"127.0.0.1:{cluster.keeper_ports[0]}") as bare, pytest.raises(grpc.RpcError) as info:
        keeper_pb2_grpc.KeeperStub(bare).ReadSmallRange(kp.ReadChunkRequest(chunk_id="0" * 16), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
