"""The mount, for real: a `fusedfs mount` process over a real cluster, driven by ordinary programs.

These tests need /dev/fuse and fusermount3; they fail (never skip) where those are missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import mmap
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fusedfs.chunkfile import base_path, chunk_path
from fusedfs.chunks import MiB
from fusedfs.client.files import FileClient
from fusedfs.client.master import MasterClient
from fusedfs.client.transfer import OPEN_MAX_AGE
from fusedfs.local import LocalCluster, free_port
from fusedfs.master.sessions import SESSION_TIMEOUT
from fusedfs.master.store import Inode, SqliteStore
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import master_pb2 as mp
from tests.integration.conftest import MakeCluster, SmallDisk, run_cli, stopped, wait_for

GiB = 1024 * MiB


@pytest.fixture
def mounted(make_cluster: MakeCluster, tmp_path: Path) -> Iterator[tuple[LocalCluster, Path]]:
    cluster = make_cluster()
    mnt = cluster.mount(tmp_path / "mnt")
    yield cluster, mnt
    cluster.stop()
    assert not os.path.ismount(mnt)


def sh(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def test_files_directories_and_links(mounted: tuple[LocalCluster, Path]) -> None:
    _, mnt = mounted
    (mnt / "dir").mkdir()
    f = mnt / "dir" / "file.txt"
    f.write_bytes(b"hello world\n")
    assert f.read_bytes() == b"hello world\n"
    with open(f, "ab") as out:
        out.write(b"appended\n")
    assert f.read_bytes() == b"hello world\nappended\n"
    os.truncate(f, 5)
    assert f.read_bytes() == b"hello"
    os.truncate(f, 8)
    assert f.read_bytes() == b"hello\0\0\0"
    os.link(f, mnt / "hard")
    assert f.stat().st_nlink == 2 and (mnt / "hard").stat().st_ino == f.stat().st_ino
    os.symlink("dir/file.txt", mnt / "soft")
    assert os.readlink(mnt / "soft") == "dir/file.txt" and (mnt / "soft").read_bytes() == b"hello\0\0\0"
    os.chmod(f, 0o600)
    os.utime(f, ns=(1_000_000_000, 2_000_000_000))
    st = f.stat()
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o600, 2_000_000_000)
    with pytest.raises(OSError) as not_empty:
        (mnt / "dir").rmdir()
    assert not_empty.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as too_long:
        (mnt / ("x" * 256)).write_bytes(b"")
    assert too_long.value.errno == errno.ENAMETOOLONG
    (mnt / "made").mkdir()  # (known whole here: missing names are answered without the master)
    for call in (os.stat, os.unlink, os.rmdir):
        with pytest.raises(OSError) as too_long:
            call(mnt / "made" / ("x" * 256))
        assert too_long.value.errno == errno.ENAMETOOLONG, call
    (mnt / ("y" * 255)).write_bytes(b"ok")
    with pytest.raises(FileExistsError):
        os.open(mnt / "hard", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    (mnt / "dir" / "file.txt").rename(mnt / "moved.txt")
    assert sorted(os.listdir(mnt / "dir")) == []
    (mnt / "dir").rmdir()
    os.unlink(mnt / "hard")
    assert (mnt / "moved.txt").stat().st_nlink == 1
    with open(mnt / "moved.txt", "wb") as out:  # O_TRUNC
        out.write(b"new")
    assert (mnt / "moved.txt").read_bytes() == b"new"


def test_times_set_before_close_are_kept(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    """`cp -a` (and `touch` of an open file) set a file's times while its data is not yet
    stored: the time set is the file's, not when its data was written (a `cp -a` copy had
    today's mtime, so `rsync -a` copied every file again)."""
    _, mnt = mounted
    with open(mnt / "open", "wb", buffering=0) as f:
        f.write(b"data")
        os.utime(f.fileno(), ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
        assert os.fstat(f.fileno()).st_mtime_ns == 1_500_000_000_987_654_321
    assert (mnt / "open").stat().st_mtime_ns == 1_500_000_000_987_654_321
    assert (mnt / "open").read_bytes() == b"data"
    source = tmp_path / "source"
    source.mkdir()
    for i in range(3):
        (source / f"f{i}").write_bytes(os.urandom(100_000 * i + 1))
        os.utime(source / f"f{i}", ns=(1_600_000_000_000_000_000, 1_400_000_000_000_000_007 + i))
    sh("cp", "-a", str(source), str(mnt / "copy"))
    for i in range(3):
        assert (mnt / "copy" / f"f{i}").stat().st_mtime_ns == 1_400_000_000_000_000_007 + i
    assert sh("rsync", "-ai", "--dry-run", f"{source}/", f"{mnt / 'copy'}/") == ""  # nothing to do


def test_times_change_as_linux_changes_them(mounted: tuple[LocalCluster, Path]) -> None:
    """open(O_TRUNC) of a file already empty changes its mtime and ctime, as Linux does (`: >
    stamp` refreshes a make stamp; the mount left them, so make thought the target up to date);
    a time beyond what 64-bit nanoseconds hold (past 2262, before 1677) is set to the nearest
    end, as ext4 clamps to its own range (`touch -d 2300-01-01` failed EIO)."""
    _, mnt = mounted
    stamp = mnt / "stamp"
    stamp.touch()
    os.utime(stamp, ns=(946_684_800 * 10**9, 946_684_800 * 10**9))
    before = stamp.stat()
    sh("sh", "-c", f": > {stamp}")
    after = stamp.stat()
    assert after.st_mtime > time.time() - 60 and after.st_ctime_ns > before.st_ctime_ns, (before, after)
    # So do truncate(2) and ftruncate(2) to the size it has already, as on ext4 and tmpfs.
    stamp.write_bytes(b"abc")
    for through_fd in (False, True):
        os.utime(stamp, ns=(946_684_800 * 10**9, 946_684_800 * 10**9))
        if through_fd:
            with stamp.open("r+b") as f:
                f.truncate(3)
        else:
            os.truncate(stamp, 3)
        assert stamp.stat().st_mtime > time.time() - 60 and stamp.stat().st_size == 3, through_fd
    for date, year in (("2300-01-01", "2262"), ("1600-01-01", "1677")):
        sh("touch", "-d", date, str(stamp))
        assert sh("stat", "-c", "%y", str(stamp)).startswith(year)


def test_sparse_and_large_files(mounted: tuple[LocalCluster, Path]) -> None:
    _, mnt = mounted
    sparse = mnt / "sparse"
    with open(sparse, "wb") as out:
        out.seek(20 * MiB + 3)
        out.write(b"end")
    assert sparse.stat().st_size == 20 * MiB + 6
    with open(sparse, "rb") as f:
        assert f.read(MiB) == bytes(MiB)
        f.seek(20 * MiB)
        assert f.read() == b"\0\0\0end"
    # Past 4 GiB: offsets and sizes are 64-bit all the way.
    huge = mnt / "huge"
    edge = os.urandom(MiB)
    with open(huge, "wb") as out:
        out.seek(4 * GiB - MiB // 2)
        out.write(edge)
        out.seek(5 * GiB)
        out.write(b"tail")
    assert huge.stat().st_size == 5 * GiB + 4
    with open(huge, "rb") as f:
        f.seek(4 * GiB - MiB // 2)
        assert f.read(MiB) == edge
        f.seek(5 * GiB - 2)
        assert f.read() == b"\0\0tail"


def test_du_cp_and_tar_count_holes_as_holes(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    """st_blocks counts the bytes a file's chunks hold, so `du` shows what a sparse file takes
    and `cp --sparse=auto` copies it out sparse. While a mount has changes the master has not
    seen, it counts the whole size: a file must never look emptier than it is (tar --sparse
    archives a file of 0 blocks as all holes)."""
    _, mnt = mounted
    sparse = mnt / "sparse"
    sh("truncate", "-s", "100M", str(sparse))
    assert sparse.stat().st_blocks == 0
    data = os.urandom(MiB)
    with open(sparse, "r+b") as f:
        f.seek(48 * MiB)  # where a chunk starts (8 MiB chunks)
        f.write(data)
        assert os.fstat(f.fileno()).st_blocks * 512 == 100 * MiB  # not saved yet: all of it
    # (the kernel may keep the attributes it had for up to --attr-timeout, 1 s)
    wait_for(lambda: sparse.stat().st_blocks * 512 == MiB, 5, "st_blocks of the saved chunk alone")
    assert sh("du", "-B1", str(sparse)).split()[0] == str(MiB)
    dense = mnt / "dense"
    dense.write_bytes(os.urandom(3 * MiB + 5))
    assert dense.stat().st_blocks == -(-(3 * MiB + 5) // 512)
    copied = tmp_path / "copied"
    sh("cp", "--sparse=auto", str(sparse), str(copied))
    assert copied.stat().st_blocks * 512 <= 2 * MiB and sha256_file(copied) == sha256_file(sparse)
    # Archived straight after writing (the attributes the kernel keeps are the mount's while it had
    # unsaved changes): every byte comes back.
    (mnt / "fresh").write_bytes(data)
    sh("tar", "--sparse", "-cf", str(tmp_path / "a.tar"), "-C", str(mnt), "sparse", "dense", "fresh")
    (tmp_path / "x").mkdir()
    sh("tar", "-xf", str(tmp_path / "a.tar"), "-C", str(tmp_path / "x"))
    for name in ("sparse", "dense", "fresh"):
        assert sha256_file(tmp_path / "x" / name) == sha256_file(mnt / name), name
    assert (tmp_path / "a.tar").stat().st_size < 6 * MiB  # the holes were not archived as zeros


def test_zeros_written_where_a_file_has_no_chunk_stay_a_hole(mounted: tuple[LocalCluster, Path]) -> None:
    """Chunks of zeros written where the file has none (posix_fallocate writes its range, `dd
    if=/dev/zero`, a copied sparse file) are not stored: they read as zeros all the same (the
    client's uploads did so already; through a mount 256 MiB of zeros went to each of 3 keepers).
    Zeros written over a chunk are stored: the old bytes must not come back."""
    cluster, mnt = mounted
    tail = os.urandom(MiB)
    with open(mnt / "zeros", "wb") as out:
        out.write(bytes(20 * MiB))
        out.write(tail)
    master = MasterClient(cluster.master_address)
    try:

        def slots(name: str) -> list[int]:
            inode = (mnt / name).stat().st_ino
            return [c.index for c in master.call("GetChunks", mp.GetChunksRequest(inode=inode)).chunks]

        assert slots("zeros") == [2]  # (8 MiB chunks: the two of zeros are holes)
        with open(mnt / "zeros", "rb") as f:
            assert f.read(20 * MiB) == bytes(20 * MiB) and f.read() == tail
        data = os.urandom(9 * MiB)
        (mnt / "overwritten").write_bytes(data)
        with open(mnt / "overwritten", "r+b") as rewrite:
            rewrite.write(bytes(8 * MiB))
        assert slots("overwritten") == [0, 1]
        assert (mnt / "overwritten").read_bytes() == bytes(8 * MiB) + data[8 * MiB :]
    finally:
        master.pool.close()


def test_one_gib_file_reads_back_cold_with_sha256sum(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    cluster, mnt = mounted
    digest = hashlib.sha256()
    with open(mnt / "big", "wb") as out:
        block = os.urandom(8 * MiB)
        for i in range(128):  # 1 GiB, never all of it in memory
            piece = block[i:] + block[:i]
            digest.update(piece)
            out.write(piece)
    cold = cluster.mount(tmp_path / "cold")  # its own caches are empty; so is its page cache
    assert sh("sha256sum", str(cold / "big")).split()[0] == digest.hexdigest()


def test_a_small_overwrite_sends_its_bytes_alone_and_rewrites_one_chunk(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    metrics = ["--metrics", "127.0.0.1:0"]
    cluster = make_cluster(keepers=4, keeper_args=metrics)
    mnt = cluster.mount(tmp_path / "mnt")
    path = mnt / "three-chunks"
    data = bytearray(os.urandom(24 * MiB))
    path.write_bytes(data)
    master = MasterClient(cluster.master_address)
    inode = path.stat().st_ino

    def chunks() -> list[mp.ChunkRef]:
        return list(master.call("GetChunks", mp.GetChunksRequest(inode=inode)).chunks)

    def derived() -> float:  # chunks the keepers made from a copy they held, with a few bytes sent
        logs = cluster.data_dir / "logs"
        return sum(scrape(logs / f"keeper{i}.log").get(DERIVED, 0.0) for i in range(4) if i in alive)

    alive = {0, 1, 2, 3}
    before = chunks()
    with open(path, "r+b") as f:
        f.seek(9 * MiB)
        f.write(b"x" * 4096)
    data[9 * MiB : 9 * MiB + 4096] = b"x" * 4096
    after = chunks()
    assert [b.chunk_id == a.chunk_id for b, a in zip(before, after, strict=True)] == [True, False, True]
    assert derived() == 3  # on each keeper of the chunk it replaced, not sent whole down a pipeline
    kept_as_changes = 'fusedfs_keeper_derived_chunks_total{kept="changes"}'
    logs = cluster.data_dir / "logs"
    assert sum(scrape(logs / f"keeper{i}.log").get(kept_as_changes, 0.0) for i in range(4)) == 3
    assert sorted(r.keeper_id for r in after[1].replicas) == sorted(r.keeper_id for r in before[1].replicas)
    # Each of them keeps just the block changed, beside a further name of the old chunk's file.
    for index in (i for i in range(4) if cluster.keeper_address(i) in {r.address for r in after[1].replicas}):
        new_file = chunk_path(cluster.keeper_dir(index), after[1].chunk_id)
        assert new_file.stat().st_size <= 8192 + 64 * 1024
        old_file = chunk_path(cluster.keeper_dir(index), before[1].chunk_id)
        assert os.stat(base_path(new_file)).st_ino == os.stat(old_file).st_ino
    other = cluster.mount(tmp_path / "other")  # read cold, elsewhere
    assert sha256_file(other / "three-chunks") == hashlib.sha256(data).hexdigest()

    # A keeper of that chunk dies (the master has not noticed yet): the chunk goes whole instead.
    holder = next(i for i in range(4) if cluster.keeper_address(i) in {r.address for r in after[1].replicas})
    cluster.kill_keeper(holder)
    alive.discard(holder)
    with open(path, "r+b") as f:
        f.seek(10 * MiB + 5)
        f.write(b"y" * 100)
    data[10 * MiB + 5 : 10 * MiB + 105] = b"y" * 100
    assert chunks()[1].chunk_id != after[1].chunk_id
    assert "goes whole" in (cluster.data_dir / "logs" / "mount-mnt.log").read_text()
    cluster.unmount(other)
    cluster.mount(other)
    assert sha256_file(other / "three-chunks") == hashlib.sha256(data).hexdigest()
    master.pool.close()


DERIVED = 'fusedfs_rpc_seconds_count{code="OK",method="DeriveChunk"}'


def test_a_database_s_commits_each_start_from_the_chunk_the_last_one_made(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """Small writes into one chunk of a file kept open, each fsynced (a database's commits, a
    log's lines): each goes as its bytes, derived from the chunk the one before made, which the
    mount kept; it neither asks the master for the chunk list again nor fetches the chunk, and
    it is derived on the keepers the mount stored the one before on, under ids reserved ahead,
    without asking the master for one each time."""
    cluster = make_cluster(master_args=["--metrics", "127.0.0.1:0"])
    mnt = cluster.mount(tmp_path / "mnt", ["--metrics", "127.0.0.1:0"])
    model = bytearray(os.urandom(44 * MiB))  # 6 chunks
    path = mnt / "db"
    path.write_bytes(model)
    logs = cluster.data_dir / "logs"

    def get_chunks() -> float:
        return scrape(logs / "master.log").get('fusedfs_rpc_seconds_count{code="OK",method="GetChunks"}', 0.0)

    def allocations() -> float:
        return scrape(logs / "master.log").get('fusedfs_rpc_seconds_count{code="OK",method="AllocateChunks"}', 0.0)

    allocated = allocations()

    rng = random.Random(5)
    with open(path, "r+b", buffering=0) as f:
        asked = get_chunks()  # (the open's)
        for _ in range(20):
            offset, block = rng.randrange(100, 8 * MiB - 9000), os.urandom(rng.choice([100, 4096, 9000]))
            f.seek(offset)
            f.write(block)
            os.fsync(f.fileno())
            model[offset : offset + len(block)] = block
            f.seek(offset - 50)
            assert f.read(len(block) + 100) == model[offset - 50 : offset + len(block) + 50]
        assert get_chunks() - asked <= 1  # (20 more without the kept chunk)
        assert len(list((cluster.data_dir / "cache").glob("*/*.saved"))) == 1  # the chunk, kept
        for index in range(1, 6):  # one write into each other chunk: the file keeps the last 4
            f.seek(index * 8 * MiB + 100)
            f.write(b"z" * 100)
            os.fsync(f.fileno())
            model[index * 8 * MiB + 100 : index * 8 * MiB + 200] = b"z" * 100
        assert len(list((cluster.data_dir / "cache").glob("*/*.saved"))) == 4
        asked = get_chunks()
        for index in (0, 1):  # their kept chunks gone: our commits told the mount what is there now
            f.seek(index * 8 * MiB + 300)
            f.write(b"y" * 100)
            os.fsync(f.fileno())
            model[index * 8 * MiB + 300 : index * 8 * MiB + 400] = b"y" * 100
        assert get_chunks() == asked  # (one each before: a chunk list asked after our own commit)
    uploads = scrape(logs / "mount-mnt.log")
    # One each: a write the kernel splits in two (one not page-aligned) made two while the first
    # half's upload started at once.
    assert uploads['fusedfs_mount_uploads_total{how="derived"}'] == 27
    # Batches of ids (1, 2, 4, ...), and one more whenever a second has passed since the last
    # told the mount which keepers take new chunks. (27 without: one for each.)
    assert allocations() - allocated <= 14
    # Gone with the file's release (which the kernel sends after close() has returned).
    wait_for(lambda: not list((cluster.data_dir / "cache").glob("*/*.saved")), 10, "saved slots to go")
    other = cluster.mount(tmp_path / "other")  # read cold, elsewhere
    assert sha256_file(other / "db") == hashlib.sha256(bytes(model)).hexdigest()


def test_a_database_s_commits_go_to_no_keeper_being_drained(make_cluster: MakeCluster, tmp_path: Path) -> None:
    """A chunk derived on the keepers the mount knows hold its base, without asking the master,
    is not made on a keeper being drained (it would have to be copied away again): a second
    after the drain began, the mount knows, and asks the master, which has it written whole
    to others; the commits after that are derived there."""
    cluster = make_cluster(keepers=4)
    mnt = cluster.mount(tmp_path / "mnt")
    path = mnt / "db"
    path.write_bytes(os.urandom(4 * MiB))
    master = MasterClient(cluster.master_address)
    inode = path.stat().st_ino

    def holders() -> set[str]:
        (chunk,) = master.call("GetChunks", mp.GetChunksRequest(inode=inode)).chunks
        return {r.keeper_id for r in chunk.replicas}

    with open(path, "r+b", buffering=0) as f:

        def commit(count: int) -> None:
            for _ in range(count):
                f.seek(random.randrange(4 * MiB - 100))
                f.write(os.urandom(100))
                os.fsync(f.fileno())

        commit(3)
        drained = sorted(holders())[0]
        master.call("Drain", mp.DrainRequest(keeper=drained))
        time.sleep(OPEN_MAX_AGE + 0.2)
        for _ in range(3):
            commit(3)
            assert drained not in holders()
    master.call("Drain", mp.DrainRequest(keeper=drained, undo=True))
    master.pool.close()


def test_writes_into_a_big_file_fetch_none_of_its_chunks_unless_read(make_cluster: MakeCluster, tmp_path: Path) -> None:
    """A partial write into a chunk of a file (a database's page, `rsync --inplace`, `dd
    conv=notrunc`) and an overwrite fetch nothing of the chunks they change; reading the file
    where it was not written fetches them then, and the content is right everywhere."""
    cluster = make_cluster(keeper_args=["--metrics", "127.0.0.1:0"])
    mnt = cluster.mount(tmp_path / "mnt", ["--no-short-circuit"])  # (every read asks a keeper)
    model = bytearray(os.urandom(30 * MiB))  # chunks of 8 MiB: the last one 6 MiB long
    path = mnt / "big"
    path.write_bytes(model)
    cluster.unmount(mnt)
    cluster.mount(mnt, ["--no-short-circuit"])  # (nothing of the file in its cache)
    logs = cluster.data_dir / "logs"

    def reads() -> float:
        samples = [scrape(logs / f"keeper{i}.log") for i in range(3)]
        return sum(
            s.get(f'fusedfs_rpc_seconds_count{{code="OK",method="{method}"}}', 0.0)
            for s in samples
            for method in ("ReadChunk", "ReadSmallRange")
        )

    before = reads()
    with open(path, "r+b", buffering=0) as f:
        for offset, data in [(8 * MiB + 5000, b"page" * 1024), (8 * MiB + 20, b"x"), (16 * MiB - 3, b"across" * 99)]:
            f.seek(offset)
            f.write(data)
            model[offset : offset + len(data)] = data
        os.fsync(f.fileno())
        f.seek(0)
        for _ in range(8):  # an overwrite of the first chunk, 1 MiB at a time
            block = os.urandom(MiB)
            model[f.tell() : f.tell() + MiB] = block
            f.write(block)
        f.truncate(28 * MiB)  # into the last chunk, written in; then grown past it
        del model[28 * MiB :]
        f.seek(29 * MiB)
        f.write(b"end")
        model.extend(bytes(MiB) + b"end")
        os.fsync(f.fileno())
        assert reads() == before  # nothing fetched
        f.seek(8 * MiB + 4990)  # around what was written: the blocks there are fetched
        assert f.read(5000) == model[8 * MiB + 4990 : 8 * MiB + 9990]
        assert reads() > before
        f.seek(0)
        assert f.read() == model
    other = cluster.mount(tmp_path / "other")  # read cold, elsewhere
    assert sha256_file(other / "big") == hashlib.sha256(bytes(model)).hexdigest()
    assert sha256_file(path) == hashlib.sha256(bytes(model)).hexdigest()


def test_a_chunk_another_mount_replaced_under_our_unfetched_write_fills_it_instead(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """Two machines write into one chunk of a file at once (no locking: a race, as on NFS). Ours
    holds only its bytes; when the chunk it began as is gone from the cluster (the other's
    replaced it and it was collected), the other's chunk fills the rest: our read shows both
    writes, and so does the file after our close."""
    cluster = make_cluster(master_args=["--gc-grace", "0", "--trash-hours", "0"])
    ours, theirs = cluster.mount(tmp_path / "ours"), cluster.mount(tmp_path / "theirs")
    (ours / "f").write_bytes(os.urandom(24 * MiB))
    master = MasterClient(cluster.master_address)
    inode = (ours / "f").stat().st_ino
    before = master.call("GetChunks", mp.GetChunksRequest(inode=inode)).chunks[1].chunk_id
    replacement = os.urandom(8 * MiB)
    with open(ours / "f", "r+b", buffering=0) as f:
        f.seek(8 * MiB + 100)
        f.write(b"ours")
        with open(theirs / "f", "r+b") as g:
            g.seek(8 * MiB)
            g.write(replacement)
        chunk_files = [cluster.keeper_dir(i) / "chunks" / before[-2:] / before for i in range(3)]
        wait_for(lambda: not any(path.exists() for path in chunk_files), 30, "the replaced chunk to be collected")
        f.seek(8 * MiB)
        assert f.read(200) == replacement[:100] + b"ours" + replacement[104:200]
    expected = replacement[:100] + b"ours" + replacement[104:]
    other = cluster.mount(tmp_path / "other")
    with open(other / "f", "rb") as f:
        f.seek(8 * MiB)
        assert f.read(8 * MiB) == expected
    master.pool.close()


def test_one_open_file_written_read_truncated_and_fsynced_at_random_reads_like_a_local_one(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """The same random writes, reads, truncates and fsyncs through one descriptor of a file in the
    mount and of a local one: every read equal. (1 MiB chunks: the steps cross them; the file
    is big enough for slots that begin unfetched, and small ones that begin as a copy.)"""
    cluster = make_cluster(master_args=["--chunk-size", "1"])
    mnt = cluster.mount(tmp_path / "mnt")
    start = os.urandom(5 * MiB + 300)
    (tmp_path / "local").write_bytes(start)
    (mnt / "file").write_bytes(start)
    rng = random.Random(11)
    size = len(start)
    with open(mnt / "file", "r+b", buffering=0) as ours, open(tmp_path / "local", "r+b", buffering=0) as local:
        for step in range(400):
            action = rng.choices(["write", "read", "truncate", "fsync"], [10, 8, 1, 2])[0]
            offset = rng.randrange(0, size + MiB)
            if action == "write":
                data = os.urandom(rng.choice([1, 100, 4096, 70_000, 600_000]))
                for f in (ours, local):
                    os.pwrite(f.fileno(), data, offset)
                size = max(size, offset + len(data))
            elif action == "read":
                length = rng.choice([1, 4096, 300_000, 2 * MiB])
                assert os.pread(ours.fileno(), length, offset) == os.pread(local.fileno(), length, offset), step
            elif action == "truncate":
                for f in (ours, local):
                    os.ftruncate(f.fileno(), offset)
                size = offset
            else:
                os.fsync(ours.fileno())
    expected = hashlib.sha256((tmp_path / "local").read_bytes()).hexdigest()
    assert sha256_file(mnt / "file") == expected
    other = cluster.mount(tmp_path / "other")
    assert sha256_file(other / "file") == expected


def test_small_writes_and_fsyncs_while_a_keeper_dies_lose_nothing(make_cluster: MakeCluster, tmp_path: Path) -> None:
    # A database's pattern (small writes, each made durable) while a keeper holding its chunks
    # is killed: derives in flight fail, later ones meet the dead keeper until the master notices
    # it, and every write goes whole meanwhile, or is derived again once the copies are back.
    cluster = make_cluster(keepers=4)
    mnt = cluster.mount(tmp_path / "mnt", ["--metrics", "127.0.0.1:0"])
    model = bytearray(os.urandom(16 * MiB))
    path = mnt / "db"
    path.write_bytes(model)
    master = MasterClient(cluster.master_address)
    first = master.call("GetChunks", mp.GetChunksRequest(inode=path.stat().st_ino)).chunks[0]
    holder = next(i for i in range(4) if cluster.keeper_address(i) in {r.address for r in first.replicas})
    master.pool.close()
    rng = random.Random(3)
    fd = os.open(path, os.O_RDWR)
    try:
        for i in range(60):
            if i == 15:
                cluster.kill_keeper(holder)  # (the chunks keep their holders while derived)
            offset, block = rng.randrange(0, len(model) - 4096), os.urandom(rng.choice([100, 4096, 9000]))
            os.pwrite(fd, block, offset)
            os.fsync(fd)  # each one durable: an error here fails the test
            model[offset : offset + len(block)] = block
    finally:
        os.close(fd)
    uploads = scrape(cluster.data_dir / "logs" / "mount-mnt.log")
    assert uploads['fusedfs_mount_uploads_total{how="derived"}'] > 0
    assert "goes whole" in (cluster.data_dir / "logs" / "mount-mnt.log").read_text()
    other = cluster.mount(tmp_path / "other")  # read cold, elsewhere
    assert sha256_file(other / "db") == hashlib.sha256(model).hexdigest()


def test_chunks_kept_as_their_changes_outlive_their_old_chunks_and_a_kill_of_every_keeper(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """A database's small writes, each fsynced, leave each keeper the changed blocks of each
    chunk beside a further name of an older chunk's file; the older chunks are collected as
    garbage (1 s grace here), every keeper is killed and started again, and the file still
    reads as written: the bytes it shares with the collected chunks stayed, and a restart
    takes the derived files for whole ones."""
    cluster = make_cluster(keepers=3)
    mnt = cluster.mount(tmp_path / "mnt")
    model = bytearray(os.urandom(16 * MiB))
    path = mnt / "db"
    path.write_bytes(model)
    rng = random.Random(5)
    fd = os.open(path, os.O_RDWR)
    try:
        for _ in range(8):  # (at most 16 blocks changed in a chunk of 128: all kept as changes)
            offset, block = rng.randrange(0, len(model) - 4096), os.urandom(rng.choice([100, 4096]))
            os.pwrite(fd, block, offset)
            os.fsync(fd)
            model[offset : offset + len(block)] = block
    finally:
        os.close(fd)
    master = MasterClient(cluster.master_address)
    chunk_ids = [c.chunk_id for c in master.call("GetChunks", mp.GetChunksRequest(inode=path.stat().st_ino)).chunks]
    master.pool.close()
    files = [chunk_path(cluster.keeper_dir(i), c) for i in range(3) for c in chunk_ids]

    def only_the_files_chunks_left() -> bool:
        return all(
            sorted(p.name for p in (cluster.keeper_dir(i) / "chunks").rglob("*") if p.is_file()) == held
            for i in range(3)
            for held in [
                sorted(
                    c + suffix
                    for c in chunk_ids
                    for suffix in ("", ".base")
                    if suffix == "" or base_path(chunk_path(cluster.keeper_dir(i), c)).exists()
                )
            ]
        )

    wait_for(only_the_files_chunks_left, 30, "the old chunks collected")
    assert [f.stat().st_size < 4 * MiB for f in files] == [True] * 6  # (changes kept, not whole copies)
    for i in range(3):
        cluster.kill_keeper(i)
    for i in range(3):
        cluster.start_keeper(i)
    cluster.wait_ready(3)
    other = cluster.mount(tmp_path / "other", ["--no-short-circuit"])  # read cold, from the keepers
    assert sha256_file(other / "db") == hashlib.sha256(model).hexdigest()
    assert all(f.exists() for f in files)


def test_threads_writing_and_fsyncing_one_file_at_once_lose_nothing(
    mounted: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    """Four threads write small blocks into the same chunks of one open file, each its own
    blocks, fsyncing now and then: slots are made, uploaded, kept and taken up again under
    each other's feet (a slot made while another write waited for the chunk, one saved while
    a write waited for room). The file ends as the writes made it, on this mount and another."""
    cluster, mnt = mounted
    size = 20 * MiB  # 3 chunks, the last partial
    model = bytearray(os.urandom(size))
    path = mnt / "shared"
    path.write_bytes(model)
    fd = os.open(path, os.O_RDWR)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        rng = random.Random(k)
        try:
            for i in range(60):
                block = rng.randrange(size // 4096 // 4 - 1) * 4 + k  # the blocks of thread k
                data = os.urandom(rng.choice([100, 4096]))
                os.pwrite(fd, data, block * 4096 + 7)
                model[block * 4096 + 7 : block * 4096 + 7 + len(data)] = data
                if i % 5 == k % 5:
                    os.fsync(fd)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.fsync(fd)
    assert os.pread(fd, size, 0) == model
    os.close(fd)
    assert not errors
    other = cluster.mount(tmp_path / "other")  # read cold, elsewhere
    assert sha256_file(other / "shared") == hashlib.sha256(bytes(model)).hexdigest()


def test_chunk_ids_a_mount_reserved_ahead_and_left_unused_are_given_back(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """A writer of many small files has chunk ids reserved in batches; those left when it stops
    go back to the master once too old to use, so `status` does not go on counting them as
    uploads in progress (they were held until the mount ended)."""
    cluster = make_cluster(master_args=["--metrics", "127.0.0.1:0"])
    mnt = cluster.mount(tmp_path / "mnt")
    for i in range(40):
        (mnt / f"f{i}").write_bytes(b"x" * 100)

    def reserved() -> float:
        return scrape(cluster.data_dir / "logs" / "master.log")['fusedfs_chunks{health="pending"}']

    assert reserved() > 0  # (the rest of the last batch)
    wait_for(lambda: reserved() == 0, 15, "the unused reservations to be given back")


def test_files_written_in_a_folder_with_a_goal_of_one_are_written_once(mounted: tuple[LocalCluster, Path]) -> None:
    cluster, mnt = mounted
    (mnt / "scratch").mkdir()
    assert run_cli("client", cluster.master_address, "goal", "/scratch", "1").returncode == 0
    (mnt / "scratch" / "build").mkdir()  # made through the mount: takes the folder's goal
    master = MasterClient(cluster.master_address)
    files = {"big": os.urandom(10 * MiB), "small": os.urandom(4096)}  # (a small chunk: reserved apart)
    for name, data in files.items():
        path = mnt / "scratch" / "build" / name
        path.write_bytes(data)
        held = [{p.name for p in (cluster.keeper_dir(i) / "chunks").glob("*/*")} for i in range(3)]
        refs = master.call("GetChunks", mp.GetChunksRequest(inode=path.stat().st_ino)).chunks
        assert refs and all(sum(r.chunk_id in h for h in held) == 1 for r in refs), name  # once, not trimmed later
        assert path.read_bytes() == data
    master.pool.close()


def test_files_made_in_a_folder_with_a_chunk_size_of_its_own_get_it(
    mounted: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    """`chunksize /db 1`: files made in /db, through a mount or uploaded, and in folders made
    there, have 1 MiB chunks; files made before keep theirs; the setting survives a restart."""
    cluster, mnt = mounted
    (mnt / "db").mkdir()
    data = os.urandom(2 * MiB + 5)
    (mnt / "db" / "before").write_bytes(data)
    cli = run_cli("client", cluster.master_address, "chunksize", "/db", "1")
    assert cli.returncode == 0 and b"1.0 MiB chunks for files made from now on in 1 folder" in cli.stdout
    (mnt / "db" / "sub").mkdir()
    (mnt / "db" / "sub" / "made").write_bytes(data)
    local = tmp_path / "local"
    local.write_bytes(data)
    assert run_cli("client", cluster.master_address, "upload", "/db/uploaded", str(local)).returncode == 0
    master = MasterClient(cluster.master_address)

    def chunks(path: str) -> list[int]:
        inode = master.call("ResolvePath", mp.PathRequest(path=path)).inode
        return [c.length for c in master.call("GetChunks", mp.GetChunksRequest(inode=inode)).chunks]

    assert chunks("/db/sub/made") == chunks("/db/uploaded") == [MiB, MiB, 5]
    assert chunks("/db/before") == [2 * MiB + 5]  # (the cluster's: 8 MiB)
    cluster.kill_master()  # (SIGKILL: what the master acknowledged is on its disk)
    cluster.start_master()
    cluster.wait_ready(3)
    shown = run_cli("client", cluster.master_address, "chunksize", "/db/sub")
    assert b"/db/sub: 1.0 MiB chunks for files made in it (its own; the cluster's is 8.0 MiB)" in shown.stdout
    assert (mnt / "db" / "sub" / "made").read_bytes() == data
    refused = run_cli("client", cluster.master_address, "chunksize", "/db/before", "2")
    assert refused.returncode != 0 and b"fixed when it is made" in refused.stderr
    assert b"Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    master.pool.close()


def test_a_snapshot_is_a_copy_at_once_that_shares_the_chunks_until_either_changes(
    mounted: tuple[LocalCluster, Path],
) -> None:
    """`snapshot /proj /snap`: the copy has the same tree (modes, times, xattrs, symlinks, a hard
    link kept as one) and bytes, each of its chunks a hard link of the source's on the same
    keepers (no space taken); changing or deleting either afterwards leaves the other as it was,
    also after the master is SIGKILLed and restarted."""
    cluster, mnt = mounted
    proj = mnt / "proj"
    proj.mkdir()
    assert run_cli("client", cluster.master_address, "chunksize", "/proj", "1").returncode == 0
    big, small = os.urandom(2 * MiB + 100), b"small file\n"
    (proj / "big").write_bytes(big)
    (proj / "sub").mkdir()
    (proj / "sub" / "small").write_bytes(small)
    (proj / "sub" / "empty").touch()
    os.link(proj / "sub" / "small", proj / "linked")
    os.symlink("sub/small", proj / "symlink")
    os.chmod(proj / "big", 0o600)
    os.setxattr(proj / "big", "user.origin", b"made before the snapshot")
    os.utime(proj / "sub" / "small", ns=(1_000_000_000, 2_000_000_000))
    made = run_cli("client", cluster.master_address, "snapshot", "/proj", "/snap")
    assert made.returncode == 0, made.stderr
    # (files: big, small with its second name, empty, symlink; chunks: 3 of big, 1 of small)
    assert b"/snap: a snapshot of /proj (4 files, 2 folders, 4 chunks)" in made.stdout
    snap = mnt / "snap"
    sh("diff", "-r", "--no-dereference", str(proj), str(snap))
    for name in ("big", "sub", "sub/small", "sub/empty", "symlink"):
        was, now = os.lstat(proj / name), os.lstat(snap / name)
        assert (now.st_mode, now.st_size, now.st_mtime_ns, now.st_nlink) == (
            was.st_mode,
            was.st_size,
            was.st_mtime_ns,
            was.st_nlink,
        ), name
    assert os.readlink(snap / "symlink") == "sub/small"
    assert os.getxattr(snap / "big", "user.origin") == b"made before the snapshot"
    assert os.stat(snap / "linked").st_ino == os.stat(snap / "sub" / "small").st_ino != os.stat(proj / "linked").st_ino
    assert os.stat(snap / "linked").st_nlink == 2

    def names_on_keepers() -> list[int]:
        """The link count of every chunk file on the keepers."""
        counts = []
        for path in (p for i in range(3) for p in (cluster.keeper_dir(i) / "chunks").rglob("*")):
            with contextlib.suppress(FileNotFoundError):  # (garbage being deleted)
                if stat.S_ISREG((found := path.stat()).st_mode):
                    counts.append(found.st_nlink)
        return sorted(counts)

    # On every keeper, each chunk of the snapshot is a second name of the source's file.
    assert names_on_keepers() == [2] * 2 * 4 * 3
    info = json.loads(run_cli("client", cluster.master_address, "info", "/snap/big", "--json").stdout)
    assert [len(c["keepers"]) for c in info["chunks"]] == [3, 3, 3], info
    # Changing either leaves the other as it was.
    with open(proj / "big", "r+b") as f:
        f.write(b"changed after")
    (snap / "sub" / "small").write_bytes(b"snapshot changed")
    assert (snap / "big").read_bytes() == big
    assert (proj / "sub" / "small").read_bytes() == small
    sh("rm", "-r", str(proj))
    assert run_cli("client", cluster.master_address, "trash", "purge", "/proj").returncode == 0
    # The source's chunks are deleted from the keepers: the snapshot's names alone are left.
    # (big: 3 chunks; small: the one written into the snapshot)
    wait_for(lambda: names_on_keepers() == [1] * 3 * 4, 30, "the source's chunk files deleted")
    cluster.kill_master()
    cluster.start_master()
    cluster.wait_ready(3)
    assert sha256_file(snap / "big") == hashlib.sha256(big).hexdigest()
    other = run_cli("client", cluster.master_address, "download", "/snap/big", "-")
    assert other.returncode == 0 and other.stdout == big
    assert (snap / "linked").read_bytes() == b"snapshot changed"
    # Mistakes are one readable line each, and change nothing.
    for args, reason in (
        (("/snap", "/snap/inside"), b"into itself"),
        (("/snap/big", "/snap/sub"), b"already exists"),
        (("/nothing", "/copy"), b"not found"),
    ):
        refused = run_cli("client", cluster.master_address, "snapshot", *args)
        assert refused.returncode != 0 and reason in refused.stderr, refused.stderr
        assert b"Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(mnt)) == ["snap"] and sorted(os.listdir(snap)) == sorted(
        ["big", "sub", "linked", "symlink"]
    )


def test_a_folder_s_quota_refuses_what_would_pass_it_and_counts_what_it_holds(
    mounted: tuple[LocalCluster, Path],
) -> None:
    """`quota /team --size 3M --entries 6`: through the mount, files fit until their sizes would
    pass 3 MiB, then close() (or a write) is EDQUOT and what was there is intact; a name past 6
    entries is EDQUOT at once, and so is a move into the folder; deleting makes room; the counts
    survive a master restart; mistakes are one readable line."""
    cluster, mnt = mounted
    team = mnt / "team"
    team.mkdir()
    (mnt / "outside").write_bytes(os.urandom(2 * MiB))
    quota = run_cli("client", cluster.master_address, "quota", "/team", "--size", "3M", "--entries", "6")
    assert quota.returncode == 0 and b"/team: 0 of 6 entries, 0 B of 3.0 MiB" in quota.stdout, quota
    first, second = os.urandom(MiB), os.urandom(2 * MiB)
    (team / "first").write_bytes(first)
    (team / "second").write_bytes(second)
    with pytest.raises(OSError) as refused:
        (team / "third").write_bytes(b"x" * (MiB // 2))
    assert refused.value.errno == errno.EDQUOT
    big = subprocess.run(
        ["dd", "if=/dev/zero", f"of={team / 'big'}", "bs=1M", "count=20"], capture_output=True, check=False
    )
    assert big.returncode != 0 and b"quota exceeded" in big.stderr, big.stderr
    assert (team / "first").read_bytes() == first and (team / "second").read_bytes() == second
    with pytest.raises(OSError) as moved:
        os.rename(mnt / "outside", team / "outside")
    assert moved.value.errno == errno.EDQUOT
    for name in ("third", "big"):
        (team / name).unlink()
    for i in range(4):  # first, second and these: 6 entries
        (team / f"d{i}").mkdir()
    with pytest.raises(OSError) as full:
        (team / "d4").mkdir()
    assert full.value.errno == errno.EDQUOT
    (team / "second").unlink()
    (team / "d0" / "small").write_bytes(b"fits now")
    cluster.kill_master()
    cluster.start_master()
    cluster.wait_ready(3)
    shown = run_cli("client", cluster.master_address, "quota", "/team")
    assert b"/team: 6 of 6 entries, 1.0 MiB of 3.0 MiB" in shown.stdout, shown
    cleared = run_cli("client", cluster.master_address, "quota", "/team", "--clear")
    assert b"/team: 6 entries, 1.0 MiB (no quota)" in cleared.stdout, cleared
    (team / "d4").mkdir()
    for args, reason in (
        (("/team/first", "--size", "1G"), b"not a folder"),
        (("/team", "--size", "12X"), b"size '12X'"),
        (("/team", "--entries", "-1"), b"0 (none) or more"),
    ):
        mistake = run_cli("client", cluster.master_address, "quota", *args)
        assert mistake.returncode != 0 and reason in mistake.stderr, mistake.stderr
        assert b"Traceback" not in mistake.stderr and len(mistake.stderr.strip().splitlines()) == 1


def test_cp_tar_rsync_mv_rm(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    _, mnt = mounted
    source = Path(shutil.__file__).parent / "email"  # a real source tree from the standard library
    sh("cp", "-r", str(source), str(mnt / "email"))
    sh("diff", "-r", str(source), str(mnt / "email"))
    sh("tar", "-cf", str(mnt / "email.tar"), "-C", str(source.parent), "email")
    (mnt / "extract").mkdir()
    sh("tar", "-xf", str(mnt / "email.tar"), "-C", str(mnt / "extract"))
    sh("diff", "-r", str(source), str(mnt / "extract" / "email"))
    sh("rsync", "-a", str(source) + "/", str(mnt / "synced"))  # ./dev installs rsync: never skipped
    sh("diff", "-r", str(source), str(mnt / "synced"))
    (mnt / "elsewhere").mkdir()
    sh("mv", str(mnt / "email"), str(mnt / "elsewhere" / "email"))
    sh("diff", "-r", str(source), str(mnt / "elsewhere" / "email"))
    sh("rm", "-r", str(mnt / "elsewhere"), str(mnt / "extract"))
    assert sorted(os.listdir(mnt)) == ["email.tar", "synced"]


def test_git_sqlite_and_mmap(mounted: tuple[LocalCluster, Path]) -> None:
    cluster, mnt = mounted
    repo = mnt / "repo"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    (repo / "README").write_text("hello\n")
    sh("git", "add", "README", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first", cwd=repo)
    assert "first" in sh("git", "log", "--oneline", cwd=repo)
    sh("git", "fsck", "--strict", cwd=repo)

    db = sqlite3.connect(mnt / "test.db")
    db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, v TEXT)")
    with db:
        db.executemany("INSERT INTO t VALUES (?, ?)", ((i, f"value {i}") for i in range(10_000)))
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (10_000,)
    db.close()

    data = bytearray(os.urandom(3 * MiB))
    (mnt / "mapped").write_bytes(data)
    with open(mnt / "mapped", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert m[MiB : MiB + 100] == data[MiB : MiB + 100]
    # Shared writable mapping: stores reach the cluster (msync, then munmap and close).
    with open(mnt / "mapped", "r+b") as rw, mmap.mmap(rw.fileno(), 0, access=mmap.ACCESS_WRITE) as m:
        m[10:20] = b"x" * 10
        m[2 * MiB : 2 * MiB + 5] = b"mmap!"
        m.flush()
    data[10:20] = b"x" * 10
    data[2 * MiB : 2 * MiB + 5] = b"mmap!"
    assert (mnt / "mapped").read_bytes() == data
    other = cluster.mount(mnt.parent / "other")
    assert (other / "mapped").read_bytes() == data  # on the cluster, not only in this kernel's pages


def test_close_to_open_across_mounts(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    cluster, first = mounted
    second = cluster.mount(tmp_path / "second")
    (first / "shared.txt").write_bytes(b"version 1")
    assert (second / "shared.txt").read_bytes() == b"version 1"
    (second / "shared.txt").write_bytes(b"version 2, longer")
    assert (first / "shared.txt").read_bytes() == b"version 2, longer"


def test_a_file_replaced_removed_or_grown_on_another_mount_is_opened_as_it_is_now(
    mounted: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    """Another mount replaces a file (write a temporary one, rename it over: editors, git's
    index) or removes it: an open here right after, through the name this kernel (and mount)
    still know, opens what the name is now (the old file's name was cached for the attribute
    timeout: 10 of 10 opens read the old file), O_TRUNC truncates the new one, never the file
    the trash keeps, and an open of a name removed fails ENOENT. git on one machine read the
    index another had just replaced, and wrote back a stale one."""
    cluster, first = mounted
    second = cluster.mount(tmp_path / "second")
    (first / "g").write_text("v0")
    assert (second / "g").read_text() == "v0"
    stale = []
    for i in range(1, 11):
        (first / "g.tmp").write_text(f"v{i}")
        os.rename(first / "g.tmp", first / "g")
        got = (second / "g").read_text()
        if got != f"v{i}":
            stale.append((i, got))
    assert not stale, f"opened the replaced file: {stale}"
    assert (second / "g").stat().st_nlink == 1
    (first / "t.tmp").write_text("new")
    (first / "t").write_text("old")
    assert (second / "t").read_text() == "old"
    os.rename(first / "t.tmp", first / "t")
    with open(second / "t", "w") as f:  # O_TRUNC, through the old name
        f.write("written")
    assert (first / "t").read_text() == "written"
    trashed = run_cli("client", cluster.master_address, "trash", "list", "/t", "--json")
    assert [e["size"] for e in json.loads(trashed.stdout)["entries"]] == [3], trashed  # ("old", untouched)
    assert (second / "gone").write_text("x") and (second / "gone").read_text() == "x"
    (first / "gone").unlink()
    with pytest.raises(FileNotFoundError):
        (second / "gone").read_text()
    # Appended to on the first mount, and closed: a new open here reads it all (the kernel kept
    # the size it had been told for the attribute timeout, and reads stopped there: 4-5 of 10).
    (first / "log").write_text("line 0\n")
    assert (second / "log").read_text() == "line 0\n"
    short = []
    for i in range(1, 11):
        (second / "log").stat()  # (the kernel here is told the size)
        with open(first / "log", "a") as log:
            log.write(f"line {i}\n")
        got = (second / "log").read_text()
        if not got.endswith(f"line {i}\n"):
            short.append((i, len(got)))
    assert not short, f"reads that stopped at the old size: {short}"
    # The same while a program here keeps the file open (a viewer, an editor): a stat here once
    # the attribute timeout has passed, and a fresh open at once, see what the other mount
    # appended or cut, not the size the file had when it was opened (which stood for both).
    (first / "held").write_bytes(b"x" * 1000)
    with open(second / "held", "rb") as holder:
        assert holder.read() == b"x" * 1000
        with open(first / "held", "ab") as f:
            f.write(b"y" * 500)
        assert (second / "held").read_bytes() == b"x" * 1000 + b"y" * 500
        os.truncate(first / "held", 10)
        time.sleep(1.1)  # (the attribute timeout: the kernel here was told 1,500 bytes)
        assert os.stat(second / "held").st_size == 10
        with open(first / "held", "ab") as f:
            f.write(b"z" * 5)
        time.sleep(1.1)
        assert os.stat(second / "held").st_size == 15
        assert (second / "held").read_bytes() == b"x" * 10 + b"z" * 5
        assert holder.read() == b""  # (the holder's offset, 1,000, is past the end now)


def test_a_removed_folder_lists_empty_where_it_is_still_open_and_is_gone_elsewhere(
    mounted: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    """As on Linux, a folder removed while it is a program's current directory lists empty,
    stats with no links, and takes no new names (`ls` failed ENOENT). But a folder another
    mount removed, or removed and made anew, is not listed empty through the name this kernel
    still caches: ENOENT, or what the new folder holds."""
    cluster, first = mounted
    script = "mkdir gone && cd gone && rmdir ../gone && ls -a; echo ls=$?; stat -c %h .; touch f; echo touch=$?"
    done = subprocess.run(["sh", "-c", script], cwd=first, capture_output=True, text=True, timeout=60)
    assert done.stdout == "ls=0\n0\ntouch=1\n", done
    second = cluster.mount(tmp_path / "second")
    wrong = []
    for i in range(5):
        for name in (f"removed{i}", f"remade{i}"):
            (first / name).mkdir()
            (first / name / "old").write_text("x")
            assert os.listdir(second / name) == ["old"]
            (first / name / "old").unlink()
            (first / name).rmdir()
        (first / f"remade{i}").mkdir()
        (first / f"remade{i}" / "new").write_text("y")
        with contextlib.suppress(FileNotFoundError):
            wrong.append(("removed", os.listdir(second / f"removed{i}")))
        if (listed := os.listdir(second / f"remade{i}")) != ["new"]:
            wrong.append(("remade", listed))
    assert not wrong


def test_writes_from_two_mounts_to_different_bytes_of_one_chunk_both_stand(
    mounted: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    """Two machines write different bytes of one chunk of a file (each opened it before the
    other's close): both stand, as on a local disk. Each close committed the chunk whole, as
    the mount had it: the later commit put back the bytes the other had changed (8 of 16
    blocks lost, at once or one after the other). Now a commit stands only while the chunk is
    the one its copy was made from; else what it wrote goes onto the chunk there now."""
    cluster, first = mounted
    second = cluster.mount(tmp_path / "second")
    block, blocks = 64 * 1024, 16
    (first / "f").write_bytes(b"." * block * blocks)
    a, b = os.open(first / "f", os.O_WRONLY), os.open(second / "f", os.O_RDWR)
    assert os.pread(b, 10, 0) == b"." * 10  # (the second has read it: its copy is made)
    for k in range(blocks):  # every other block from each, interleaved
        os.pwrite(a if k % 2 else b, bytes([65 + k]) * block, k * block)
    os.close(a)
    os.close(b)
    data = (first / "f").read_bytes()
    lost = [k for k in range(blocks) if data[k * block : (k + 1) * block] != bytes([65 + k]) * block]
    assert not lost, f"blocks lost: {lost}"
    # One after the other: the second opened (and read) first; the first writes and closes; then
    # the second writes elsewhere in that chunk and closes.
    (first / "g").write_bytes(b"." * MiB)
    late = os.open(second / "g", os.O_RDWR)
    os.pread(late, 10, 0)
    with open(first / "g", "r+b") as early:
        early.write(b"C" * 10)
    os.pwrite(late, b"D" * 10, 200_000)
    os.close(late)
    for mount in (first, second):
        data = (mount / "g").read_bytes()
        assert data[:10] == b"C" * 10 and data[200_000:200_010] == b"D" * 10 and len(data) == MiB


def test_appends_from_two_mounts_at_once_lose_no_line(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    """Two machines append to one log at once (`echo ... >> log`, 100 times each): every line is
    there once, each machine's in its order. Each mount appended at the size it knew, and the
    later commit overwrote the other's lines (109 of 200 were left); now an append is committed
    only if the file has not grown meanwhile, else it goes again at the new end."""
    cluster, first = mounted
    second = cluster.mount(tmp_path / "second")
    (first / "shared.log").write_bytes(b"")
    script = 'for i in $(seq 1 100); do echo "{name} line $i" >> "{path}"; done'
    writers = [
        subprocess.Popen(["sh", "-c", script.format(name=name, path=mount / "shared.log")])
        for name, mount in (("a", first), ("b", second))
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    content = (first / "shared.log").read_bytes()
    lines = content.decode().splitlines()
    for name in "ab":
        assert [line for line in lines if line.startswith(name)] == [f"{name} line {i}" for i in range(1, 101)]
    assert len(lines) == 200 and content.endswith(b"\n")
    assert (second / "shared.log").read_bytes() == content


def test_appends_of_two_processes_on_each_of_two_mounts_lose_no_record_and_fail_no_close(
    mounted: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    """Two processes on each of two mounts keep one log open with O_APPEND and write records to
    it, fsyncing now and then, on a busy machine: every record is there once, in each writer's
    order, and no write, fsync or close fails (before, this failed 4 runs of 4). Records were
    lost with every call having succeeded: a commit gave the file the size written so far,
    though its upload had begun before the last records, and those then went as plain writes,
    over what another mount appended there meanwhile. And both flushes of one mount that saw a
    refusal went again at the new end (KeyError in the second: EIO), while a write meanwhile
    went in at the old end."""
    cluster, first = mounted
    second = cluster.mount(tmp_path / "second")
    count, size = 300, 64
    script = """if 1:
        import os, sys
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
        for i in range(int(sys.argv[3])):
            os.write(fd, f"{sys.argv[2]} {i:05}".encode().ljust(63, b".") + b"\\n")
            if i % 50 == 0:
                os.fsync(fd)
        os.close(fd)
    """
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        for run in range(4):  # (one round of it failed in about 1 of 6)
            log = f"records{run}"
            (first / log).write_bytes(b"")
            writers = {
                name: subprocess.Popen([sys.executable, "-c", script, str(mount / log), name, str(count)])
                for name, mount in (("a1", first), ("b1", second), ("a2", first), ("b2", second))
            }
            assert {name: writer.wait(timeout=120) for name, writer in writers.items()} == dict.fromkeys(writers, 0)
            content = (second / log).read_bytes()
            records = content.decode().splitlines()
            for name in writers:
                mine = [r.split(".")[0] for r in records if r.startswith(name + " ")]
                assert mine == [f"{name} {i:05}" for i in range(count)], (run, name)
            assert len(content) == len(writers) * count * size and (first / log).read_bytes() == content
    finally:
        for burner in busy:
            burner.kill()
            burner.wait()


def test_tail_f_on_one_mount_follows_a_file_another_appends_to(
    mounted: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    """A reader that keeps the file open (`tail -f` of a log another machine writes) sees what
    is appended elsewhere once the attribute timeout (1 s) has passed; it used to see nothing
    new until it opened the file again. Beyond close-to-open, as NFS, MooseFS and JuiceFS do."""
    cluster, writer_mount = mounted
    reader_mount = cluster.mount(tmp_path / "reader")
    with open(writer_mount / "app.log", "wb", buffering=0) as log:
        log.write(b"line 1\n")
        os.fsync(log.fileno())
        tail = subprocess.Popen(["tail", "-f", str(reader_mount / "app.log")], stdout=subprocess.PIPE)
        try:
            with open(reader_mount / "app.log", "rb", buffering=0) as reader:
                assert reader.read() == b"line 1\n"
                for i in range(2, 5):
                    log.write(b"line %d\n" % i)
                    os.fsync(log.fileno())
                got = b""
                deadline = time.monotonic() + 5
                while len(got) < 21 and time.monotonic() < deadline:
                    time.sleep(0.2)
                    got += reader.read()
                assert got == b"line 2\nline 3\nline 4\n"
            time.sleep(2)  # tail -f looks once a second
        finally:
            tail.terminate()
        assert tail.communicate(timeout=10)[0] == b"line 1\nline 2\nline 3\nline 4\n"


def test_the_kernel_reads_ahead_a_mebibyte(mounted: tuple[LocalCluster, Path]) -> None:
    _, mnt = mounted  # (a sequential reader's requests then come 1 MiB at a time, not 128 KiB)
    real = str(mnt.resolve()).replace(" ", "\\040")
    mounts = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    devices = [fields[2] for fields in mounts if fields[4] == real]
    assert Path(f"/sys/class/bdi/{devices[-1]}/read_ahead_kb").read_text().strip() == "1024"


def test_files_fetched_ahead_never_show_stale_content(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    cluster, first = mounted
    second = cluster.mount(tmp_path / "second")
    (first / "many").mkdir()
    for i in range(12):
        (first / "many" / f"f{i:02}").write_bytes(b"old %02d" % i)
    for _ in range(2):  # (listings bring chunks once files are being opened on the mount)
        time.sleep(1.2)  # the name cache and the kernel's caches expire
        # Read in the folder's order: the next files' (old) chunks are fetched ahead ...
        assert [(first / "many" / f"f{i:02}").read_bytes() for i in range(2)] == [b"old 00", b"old 01"]
    for i in range(2, 12):  # ... while another mount replaces them
        (second / "many" / f"f{i:02}").write_bytes(b"new %02d" % i)
    assert [(first / "many" / f"f{i:02}").read_bytes() for i in range(2, 12)] == [b"new %02d" % i for i in range(2, 12)]


def test_a_name_missing_on_one_mount_shows_once_another_creates_it(
    mounted: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    cluster, first = mounted
    second = cluster.mount(tmp_path / "second")
    for attempt in range(3):  # the kernel remembers a missing name only briefly (0.2 s)
        name = f"late-{attempt}.txt"
        assert not (second / name).exists()
        (first / name).write_bytes(b"here now")
        time.sleep(0.3)
        assert (second / name).read_bytes() == b"here now"
    # Within one mount the kernel itself turns the remembered miss into the new file.
    assert not (first / "mine.txt").exists()
    (first / "mine.txt").write_bytes(b"at once")
    assert (first / "mine.txt").read_bytes() == b"at once"


def test_a_folder_made_here_still_shows_names_another_mount_adds(
    mounted: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    cluster, first = mounted
    second = cluster.mount(tmp_path / "second")
    # A folder made on one mount, and added to only there, answers missing names itself ...
    (second / "made").mkdir()
    (second / "made" / "a").write_bytes(b"a")
    (first / "made" / "x").write_bytes(b"from first")
    # ... until its next add shows that someone else changed the folder: then at once,
    (second / "made" / "b").write_bytes(b"b")
    assert (second / "made" / "x").read_bytes() == b"from first"
    # and without an add of its own, once the kernel's negative timeout (0.2 s) has passed.
    (second / "quiet").mkdir()
    (second / "quiet" / "a").write_bytes(b"a")
    (first / "quiet" / "y").write_bytes(b"from first")
    time.sleep(0.5)
    assert (second / "quiet" / "y").read_bytes() == b"from first"
    assert sorted(p.name for p in (second / "made").iterdir()) == ["a", "b", "x"]


def test_files_renamed_into_place_in_a_folder_made_here_ask_the_master_no_names(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """pip, rsync, editors and git write a file under a temporary name and rename it into place.
    In a folder this mount made, the names looked up on the way are answered here while each
    reply (of a rename, an unlink, or setting the folder's mode) proves the folder unchanged by
    others: each was a master round trip (two to four per file, a fifth of a small file's time).
    The stat after the rename is answered from the rename's reply (the kernel asks again: the
    file's ctime moved)."""
    cluster = make_cluster(master_args=["--metrics", "127.0.0.1:0"])
    mnt = cluster.mount(tmp_path / "mnt")
    log = cluster.data_dir / "logs" / "master.log"

    def lookups() -> float:
        return sum(v for k, v in scrape(log).items() if k.startswith("fusedfs_rpc_seconds_count{") and "Lookup" in k)

    def getattrs() -> float:
        return scrape(log).get('fusedfs_rpc_seconds_count{code="OK",method="GetAttr"}', 0.0)

    (mnt / "d").mkdir(mode=0o700)
    os.chmod(mnt / "d", 0o755)  # (as rsync does)
    asked, attrs_asked = lookups(), getattrs()
    for i in range(20):
        (mnt / "d" / f".f{i}.tmp").write_bytes(b"%d" % i)
        os.replace(mnt / "d" / f".f{i}.tmp", mnt / "d" / f"f{i}")
        assert (mnt / "d" / f"f{i}").stat().st_size == len(b"%d" % i)  # (the rename's reply said)
        (mnt / "d" / "4913").touch()  # (vim's probe of whether it may write there)
        (mnt / "d" / "4913").unlink()
    assert lookups() == asked and getattrs() == attrs_asked
    other = cluster.mount(tmp_path / "other")
    assert sorted(p.name for p in (other / "d").iterdir()) == sorted(f"f{i}" for i in range(20))
    assert [(other / "d" / f"f{i}").read_bytes() for i in range(20)] == [b"%d" % i for i in range(20)]
    # Another mount's change before our rename: its reply shows it, and names are asked again.
    (other / "d" / "theirs").write_bytes(b"x")
    os.replace(mnt / "d" / "f0", mnt / "d" / "g0")
    assert (mnt / "d" / "theirs").read_bytes() == b"x"


def test_names_missing_from_a_folder_listed_whole_are_answered_here_and_another_mounts_show(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """`git gc` looks for each of .git/objects/00 to ff in turn, several times over, in a folder
    this mount did not make: a master lookup each (1,263 of its 1,379 lookups). Once the folder
    has been listed whole, the names found missing are answered here; past the negative
    timeout, one GetAttr of the folder proves them all again. A name another mount adds shows
    within the negative timeout (0.2 s) of the last proof; one never looked up here, at once."""
    cluster = make_cluster(master_args=["--metrics", "127.0.0.1:0"])
    mine, theirs = cluster.mount(tmp_path / "mine"), cluster.mount(tmp_path / "theirs")
    log = cluster.data_dir / "logs" / "master.log"

    def calls(method: str) -> float:
        return sum(v for k, v in scrape(log).items() if k.startswith("fusedfs_rpc_seconds_count{") and method in k)

    (theirs / "objects" / "pack").mkdir(parents=True)
    (theirs / "objects" / "info").mkdir()
    probes = [f"{i:02x}" for i in range(256)]
    assert not any((mine / "objects" / p).exists() for p in probes)
    missed, getattrs = calls('code="NOT_FOUND",method="Lookup"'), calls('method="GetAttr"')
    for _ in range(3):
        time.sleep(0.3)  # (the kernel's memory of the misses, and the proof, are over)
        assert not any((mine / "objects" / p).exists() for p in probes)
    # (the first name was found missing before the folder was listed: asked once more)
    assert calls('code="NOT_FOUND",method="Lookup"') - missed <= 1
    assert calls('method="GetAttr"') - getattrs <= 6  # (at least one a round, to prove the folder)
    # A name never looked up here is asked of the master: another mount's new file opens at once.
    (theirs / "objects" / "new").write_bytes(b"closed there")
    assert (mine / "objects" / "new").read_bytes() == b"closed there"
    (theirs / "objects" / "ab").mkdir()
    time.sleep(0.45)
    assert (mine / "objects" / "ab").is_dir() and not (mine / "objects" / "ac").exists()
    assert sorted(p.name for p in (mine / "objects").iterdir()) == ["ab", "info", "new", "pack"]


@pytest.mark.parametrize("short_circuit", [True, False], ids=["from-the-disk", "from-the-keepers"])
def test_rotten_replicas_are_read_around_and_repaired(mounted: tuple[LocalCluster, Path], short_circuit: bool) -> None:
    cluster, mnt = mounted
    options = [] if short_circuit else ["--no-short-circuit"]
    data = os.urandom(5000)  # one small chunk: read with one unary call per replica tried
    (mnt / "fragile").write_bytes(data)
    victims = [path for i in (0, 1) for path in (cluster.keeper_dir(i) / "chunks").glob("*/*")]
    assert len(victims) == 2
    for path in victims:  # rot inside the data (which starts at 4 KiB) on 2 of the 3 keepers
        with open(path, "r+b") as f:
            f.seek(4096 + 100)
            old = f.read(1)
            f.seek(4096 + 100)
            f.write(bytes([old[0] ^ 0xFF]))

    def healed(path: Path) -> bool:
        # (by the byte itself: a ChunkStore opened here would race the keeper, and empty its tmp/)
        try:
            with open(path, "rb") as f:
                f.seek(4096 + 100)
                return f.read(1) == data[100:101]
        except FileNotFoundError:  # dropped, not yet copied back
            return False

    # Reads through fresh mounts (no cache) always get the right bytes; a rotten copy a read
    # meets is reported, dropped and copied back from the good one. Replicas are tried in
    # random order: reading on until both rotten ones were met (30 reads at most).
    reads, deadline = 0, time.monotonic() + 60
    while not all(healed(path) for path in victims):
        assert time.monotonic() < deadline, f"rotten replicas were not replaced ({reads} reads)"
        if reads < 30:
            cluster.unmount(mnt)
            cluster.mount(mnt, options)
            assert (mnt / "fragile").read_bytes() == data
            reads += 1
        else:
            time.sleep(0.2)


def test_permissions_hold_for_other_users(mounted: tuple[LocalCluster, Path]) -> None:
    cluster, _ = mounted
    # Another user must be able to reach the mount point (pytest's own folders are root-only).
    mnt = cluster.mount(Path(tempfile.mkdtemp(prefix="fusedfs-perm-")))
    secret = mnt / "secret"
    secret.write_bytes(b"root only")
    os.chmod(secret, 0o600)
    public = mnt / "public"
    public.write_bytes(b"everyone")
    os.chmod(public, 0o644)
    try:
        denied = subprocess.run(["cat", str(secret)], user=65534, capture_output=True, text=True)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        allowed = subprocess.run(["cat", str(public)], user=65534, capture_output=True, text=True)
        assert allowed.stdout == "everyone", allowed.stderr
        no_write = subprocess.run(["sh", "-c", f"echo x >> {public}"], user=65534, capture_output=True, text=True)
        assert no_write.returncode != 0 and public.read_bytes() == b"everyone"
    finally:
        cluster.unmount(mnt)
        mnt.rmdir()


def test_small_reads_are_not_held_up_by_a_keeper_that_hangs(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    cluster, mnt = mounted
    warm = {f"warm{i:02}": os.urandom(64 * 1024) for i in range(30)}
    cold = {f"cold{i:02}": os.urandom(64 * 1024) for i in range(30)}
    for name, data in (warm | cold).items():
        (mnt / name).write_bytes(data)
    # (Asking the keepers over the network: a keeper's chunks on this machine are read straight
    # from its disk, whether it answers or not.)
    other = cluster.mount(tmp_path / "other", ["--no-short-circuit"])
    for name, data in warm.items():  # the other mount now has a connection to every keeper
        assert (other / name).read_bytes() == data
    hung = cluster.keeper_procs[0]
    assert hung is not None
    os.kill(hung.pid, signal.SIGSTOP)  # no answer, no reset: as a keeper cut off, or stalled
    slowest = 0.0
    try:
        # All within the 3 s before the master calls it dead: each file lists it as a replica,
        # first in about a third of them; the other mount has none of them in its cache.
        for name, data in cold.items():
            started = time.monotonic()
            assert (other / name).read_bytes() == data
            slowest = max(slowest, time.monotonic() - started)
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    # Another replica is asked after 0.1 s. Without that, the read waited until gRPC's
    # keepalive gave up on the connection: 1 to 3 s.
    assert slowest < 0.8, slowest


def test_a_file_opened_again_while_its_last_close_waits_keeps_what_is_written_to_it(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """The keepers out of reach (stopped): a close fails EIO after the mount's --wait, and the
    kernel's release then waits as long again to save it. A program that opens the file again
    meanwhile (a logger's next line) writes into the same open file. The release dropped it
    when its wait ended, and the next close committed the size that line made without its bytes:
    the close succeeded and the file held zeros where the line was (a partition sweep)."""
    cluster = make_cluster()
    mnt = cluster.mount(tmp_path / "mnt", ["--wait", "3"])
    log = mnt / "log"
    log.write_bytes(b"line 1\n")
    assert log.read_bytes() == b"line 1\n"  # (in the mount's cache: appending needs no keeper)
    with stopped(cluster.keeper_procs):
        with pytest.raises(OSError) as failed, open(log, "ab") as f:
            f.write(b"line 2\n")
        assert failed.value.errno == errno.EIO
        with open(log, "ab") as f:  # (while the release of line 2 still waits)
            f.write(b"line 3\n")
            try:  # (its flush waits for the same upload as that release)
                f.close()
                closed = True
            except OSError as e:
                assert e.errno == errno.EIO
                closed = False
    wait_for(lambda: all(k.alive for k in cluster.status().keepers), 30, "the keepers back")
    content = b""

    def read() -> bool:
        nonlocal content
        with contextlib.suppress(OSError):  # (the mount's connections to them come back within seconds)
            content = log.read_bytes()
            return True
        return False

    wait_for(read, 30, "the log readable")
    assert b"\0" not in content, content
    assert content.startswith(b"line 1\n") and (b"line 3\n" in content or not closed), content


def test_a_read_fails_within_the_wait_when_no_keeper_answers(make_cluster: MakeCluster, tmp_path: Path) -> None:
    """A file read on a mount that has none of it, while no keeper answers: EIO after --wait,
    not twice that. The kernel asks again at once when a read fails (its read-ahead, then the
    page), and each request waited the whole --wait (a read asked the replicas, then went the
    whole way, each for as long again): an SQLite read took 10 s with --wait 5."""
    cluster = make_cluster()
    writer = cluster.mount(tmp_path / "writer", ["--wait", "4"])
    (writer / "f").write_bytes(os.urandom(100_000))
    reader = cluster.mount(tmp_path / "reader", ["--wait", "4"])
    with stopped(cluster.keeper_procs), open(reader / "f", "rb") as f:  # (the master answers)
        started = time.monotonic()
        with pytest.raises(OSError) as failed:
            f.read()
        took = time.monotonic() - started
    assert failed.value.errno == errno.EIO and 3.9 < took < 4 + 2, took


def test_the_calls_of_one_write_wait_for_the_cluster_once(make_cluster: MakeCluster, tmp_path: Path) -> None:
    """A write into a chunk a mount knows nothing of yet: its first call (where the chunk is,
    from the master) is answered late, its next (the chunk's bytes, from keepers that do not
    answer) is not. EIO after --wait in all, not --wait for each call after the first (a
    partition sweep's appends took 43 s with --wait 30)."""
    cluster = make_cluster()
    writer = cluster.mount(tmp_path / "writer", ["--wait", "5"])
    (writer / "d").mkdir()
    assert run_cli("client", cluster.master_address, "chunksize", "/d", "1").returncode == 0
    end = 140 * MiB  # (chunk 140: past the 128 an open learns of)
    with open(writer / "d" / "f", "wb") as f:
        for index in range(140):
            f.seek(index * MiB)
            f.write(b"x")
        f.seek(end)
        f.write(os.urandom(100_000))  # (small: a write into it needs its bytes)
    other = cluster.mount(tmp_path / "other", ["--wait", "5"])
    assert cluster.master_proc is not None
    stopped = [cluster.master_proc, *(p for p in cluster.keeper_procs if p is not None)]
    fd = os.open(other / "d" / "f", os.O_WRONLY)
    try:
        for proc in stopped:
            os.kill(proc.pid, signal.SIGSTOP)
        master_back = threading.Timer(2.5, os.kill, (cluster.master_proc.pid, signal.SIGCONT))
        master_back.start()
        try:
            started = time.monotonic()
            with pytest.raises(OSError) as failed:
                os.pwrite(fd, b"a line\n", end + 10)
            took = time.monotonic() - started
        finally:
            master_back.join()
            for proc in stopped:
                os.kill(proc.pid, signal.SIGCONT)
    finally:
        os.close(fd)
    assert failed.value.errno == errno.EIO and 4.9 < took < 5 + 1.3, took  # (2.5 + 5 before)


def test_a_close_fails_within_the_wait_when_no_keeper_answers(make_cluster: MakeCluster, tmp_path: Path) -> None:
    """A file of many chunks closed while no keeper answers: EIO within --wait and a few
    seconds, not after every chunk's upload has waited in turn (4 at a time: a partition sweep
    saw closes take 60-120 s with --wait 30). Its uploads still under way when the file is let
    go do not commit once the keepers are back: the file's size would cover the chunks never
    saved (zeros)."""
    cluster = make_cluster()
    mnt = cluster.mount(tmp_path / "mnt", ["--wait", "3"])
    (mnt / "d").mkdir()
    assert run_cli("client", cluster.master_address, "chunksize", "/d", "1").returncode == 0
    data = os.urandom(32 * MiB)  # (32 chunks)
    with stopped(cluster.keeper_procs):
        f = open(mnt / "d" / "big", "wb")  # noqa: SIM115  (its close is what is timed)
        f.write(data)
        started = time.monotonic()
        with pytest.raises(OSError) as failed:
            f.close()
        took = time.monotonic() - started
    assert failed.value.errno == errno.EIO and took < 3 + 5 + 2, took
    wait_for(lambda: all(k.alive for k in cluster.status().keepers), 30, "the keepers back")

    def failed_saves() -> list[int]:  # (a CI run once found no mount listed right after the keepers came back)
        return [m.info.failed_saves for m in cluster.status().connected_mounts]

    # status tells whoever looks that this mount's close failed (once: the release that came
    # after it tried again, but that was not a close of a program's).
    wait_for(lambda: failed_saves() == [1], 10, "the failed close shown")
    time.sleep(3)  # (the uploads let go end)
    content = (mnt / "d" / "big").read_bytes()
    assert data.startswith(content), f"{len(content)} bytes, {content.count(0)} zeros"


def test_a_close_that_fails_leaves_a_growing_file_as_long_as_what_was_saved(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """A file's first chunk is saved while its other two wait in the write-back cache, then no
    keeper answers and the close fails: the file is as long as its saved chunk. Each chunk's
    commit used to carry the whole size written: the file read zeros from there to 3 MiB."""
    cluster = make_cluster()
    mnt = cluster.mount(tmp_path / "mnt", ["--wait", "3"])
    (mnt / "d").mkdir()
    assert run_cli("client", cluster.master_address, "chunksize", "/d", "1").returncode == 0
    data = os.urandom(3 * MiB - 1)
    master = MasterClient(cluster.master_address, wait=5)
    fd = os.open(mnt / "d" / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        # Slots 1 and 2 first, short of their ends: they wait for the close. Then slot 0, whole:
        # it uploads at once.
        os.pwrite(fd, data[MiB : 2 * MiB - 1], MiB)
        os.pwrite(fd, data[2 * MiB :], 2 * MiB)
        os.pwrite(fd, data[:MiB], 0)
        inode = master.call("ResolvePath", mp.PathRequest(path="/d/f")).inode

        def saved() -> list[int]:
            return [c.index for c in master.call("GetChunks", mp.GetChunksRequest(inode=inode)).chunks]

        wait_for(lambda: saved() == [0], 10, "slot 0 saved")
        with stopped(cluster.keeper_procs):
            with pytest.raises(OSError) as failed:
                os.close(fd)
            fd = -1
            assert failed.value.errno == errno.EIO
            size = master.call("GetAttr", mp.InodeRequest(inode=inode)).size
            assert saved() == [0] and size == MiB, size
    finally:
        if fd >= 0:
            os.close(fd)
        master.pool.close()


def test_changes_lost_with_a_failed_close_do_not_stay_in_the_kernels_cache(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """Changes whose close failed (and the release's second try after it: no keeper answers) are
    dropped, and the file reads as the cluster has it. The kernel's cache kept the pages written,
    and an open after it kept that cache (the file looked unchanged on the master): the file read
    as the lost changes where they were cached and the saved data elsewhere, and SQLite said
    "database disk image is malformed" in a partition sweep."""
    cluster = make_cluster()
    mnt = cluster.mount(tmp_path / "mnt", ["--wait", "1", "--metrics", "127.0.0.1:0"])
    log = cluster.data_dir / "logs" / "mount-mnt.log"
    old = os.urandom(256 * 1024)
    (mnt / "f").write_bytes(old)
    assert (mnt / "f").read_bytes() == old  # (now in the kernel's cache)
    with stopped(cluster.keeper_procs):
        fd = os.open(mnt / "f", os.O_WRONLY)
        os.pwrite(fd, b"lost" * 1024, 8192)
        os.pwrite(fd, b"lost", len(old))
        with pytest.raises(OSError) as failed:
            os.close(fd)
        assert failed.value.errno == errno.EIO

        def released() -> bool:  # (stat-ed meanwhile: the kernel keeps a size it is told for a second)
            return (mnt / "f").stat().st_size > 0 and scrape(log)["fusedfs_mount_open_files"] == 0

        wait_for(released, 20, "the release's flush to fail too")
        assert (mnt / "f").stat().st_size == len(old)
    wait_for(lambda: all(k.alive for k in cluster.status().keepers), 30, "the keepers back")
    content = (mnt / "f").read_bytes()
    assert content == old, "the lost changes still read" if b"lost" in content else "changed"
    other = cluster.mount(tmp_path / "other")
    assert (other / "f").read_bytes() == old


def test_a_close_waits_for_keepers_that_refuse_connections_for_a_while(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """Every keeper restarted at once (connections refused, though the master still counts
    them alive for 3 s): a close waits for them as for a cluster that is down, up to --wait,
    and saves the file. It failed EIO after 4 quick attempts (2-3 s in a partition sweep)."""
    cluster = make_cluster()
    mnt = cluster.mount(tmp_path / "mnt", ["--wait", "20"])
    data = os.urandom(100_000)
    for index in range(3):
        cluster.kill_keeper(index)
    restart = threading.Timer(4.0, lambda: [cluster.start_keeper(i) for i in range(3)])
    restart.start()
    try:
        started = time.monotonic()
        (mnt / "f").write_bytes(data)  # (no exception: the close saved it)
        took = time.monotonic() - started
    finally:
        restart.join()
    assert 3.5 < took < 20, took
    assert (mnt / "f").read_bytes() == data


def test_keeper_killed_during_copy(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    cluster, mnt = mounted
    source = tmp_path / "source"
    source.write_bytes(os.urandom(150 * MiB))
    killer = threading.Timer(0.5, cluster.kill_keeper, args=(2,))
    killer.start()
    sh("cp", str(source), str(mnt / "copy"))
    killer.join()
    assert sha256_file(mnt / "copy") == sha256_file(source)


def test_dead_master_gives_eio_in_bounded_time_and_restart_recovers(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    mnt = cluster.mount(tmp_path / "mnt", ["--wait", "3"])
    (mnt / "before").write_bytes(b"saved")
    cluster.kill_master()
    started = time.monotonic()
    with pytest.raises(OSError) as failure:
        (mnt / "new-name").stat()  # the kernel has not cached this name: the mount must ask
    elapsed = time.monotonic() - started
    assert failure.value.errno == errno.EIO
    assert 2.5 < elapsed < 10, f"answered after {elapsed:.1f} s; --wait is 3 s"
    cluster.start_master()  # same folder: nothing lost, and the mount reconnects by itself
    cluster.wait_ready(3)
    assert (mnt / "before").read_bytes() == b"saved"
    (mnt / "after").write_bytes(b"works again")
    assert (mnt / "after").read_bytes() == b"works again"


def test_full_cluster_gives_enospc_through_the_mount(
    small_disk: SmallDisk, make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(keepers=0, start=False)
    cluster.start_master()
    for i in range(3):
        small_disk(cluster.keeper_dir(i), 20)
        cluster.start_keeper()
    cluster.wait_ready(3)
    mnt = cluster.mount(tmp_path / "mnt", ["--wait", "10"])
    started = time.monotonic()
    with pytest.raises(OSError) as full, open(mnt / "too-big", "wb") as f:
        for _ in range(8):
            f.write(os.urandom(8 * MiB))
    assert full.value.errno == errno.ENOSPC
    assert time.monotonic() - started < 60
    (mnt / "small").write_bytes(b"still works")  # nothing wedged
    assert (mnt / "small").read_bytes() == b"still works"


def test_extended_attributes(mounted: tuple[LocalCluster, Path]) -> None:
    _, mnt = mounted
    f = mnt / "tagged"
    f.write_bytes(b"data")
    assert os.listxattr(f) == []
    os.setxattr(f, "user.origin", b"camera 1")
    os.setxattr(f, "user.empty", b"")
    assert os.getxattr(f, "user.origin") == b"camera 1" and os.getxattr(f, "user.empty") == b""
    assert sorted(os.listxattr(f)) == ["user.empty", "user.origin"]
    with pytest.raises(OSError) as exists:
        os.setxattr(f, "user.origin", b"x", os.XATTR_CREATE)
    assert exists.value.errno == errno.EEXIST
    with pytest.raises(OSError) as missing:
        os.getxattr(f, "user.nothing")
    assert missing.value.errno == errno.ENODATA
    os.removexattr(f, "user.origin")
    assert os.listxattr(f) == ["user.empty"]
    refusals = (
        ("system.posix_acl_access", errno.EOPNOTSUPP),
        ("user." + "x" * 251, errno.ERANGE),
        ("bogus.x", errno.EOPNOTSUPP),  # (in no namespace: as ext4, not stored)
        ("user", errno.EOPNOTSUPP),
        ("user.", errno.EINVAL),
    )
    for bad, code in refusals:
        with pytest.raises(OSError) as refused:  # (refused by the mount, as the master would)
            os.setxattr(f, bad, b"")
        assert refused.value.errno == code, bad
    # trusted.* are root's: listed to root alone, as Linux lists them only to CAP_SYS_ADMIN.
    os.setxattr(f, "trusted.t", b"root's")
    fd = os.open(f, os.O_RDONLY)  # (handed over: nobody cannot get through the test's folders)
    try:
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c"]
        program = f"import os; print(sorted(os.listxattr({fd})))"
        listed = subprocess.run([*as_nobody, program], pass_fds=(fd,), capture_output=True, text=True, timeout=60)
    finally:
        os.close(fd)
    assert listed.stdout.strip() == "['user.empty']", listed
    assert sorted(os.listxattr(f)) == ["trusted.t", "user.empty"]
    os.removexattr(f, "trusted.t")
    (mnt / "folder").mkdir()
    os.setxattr(mnt / "folder", "user.kind", b"folder")
    assert os.getxattr(mnt / "folder", "user.kind") == b"folder"
    sh("cp", "-a", str(f), str(mnt / "copied"))  # cp -a keeps them
    assert os.getxattr(mnt / "copied", "user.empty") == b""


def test_owner_and_mode_set_on_a_file_just_written_ask_the_master_nothing_more(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """`tar x` sets owner and mode on each file it has just written, through its open
    descriptor. The file's writes made the kernel's cached attributes stale, so a `fchown` first
    asked for them: a master call per file (20 here), answered now from what the mount took from
    the master with the file within the attribute timeout. Its size and times are the mount's
    own; a change of ours (a link here) makes the next ask go to the master again."""
    cluster = make_cluster(master_args=["--metrics", "127.0.0.1:0"])
    mnt = cluster.mount(tmp_path / "mnt")
    log = cluster.data_dir / "logs" / "master.log"

    def getattr_calls() -> float:
        return scrape(log).get('fusedfs_rpc_seconds_count{code="OK",method="GetAttr"}', 0.0)

    before = getattr_calls()
    for i in range(20):
        fd = os.open(mnt / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"x" * (1000 + i))
            os.fchown(fd, 1000 + i, 1000)
            os.fchmod(fd, 0o600)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        assert (st.st_size, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000 + i, 1000 + i, 1000, 0o600)
    assert getattr_calls() - before == 0
    with open(mnt / "f0", "ab", buffering=0) as f:
        f.write(b"more")
        os.link(mnt / "f0", mnt / "f0-again")
        f.write(b"and more")  # (the kernel asks for the attributes again: now with 2 links)
        assert os.fstat(f.fileno()).st_nlink == 2 and os.fstat(f.fileno()).st_size == 1012
    assert os.stat(mnt / "f0").st_size == 1012


def test_a_stat_of_a_file_just_closed_asks_the_master_nothing_yet_shows_our_changes_since(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """rsync and pip stat each file they have just written and closed. The writes made the
    kernel's cached attributes stale, so each stat was a master call (20 here); it is answered
    now from the attributes the close's commit brought, within the attribute timeout. A change
    of ours after the close (a rename here: the file's ctime moves) shows in the next stat:
    from the rename's reply, which carries the file's new attributes."""
    cluster = make_cluster(master_args=["--metrics", "127.0.0.1:0"])
    mnt = cluster.mount(tmp_path / "mnt", ["--attr-timeout", "5"])  # (a slow machine still stats within it)
    log = cluster.data_dir / "logs" / "master.log"

    def getattr_calls() -> float:
        return scrape(log).get('fusedfs_rpc_seconds_count{code="OK",method="GetAttr"}', 0.0)

    before = getattr_calls()
    for i in range(20):
        with open(mnt / f"f{i}", "wb", buffering=0) as f:
            f.write(b"x" * (1000 + i))
        os.utime(mnt / f"f{i}", ns=(7, 7 + i))  # (the kernel asks nothing: the reply says)
        with open(mnt / f"f{i}", "ab", buffering=0) as f:
            f.write(b"y")
        st = os.stat(mnt / f"f{i}")
        assert (st.st_size, stat.S_IMODE(st.st_mode), st.st_nlink) == (1001 + i, 0o644, 1)
        assert st.st_mtime_ns > 7 + i  # (the append's, saved by its close)
    assert getattr_calls() - before == 0
    with open(mnt / "f0", "ab", buffering=0) as f:
        f.write(b"z")
    time.sleep(0.01)
    renaming = time.time_ns()
    os.rename(mnt / "f0", mnt / "g0")  # (before any stat of the file closed)
    renamed = os.stat(mnt / "g0")
    assert renamed.st_ctime_ns >= renaming and renamed.st_size == 1002
    assert getattr_calls() - before == 0


def test_ls_l_asks_the_master_nothing_per_file_yet_attributes_stay_current(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """`ls -l` asks for every file's security.selinux, and the kernel caches no extended
    attribute: each was a master call (10,000 files: 11 s). Attributes say whether a file has
    any, so those are answered by the mount; another mount's new attribute still shows within
    the attribute timeout, and this mount's own at once. (Without: 52 calls for this `ls -l`.)"""
    cluster = make_cluster(master_args=["--metrics", "127.0.0.1:0"])
    mnt, other = cluster.mount(tmp_path / "mnt"), cluster.mount(tmp_path / "other")
    (mnt / "d").mkdir()
    for i in range(50):
        (mnt / "d" / f"f{i:02}").write_bytes(b"x")
    os.setxattr(mnt / "d" / "f07", "user.tag", b"seven")
    log = cluster.data_dir / "logs" / "master.log"

    def xattr_calls() -> float:
        return sum(v for k, v in scrape(log).items() if k.startswith("fusedfs_rpc_seconds_count{") and "Xattr" in k)

    before = xattr_calls()
    listing = sh("ls", "-l", str(mnt / "d"))
    assert listing.count("\n") == 51 and xattr_calls() - before <= 1  # (f07's, which has one)
    assert os.getxattr(mnt / "d" / "f07", "user.tag") == b"seven"
    with pytest.raises(OSError) as missing:
        os.getxattr(mnt / "d" / "f03", "user.tag")
    assert missing.value.errno == errno.ENODATA
    with pytest.raises(OSError) as acl:  # as the master answers it: not supported
        os.getxattr(mnt / "d" / "f03", "system.posix_acl_access")
    assert acl.value.errno == errno.EOPNOTSUPP
    assert os.listxattr(mnt / "d" / "f03") == []
    os.setxattr(mnt / "d" / "f04", "user.mine", b"at once")  # this mount's own: seen at once
    assert os.getxattr(mnt / "d" / "f04", "user.mine") == b"at once"
    assert os.listxattr(mnt / "d" / "f04") == ["user.mine"]
    os.stat(mnt / "d" / "f03")  # (fresh attributes: no attribute, for the next second)
    os.setxattr(other / "d" / "f03", "user.theirs", b"from the other mount")
    took = wait_for(lambda: os.listxattr(mnt / "d" / "f03") == ["user.theirs"], 5, "another mount's attribute to show")
    assert took < 1.5  # the attribute timeout (1 s)
    assert os.getxattr(mnt / "d" / "f03", "user.theirs") == b"from the other mount"


def test_an_unlinked_open_file_stays_readable_until_closed(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    cluster, mnt = mounted
    other = cluster.mount(tmp_path / "other")
    data = os.urandom(20 * MiB)
    (mnt / "doomed").write_bytes(data)
    (mnt / "doomed-elsewhere").write_bytes(data)
    master = MasterClient(cluster.master_address)
    with open(mnt / "doomed", "rb") as same, open(mnt / "doomed-elsewhere", "rb") as elsewhere:
        os.unlink(mnt / "doomed")  # by the mount that has it open
        time.sleep(1.5)  # this mount has announced its open files
        os.unlink(other / "doomed-elsewhere")  # by another mount
        (mnt / "replacement").write_bytes(b"new")
        time.sleep(4)  # well past the garbage grace (1 s in tests) and a few maintenance rounds
        assert not (mnt / "doomed").exists()
        assert same.read() == data and elsewhere.read() == data
        assert os.fstat(same.fileno()).st_nlink == 0
        assert master.call("Status", cp.Empty()).open_orphans == 2
    deadline = time.monotonic() + 10
    while master.call("Status", cp.Empty()).open_orphans and time.monotonic() < deadline:
        time.sleep(0.2)
    assert master.call("Status", cp.Empty()).open_orphans == 0  # freed once closed
    master.pool.close()


def test_a_file_unlinked_right_after_another_mount_opened_it_stays_readable(
    mounted: tuple[LocalCluster, Path], tmp_path: Path
) -> None:
    cluster, mnt = mounted
    other = cluster.mount(tmp_path / "other")
    other_pid = cluster.mounts[tmp_path / "other"].pid
    data = os.urandom(20 * MiB)
    for cut_off in (False, True):
        (mnt / "fresh").write_bytes(data)
        # Opened on the other mount, which announces its open files only every second ...
        with open(other / "fresh", "rb") as reader:
            if cut_off:  # ... and, stopped at once, not for 6 s: as if cut off from the master
                os.kill(other_pid, signal.SIGSTOP)
            try:
                os.unlink(mnt / "fresh")
                # Past the garbage grace (1 s) and a metadata copy; unless stopped, past the
                # orphan grace (10 s) too, when only the other mount's announcement keeps it.
                time.sleep(6 if cut_off else 11)
            finally:
                os.kill(other_pid, signal.SIGCONT)
            assert reader.read() == data


def test_a_mount_silent_past_its_session_timeout_keeps_its_unlinked_open_file(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """A mount paused with a file open that another removes: the file outlives the session
    timeout, and a master restart meanwhile (SIGKILL), as the restarted master takes back what
    the mounts had open (a chaos sweep found it freed 10 s after the restart). No trash, so
    nothing else keeps it."""
    cluster = make_cluster(master_args=["--chunk-size", "1", "--trash-hours", "0"])
    mnt = cluster.mount(tmp_path / "mnt", ["--cache-mib", "2"])
    pid = cluster.mounts[tmp_path / "mnt"].pid
    data = os.urandom(24 * MiB)
    (mnt / "f").write_bytes(data)
    files = FileClient(MasterClient(cluster.master_address))
    # The reader is a process of its own: a process spawned (the master, restarted) while this
    # one held a file of the paused mount open would close it in the child, which waits for
    # the mount.
    reader = subprocess.Popen(
        [sys.executable, "-c", READ_WHEN_TOLD, str(mnt / "f")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert reader.stdout is not None and reader.stdin is not None
    try:
        assert reader.stdout.readline() == b"open\n"
        time.sleep(1.5)  # the mount has told the master it has the file open
        os.kill(pid, signal.SIGSTOP)  # then falls silent: a paused machine, a cut cable
        try:
            files.remove("/f")
            cluster.kill_master()
            cluster.start_master()
            cluster.wait_ready(3)
            # Past the session timeout (10 s), the orphan grace (10 s), the garbage grace (1 s)
            # and a metadata copy: once a silent mount's open files counted for nothing then.
            time.sleep(SESSION_TIMEOUT + 4)
        finally:
            os.kill(pid, signal.SIGCONT)
        read, _ = reader.communicate(b"read\n", timeout=60)
        assert read.decode().split() == [hashlib.sha256(data).hexdigest()], read
    finally:
        reader.kill()
    files.master.pool.close()


# Opens a file, says so, reads it whole when told (a line on stdin): its SHA-256, or the error.
READ_WHEN_TOLD = """
import hashlib, sys
with open(sys.argv[1], "rb") as f:
    first = f.read(1)
    print("open", flush=True)
    sys.stdin.readline()
    try:
        print(hashlib.sha256(first + f.read()).hexdigest())
    except OSError as e:
        print("error", e)
"""


def renameat2(src: Path, dst: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, bytes(src), at_fdcwd, bytes(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def test_rm_r_by_mistake_is_undone_from_the_trash(mounted: tuple[LocalCluster, Path], tmp_path: Path) -> None:
    cluster, mnt = mounted
    project = mnt / "project"
    (project / "src").mkdir(parents=True)
    contents = {f"src/m{i}.py": os.urandom(1000 * i) for i in range(5)}
    contents["big.bin"] = os.urandom(20 * MiB)
    for name, data in contents.items():
        (project / name).write_bytes(data)
    (project / "notes.txt").write_text("first")
    (project / "notes.txt").write_text("second")  # (rewritten in place: no trash entry)
    os.rename(project / "notes.txt", project / "notes.old")
    (project / "notes.txt").write_text("third")
    os.rename(project / "notes.txt", project / "notes.old")  # the "second" one replaced by a rename
    sh("rm", "-r", str(project))
    assert not project.exists()

    def trash(*args: str) -> subprocess.CompletedProcess[bytes]:
        return run_cli("client", cluster.master_address, "trash", *args)

    listed = json.loads(trash("list", "/project", "--json").stdout)
    assert sorted(e["path"] for e in listed["entries"]) == sorted(
        ["/project/notes.old", "/project/notes.old", *(f"/project/{n}" for n in contents)]
    )
    assert listed["bytes"] == sum(map(len, contents.values())) + len("second") + len("third")
    shown = trash("list").stdout.decode()
    assert "/project/big.bin" in shown and f"{len(contents) + 2} files, " in shown, shown
    restored = trash("restore", "/project")
    assert restored.returncode == 0, restored
    assert restored.stdout.decode().count("restored ") == len(contents) + 1
    for name, data in contents.items():
        assert (project / name).read_bytes() == data, name
    assert (project / "notes.old").read_text() == "third"  # the newest of the two at that path
    # The older one is still there: restored elsewhere by its inode.
    [older] = json.loads(trash("list", "/project/notes.old", "--json").stdout)["entries"]
    assert trash("restore", "--inode", str(older["inode"]), "/project/notes.second").returncode == 0
    assert (project / "notes.second").read_text() == "second"
    # A name taken since is not overwritten.
    (project / "big.bin").unlink()
    (project / "big.bin").write_bytes(b"new")
    clash = trash("restore", "/project/big.bin")
    assert clash.returncode == 1 and b"skipped /project/big.bin: that name is taken" in clash.stdout, clash
    assert (project / "big.bin").read_bytes() == b"new"
    assert trash("list", "/project", "--json").stdout.count(b'"path"') == 1


def test_fifos_sockets_device_nodes_and_setgid_folders(mounted: tuple[LocalCluster, Path]) -> None:
    _, mnt = mounted
    os.mkfifo(mnt / "fifo", 0o640)
    assert stat.S_ISFIFO((mnt / "fifo").lstat().st_mode)
    writer = threading.Thread(target=lambda: (mnt / "fifo").write_bytes(b"through the pipe"))
    writer.start()
    assert (mnt / "fifo").read_bytes() == b"through the pipe"  # (the kernel's pipe: local to this machine)
    writer.join()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(mnt / "agent.sock"))  # as gpg-agent and ssh's ControlMaster do in a home folder
    server.listen(1)
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(mnt / "agent.sock"))
        accepted, _ = server.accept()
        client.sendall(b"ping")
        assert accepted.recv(4) == b"ping"
        accepted.close()
    server.close()
    assert stat.S_ISSOCK((mnt / "agent.sock").lstat().st_mode)
    os.mknod(mnt / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    node = (mnt / "null").lstat()
    assert stat.S_ISCHR(node.st_mode) and node.st_rdev == os.makedev(1, 3)
    # A shared folder: chgrp + chmod g+s, and everyone's files get its group.
    team = mnt / "team"
    team.mkdir()
    os.chown(team, 0, 1234)
    os.chmod(team, 0o2777)
    (team / "file").write_bytes(b"")
    (team / "sub").mkdir()
    (team / "sub" / "deeper").write_bytes(b"")
    assert [(team / n).stat().st_gid for n in ("file", "sub", "sub/deeper")] == [1234] * 3
    assert (team / "sub").stat().st_mode & stat.S_ISGID and not (team / "file").stat().st_mode & stat.S_ISGID


def test_rename_noreplace_and_exchange_through_the_kernel(mounted: tuple[LocalCluster, Path]) -> None:
    _, mnt = mounted
    noreplace, exchange = 1, 2  # from <linux/fs.h>
    (mnt / "a").write_bytes(b"A")
    (mnt / "b").write_bytes(b"B")
    with pytest.raises(OSError) as exists:
        renameat2(mnt / "a", mnt / "b", noreplace)
    assert exists.value.errno == errno.EEXIST
    renameat2(mnt / "a", mnt / "c", noreplace)
    renameat2(mnt / "c", mnt / "b", exchange)
    assert (mnt / "b").read_bytes() == b"A" and (mnt / "c").read_bytes() == b"B"


def test_a_small_folder_lists_with_one_master_call_and_each_listing_is_fresh(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """A listing was three master calls: opendir's GetAttr, a ReadDir, and another when the
    kernel asks once more after the last entry, to learn that none follow. Now opendir fetches
    the first page (the master says ENOENT for a folder gone, as GetAttr did) and the last ask
    is answered from where the listing ended: one call for each folder `ls`, `find` or
    `git status` lists; its attributes answer the fstat that `rm -r` and `find` make of each
    folder they open. A new listing (opendir, or rewinddir) still asks the master, and shows
    another mount's new name."""
    cluster = make_cluster(master_args=["--metrics", "127.0.0.1:0"])
    mine, theirs = cluster.mount(tmp_path / "mine"), cluster.mount(tmp_path / "theirs")
    log = cluster.data_dir / "logs" / "master.log"

    def listings() -> float:
        return scrape(log).get('fusedfs_rpc_seconds_count{code="OK",method="ReadDir"}', 0.0)

    def getattrs() -> float:
        return scrape(log).get('fusedfs_rpc_seconds_count{code="OK",method="GetAttr"}', 0.0)

    (theirs / "d").mkdir()
    for name in ("a", "b", "c"):
        (theirs / "d" / name).write_bytes(b"x")
    (theirs / "empty").mkdir()
    assert (mine / "d").is_dir() and (mine / "empty").is_dir()  # (the root's lookups list it first)
    asked, attrs_asked = listings(), getattrs()
    assert sorted(os.listdir(mine / "d")) == ["a", "b", "c"] and os.listdir(mine / "empty") == []
    assert listings() - asked == 2 and getattrs() == attrs_asked
    os.stat(mine / "d")  # (the kernel knows its attributes for the next second)
    time.sleep(0.8)
    fd = os.open(mine / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        time.sleep(0.4)  # (the kernel's attributes are over, opendir's page is 0.4 s old)
        assert os.fstat(fd).st_nlink == 2 and getattrs() == attrs_asked
        assert sorted(os.listdir(fd)) == ["a", "b", "c"]
        (theirs / "d" / "new").write_bytes(b"x")
        assert sorted(os.listdir(fd)) == ["a", "b", "c", "new"]  # (listdir rewinds)
    finally:
        os.close(fd)
    assert sorted(os.listdir(mine / "d")) == ["a", "b", "c", "new"]
    assert listings() - asked == 5


def test_a_directory_of_100000_entries_lists_in_pages(make_cluster: MakeCluster, tmp_path: Path) -> None:
    """Listed in pages of 500 entries, each fetched once: the kernel takes fewer entries a
    readdir than a page has, and each readdir fetched a page of its own (258 for 100,000
    entries, where 201 hold them)."""
    cluster = make_cluster(master_args=["--metrics", "127.0.0.1:0"])
    count = 100_000
    # Seeded straight into the master's store (stopped meanwhile): creating them one by one
    # through the mount would take minutes, and listing is what is under test here.
    cluster.kill_master()
    store = SqliteStore(cluster.data_dir / "master" / "metadata.sqlite3", stat.S_IFDIR | 0o755, now_ns=0)
    with store.transaction():
        big = store.insert_inode(Inode(0, stat.S_IFDIR | 0o755, 0, 0, 2, 0, 0, 0, 0))
        store.insert_dentry(1, b"big", big)
        for i in range(count):
            ino = store.insert_inode(Inode(0, stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, 0, 0, 8 * MiB))
            store.insert_dentry(big, f"file-{i:06d}".encode(), ino)
    store.close()
    cluster.start_master()
    cluster.wait_ready(3)
    mnt = cluster.mount(tmp_path / "mnt")
    log = cluster.data_dir / "logs" / "master.log"

    def listings() -> float:
        return scrape(log).get('fusedfs_rpc_seconds_count{code="OK",method="ReadDir"}', 0.0)

    assert (mnt / "big").is_dir()
    asked = listings()
    names = os.listdir(mnt / "big")
    assert len(names) == count and len(set(names)) == count
    assert listings() - asked <= count / 500 + 2  # (opendir's page of 128, then pages of 500)
    assert sorted(names)[::25_000] == [f"file-{i:06d}" for i in range(0, count, 25_000)]
    assert int(sh("sh", "-c", f"ls -f {mnt / 'big'} | wc -l")) == count + 2  # with . and ..


def test_a_cache_disk_smaller_than_the_files_written_makes_them_wait_not_fail(
    make_cluster: MakeCluster, small_disk: SmallDisk, tmp_path: Path
) -> None:
    """The mount's --cache-dir on a disk of 16 MiB (a small root partition), the write-back limit
    far above it: a 64 MiB copy, then three writers at once, wait for uploads to make room on
    that disk, as for a full write-back cache. The copy failed with ENOSPC in 0.2 s."""
    cluster = make_cluster()
    cache = small_disk(tmp_path / "cache", 16)
    mnt = cluster.mount(tmp_path / "mnt", ["--cache-dir", str(cache), "--writeback-mib", "1024"])
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(64 * MiB))
    copy = subprocess.run(["cp", str(source), str(mnt / "copy.bin")], capture_output=True, text=True)
    assert copy.returncode == 0, copy.stderr
    assert (mnt / "copy.bin").read_bytes() == source.read_bytes()

    blocks = [os.urandom(3 * MiB) for _ in range(3)]

    def write(i: int) -> None:
        with open(mnt / f"w{i}", "wb") as out:
            for _ in range(8):
                out.write(blocks[i])

    with ThreadPoolExecutor(3) as writers:  # (a writer's error is raised here)
        list(writers.map(write, range(3)))
    for i in range(3):
        assert (mnt / f"w{i}").read_bytes() == blocks[i] * 8
    # Another program fills that disk: writes go on through the mount's memory (they failed
    # ENOSPC at once, with nothing waiting for upload to make room, and the cluster had room).
    with open(cache / "hog", "wb", buffering=0) as hog, contextlib.suppress(OSError):
        while hog.write(b"\0" * MiB):
            pass
    assert shutil.disk_usage(cache).free < MiB
    data = os.urandom(20 * MiB)
    with open(mnt / "while-full", "wb") as out:
        for start in range(0, len(data), MiB):
            out.write(data[start : start + MiB])
    assert (mnt / "while-full").read_bytes() == data
    (cache / "hog").unlink()


def test_write_back_cache_is_bounded_and_each_mount_has_its_own(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    cache = tmp_path / "cache"
    small = cluster.mount(tmp_path / "small", ["--cache-dir", str(cache), "--writeback-mib", "16"])
    other = cluster.mount(tmp_path / "other", ["--cache-dir", str(cache)])
    folders = sorted(cache.iterdir())
    assert len(folders) == 2 and all(f.name.startswith("mount-") for f in folders)

    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            for folder in cache.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    peak = max(peak, sum(f.stat().st_size for f in folder.iterdir()))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    digest = hashlib.sha256()
    try:
        with open(small / "big", "wb") as out:
            for _ in range(20):
                block = os.urandom(5 * MiB)  # not chunk-aligned: partial slots wait in the cache too
                digest.update(block)
                out.write(block)
    finally:
        done.set()
        watcher.join()
    assert 0 < peak <= 16 * MiB + 8 * MiB, f"write-back cache held {peak / MiB:.1f} MiB; the limit is 16"
    assert sha256_file(other / "big") == digest.hexdigest()
    cluster.unmount(small)
    cluster.unmount(other)
    assert list(cache.iterdir()) == []  # clean unmounts leave nothing behind


def test_fusedfs_up_runs_the_embedded_cluster_once_per_data_folder(tmp_path: Path) -> None:
    """`fusedfs up` (what the README's run command starts) mounts a working cluster and stops it
    on SIGTERM. Started again on the same folder, it says in one line that it is running, and
    leaves the first alone (it used to take the first's mount for its own, and unmount it)."""
    data, mnt, port = tmp_path / "data", tmp_path / "mnt", free_port("127.0.0.1")
    command = [sys.executable, "-m", "fusedfs", "up", "--data", str(data), "--mount", str(mnt)]
    page = f"127.0.0.1:{free_port('127.0.0.1')}"
    with subprocess.Popen(
        [*command, "--port", str(port), "--metrics", page], stdout=subprocess.PIPE, text=True
    ) as first:
        try:
            assert first.stdout is not None and "fusedfs is running" in first.stdout.readline()
            assert os.path.ismount(mnt)
            with urllib.request.urlopen(f"http://{page}/", timeout=10) as answer:  # (the status page)
                assert f"127.0.0.1:{port + 1}" in answer.read().decode()
            (mnt / "hello.txt").write_text("hello")
            for again in ([*command, "--port", str(port)], [*command, "--port", str(port + 10)]):
                second = subprocess.run(again, capture_output=True, text=True, timeout=60)
                assert second.returncode == 1 and second.stderr.count("\n") == 1, second.stderr
                assert "already running" in second.stderr, second.stderr
                assert (mnt / "hello.txt").read_text() == "hello"  # the first's mount, still there
        finally:
            first.terminate()
            assert first.wait(timeout=60) == 0
    assert not os.path.ismount(mnt)


def test_a_mount_whose_master_does_not_answer_is_not_left_mounted(tmp_path: Path) -> None:
    """No master answers: `fusedfs mount` fails after --wait in one line, with and without
    --daemon, and nothing is left mounted (it mounted, answered EIO to everything, and --daemon
    reported a failure while the mount and its process stayed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    command = [sys.executable, "-m", "fusedfs", "mount", f"127.0.0.1:{free_port('127.0.0.1')}", str(mnt)]
    for extra in ([], ["--daemon"]):
        run = subprocess.run(
            [*command, "--wait", "2", "--cache-dir", str(tmp_path / "cache"), *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
        assert ("did not answer" if not extra else "mounting") in run.stderr, run.stderr
        assert not os.path.ismount(mnt)
    assert "not mounted: master" in (tmp_path / "cache" / "mount.log").read_text()


def test_sigterm_saves_what_an_open_file_holds_and_daemon_mode(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    mnt = cluster.mount(tmp_path / "mnt")
    data = os.urandom(20 * MiB + 123)
    writer = open(mnt / "unclosed", "wb")  # noqa: SIM115 (kept open across the unmount on purpose)
    writer.write(data)
    writer.flush()  # into the mount's write-back cache; close() never comes
    cluster.unmount(mnt)  # SIGTERM: saves open files, then unmounts
    assert not os.path.ismount(mnt)
    with contextlib.suppress(OSError):
        writer.close()
    # --daemon returns once mounted; fusermount3 -u ends it.
    daemon_mnt = tmp_path / "daemon"
    daemon_mnt.mkdir()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusedfs",
            "mount",
            cluster.master_address,
            str(daemon_mnt),
            "--daemon",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        assert run.returncode == 0 and os.path.ismount(daemon_mnt), run.stderr
        assert sha256_file(daemon_mnt / "unclosed") == hashlib.sha256(data).hexdigest()
    finally:
        subprocess.run(["fusermount3", "-u", str(daemon_mnt)], check=False)
    deadline = time.monotonic() + 10
    while os.path.ismount(daemon_mnt) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.ismount(daemon_mnt)


def test_mounting_again_where_a_mount_died_just_works(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    mnt = cluster.mount(tmp_path / "mnt")
    (mnt / "kept").write_bytes(b"before the crash")
    cluster.mounts[mnt].kill()  # the mount's process dies; the kernel's mount stays, dead
    cluster.mounts[mnt].wait()
    with pytest.raises(OSError) as dead:
        os.stat(mnt)
    assert dead.value.errno == errno.ENOTCONN  # "Transport endpoint is not connected"
    command = [sys.executable, "-m", "fusedfs", "mount", cluster.master_address, str(mnt), "--daemon"]
    run = subprocess.run(
        [*command, "--cache-dir", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        assert run.returncode == 0, run.stderr
        assert (mnt / "kept").read_bytes() == b"before the crash"
        assert "a fusedfs mount whose process ended is still there" in run.stderr
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)


@pytest.fixture
def mount_helper() -> Iterator[Path]:
    """/sbin/mount.fusedfs, the helper mount(8) runs for `-t fusedfs`: ours for the test."""
    helper = Path("/sbin/mount.fusedfs")
    ours = Path(sys.executable).parent / "mount.fusedfs"  # installed with the package
    assert ours.exists(), f"{ours} missing: reinstall the package (pip install -e .)"
    if helper.is_symlink() or helper.exists():
        assert helper.resolve() == ours.resolve(), f"{helper} is not this checkout's helper"
        yield helper
        return
    helper.symlink_to(ours)
    try:
        yield helper
    finally:
        helper.unlink()


def test_mount_t_fusedfs_as_from_fstab(make_cluster: MakeCluster, tmp_path: Path, mount_helper: Path) -> None:
    cluster = make_cluster()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def mount(options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["mount", "-t", "fusedfs", cluster.master_address, str(mnt), "-o", options],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    def umount() -> None:
        daemons = [p for p in Path("/proc").glob("[0-9]*") if str(mnt).encode() in _cmdline(p)]
        assert len(daemons) == 1, daemons  # the mount went to the background, as mount(8) wants
        subprocess.run(["umount", str(mnt)], check=True, timeout=60)
        assert not os.path.ismount(mnt)
        deadline = time.monotonic() + 10
        while daemons[0].exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not daemons[0].exists(), "the mount's process outlived umount"

    def options() -> set[str]:
        line = next(e.split() for e in Path("/proc/mounts").read_text().splitlines() if e.split()[1] == str(mnt))
        assert line[2] == "fuse.fusedfs", line
        return set(line[3].split(","))

    # An fstab line's options: mount(8)'s own, the mount's own, the kernel's.
    run = mount("defaults,_netdev,nofail,x-systemd.automount,cache-mib=16,wait=5,noexec,nosuid,noatime")
    try:
        assert run.returncode == 0 and os.path.ismount(mnt), run.stderr
        assert options() >= {"noexec", "nosuid", "noatime", "rw"}
        (mnt / "f").write_bytes(b"through mount(8)")
        assert (mnt / "f").read_bytes() == b"through mount(8)"
    finally:
        umount()
    # Read-only: the kernel refuses writes; the last of two opposites wins.
    run = mount("rw,ro")
    try:
        assert run.returncode == 0, run.stderr
        assert options() >= {"ro", "noatime"}  # (reads do not update atime, and it says so unasked)
        assert (mnt / "f").read_bytes() == b"through mount(8)"
        with pytest.raises(OSError) as error:
            (mnt / "g").write_bytes(b"no")
        assert error.value.errno == errno.EROFS
    finally:
        umount()
    # A mistake: one readable line, nothing mounted.
    run = mount("cache-mb=16")
    assert run.returncode != 0 and not os.path.ismount(mnt)
    assert run.stderr.count("\n") == 1 and "unknown mount option 'cache-mb=16'" in run.stderr, run.stderr


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def scrape(log: Path) -> dict[str, float]:
    """The metrics a process serves at the address its log names: {'name{labels}': value}."""
    found = re.findall(r"metrics at (http://\S+/metrics)", log.read_text())
    assert found, f"no metrics address in {log}"
    with urllib.request.urlopen(found[-1], timeout=10) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_status_lists_each_mount_with_what_it_has_open_and_not_yet_saved(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    """As MooseFS lists its connected clients and JuiceFS its sessions: which machines have the
    cluster mounted where, and which of them holds written data that is not on the cluster yet."""
    cluster = make_cluster()
    mnt = cluster.mount(tmp_path / "mnt")
    other = cluster.mount(tmp_path / "other")

    def mounts() -> dict[str, dict[str, int | str | float]]:
        shown = json.loads(run_cli("client", cluster.master_address, "status", "--json").stdout)
        return {m["mount_point"]: m for m in shown["connected_mounts"]}

    with open(mnt / "f", "wb", buffering=0) as f:
        f.write(b"x" * 100_000)  # (held by the mount until the close)
        # (announced once a second, and at once when a file is opened: before the write)
        wait_for(lambda: mounts()[str(mnt.resolve())]["writeback_bytes"] == 100_000, 10, "the unsaved bytes shown")
        here = mounts()[str(mnt.resolve())]
        assert here["open_files"] == 1 and here["failed_saves"] == 0
        assert here["host"] == socket.gethostname() and here["pid"] == cluster.mounts[mnt].pid
        assert 0 < time.time() - int(here["mounted_ns"]) / 1e9 < 120 and here["version"]
        assert mounts()[str(other.resolve())]["open_files"] == 0
    wait_for(lambda: mounts()[str(mnt.resolve())]["writeback_bytes"] == 0, 10, "the saved file announced")
    printed = run_cli("client", cluster.master_address, "status").stdout.decode()
    assert f"{socket.gethostname()}:{mnt.resolve()}" in printed and "mounts: 2" in printed
    cluster.unmount(other)
    wait_for(lambda: list(mounts()) == [str(mnt.resolve())], 10, "the unmounted one gone from the list")


def test_each_process_serves_its_metrics(make_cluster: MakeCluster, tmp_path: Path) -> None:
    metrics = ["--metrics", "127.0.0.1:0"]
    cluster = make_cluster(master_args=metrics, keeper_args=metrics)
    mnt = cluster.mount(tmp_path / "mnt", metrics)
    logs = cluster.data_dir / "logs"
    data = os.urandom(3 * MiB + 5)
    (mnt / "f").write_bytes(data)
    assert (mnt / "f").read_bytes() == data
    (mnt / "d").mkdir()
    (mnt / "d" / "x").touch()
    with pytest.raises(OSError):
        (mnt / "d").rmdir()

    df = os.statvfs(mnt)  # (files and folders counted: root, f, d, d/x)
    assert df.f_files - df.f_ffree == 4 and df.f_blocks > df.f_bfree > 0
    mount = scrape(logs / "mount-mnt.log")
    assert mount['fusedfs_mount_bytes_total{direction="written"}'] == len(data)
    assert mount['fusedfs_mount_bytes_total{direction="read"}'] == len(data)
    assert mount['fusedfs_mount_request_seconds_count{op="create"}'] == 2
    assert mount['fusedfs_mount_request_seconds_count{op="write"}'] >= 1
    assert mount['fusedfs_mount_errors_total{errno="ENOTEMPTY",op="rmdir"}'] == 1
    assert mount["fusedfs_mount_writeback_bytes"] == 0 and mount["fusedfs_mount_open_files"] == 0
    assert mount['fusedfs_mount_uploads_total{how="whole"}'] == 1

    wait_for(lambda: scrape(logs / "master.log")['fusedfs_chunks{health="total"}'] == 1, 10, "the chunk counted")
    master = scrape(logs / "master.log")
    assert master["fusedfs_files"] == 2 and master["fusedfs_directories"] == 2 and master["fusedfs_goal"] == 3
    assert master["fusedfs_mounts"] == 1
    assert master['fusedfs_chunks{health="lost"}'] == 0
    alive = [v for k, v in master.items() if k.startswith("fusedfs_keeper_alive{")]
    assert alive == [1.0, 1.0, 1.0]
    assert master['fusedfs_rpc_seconds_count{code="OK",method="CreateFile"}'] == 2
    refused = [k for k in master if k.startswith("fusedfs_rpc_seconds_count{") and 'method="RemoveDir"' in k]
    assert len(refused) == 1 and 'code="OK"' not in refused[0] and master[refused[0]] == 1
    # The master's status page: what `status` prints, in a browser.
    [address] = re.findall(r"metrics at (http://\S+)/metrics", (logs / "master.log").read_text())
    with urllib.request.urlopen(address + "/", timeout=10) as answer:
        page = answer.read().decode()
    assert answer.headers["Content-Type"].startswith("text/html") and 'http-equiv="refresh"' in page
    printed = run_cli("client", cluster.master_address, "status").stdout.decode()
    for port in cluster.keeper_ports:
        assert f"127.0.0.1:{port}" in page and f"127.0.0.1:{port}" in printed
    assert "chunks: 1 in files, goal 3 copies: 0 under-replicated" in page and printed.count("\n") > 5
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(address + "/nothing", timeout=10)
    assert missing.value.code == 404

    keepers = [scrape(logs / f"keeper{i}.log") for i in range(3)]
    assert all(k["fusedfs_keeper_capacity_bytes"] > k["fusedfs_keeper_free_bytes"] > 0 for k in keepers)
    writes = sum(
        v for k in keepers for name, v in k.items() if name.startswith("fusedfs_rpc_seconds_count{") and "Write" in name
    )
    assert writes >= 1
    with open(mnt / "f", "r+b") as f:  # a few bytes into the 3 MiB chunk: only they are sent
        f.seek(MiB)
        f.write(b"changed")
    assert scrape(logs / "mount-mnt.log")['fusedfs_mount_uploads_total{how="derived"}'] == 1

    # A keeper that dies shows as the keeper whose chunk writes failed (the write goes elsewhere).
    mount = scrape(logs / "mount-mnt.log")
    assert not [k for k in mount if k.startswith("fusedfs_client_keeper_failures_total{")]
    cluster.kill_keeper(0)
    (mnt / "g").write_bytes(data)  # (within the 3 s before the master counts it dead: it is in the pipeline)
    failed = scrape(logs / "mount-mnt.log")
    dead = cluster.keeper_address(0)
    assert sum(v for k, v in failed.items() if k.startswith("fusedfs_client_keeper_failures_total{") and dead in k) >= 1
