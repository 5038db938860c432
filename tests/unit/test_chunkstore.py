"""The keeper's on-disk chunks: atomic writes, verified reads, hostile ids, crash leftovers."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from fusedfs.chunkfile import CorruptChunk, chunk_path, data_offset
from fusedfs.chunks import BLOCK_SIZE, crc32c
from fusedfs.errors import FsError
from fusedfs.keeper.chunkstore import ChunkStore, Patch

ID = "00000000000000a1"


def store_chunk(store: ChunkStore, data: bytes, piece: int = 100_000, chunk_id: str = ID) -> None:
    writer = store.begin_write(chunk_id, len(data), crc32c(data))
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
    writer.commit()


def test_roundtrip_with_unaligned_pieces_and_partial_reads(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = os.urandom(3 * BLOCK_SIZE * 7 + 123)
    store_chunk(store, data, piece=77_777)
    assert b"".join(p.data for p in store.read(ID)) == data
    pieces = list(store.read(ID, offset=BLOCK_SIZE + 5, length=10))
    assert [p.offset for p in pieces] == [BLOCK_SIZE]  # block-aligned, with that block's checksum
    assert pieces[0].data == data[BLOCK_SIZE : 2 * BLOCK_SIZE] and pieces[0].block_crc32c == [crc32c(pieces[0].data)]
    assert store.verify(ID) and store.open_chunk(ID)[0].crc == crc32c(data)
    assert store.verify(ID, (len(data), crc32c(data)))  # what the master knows it by ...
    assert not store.verify(ID, (len(data), crc32c(data) ^ 1))  # ... and another chunk's
    assert ChunkStore(tmp_path).chunk_ids() == [ID]  # found again after a restart


def test_bad_length_or_checksum_leaves_nothing(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    writer = store.begin_write(ID, 10, crc32c(b"0123456789") ^ 1)
    writer.write(b"0123456789")
    with pytest.raises(FsError) as bad_crc:
        writer.commit()
    assert bad_crc.value.errno == errno.EINVAL
    writer = store.begin_write(ID, 10, 0)
    writer.write(b"short")
    with pytest.raises(FsError):
        writer.commit()
    writer = store.begin_write(ID, 4, 0)
    with pytest.raises(FsError):
        writer.write(b"too long")
    writer.abort()  # the keeper's servicer aborts a writer whose write failed
    assert not store.has(ID)
    assert not list((tmp_path / "tmp").iterdir())  # every failed write removed its temporary file


def test_flipped_byte_is_caught_and_leftovers_are_cleaned(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = os.urandom(5 * BLOCK_SIZE)
    store_chunk(store, data)
    path = next((tmp_path / "chunks").glob("*/*"))
    raw = bytearray(path.read_bytes())
    raw[-3 * BLOCK_SIZE] ^= 0x40
    path.write_bytes(raw)
    assert not store.verify(ID)
    with pytest.raises(CorruptChunk):
        list(store.read(ID))
    assert len(list(store.read(ID, 0, BLOCK_SIZE))) == 1  # blocks before the damage still read
    (tmp_path / "tmp" / f"{ID}.deadbeef").write_bytes(b"half a chunk")
    assert not list((ChunkStore(tmp_path).root / "tmp").iterdir())


@pytest.mark.parametrize("bad", ["../../etc/passwd", "AB", "", "00000000000000A1", "0" * 17, "0000000000000/a1"])
def test_hostile_chunk_ids_are_refused(tmp_path: Path, bad: str) -> None:
    store = ChunkStore(tmp_path)
    for call in (lambda: store.begin_write(bad, 1, 0), lambda: list(store.read(bad)), lambda: store.delete(bad)):
        with pytest.raises(FsError) as info:
            call()
        assert info.value.errno == errno.EINVAL


def test_full_disk_is_enospc(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path, reserve_bytes=1 << 62)
    with pytest.raises(FsError) as info:
        store.begin_write(ID, 10, 0)
    assert info.value.errno == errno.ENOSPC


def test_damaged_copies_give_way_to_new_chunks_oldest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ChunkStore(tmp_path)
    for n in (1, 2, 3):
        store_chunk(store, os.urandom(100_000), chunk_id=f"{n:016x}")
        monkeypatch.setattr(time, "time", lambda n=n: 1_000_000.0 + n)
        store.set_aside(f"{n:016x}", "damaged (test)")
    monkeypatch.undo()
    each = store._damaged()[0][2]
    assert each >= 100_000 and store.damaged_copies() == 3
    # A disk with 50,000 bytes free, and what deleting damaged copies frees.
    monkeypatch.setattr(store, "_disk_free", lambda: 50_000 + (3 - store.damaged_copies()) * each)
    assert store.free_bytes() == 50_000 + 3 * each  # (what the master places chunks by)
    store.begin_write(f"{4:016x}", 40_000, None).abort()  # fits: nothing deleted
    assert store.damaged_copies() == 3
    with pytest.raises(FsError) as info:  # would not fit even with all three gone: all kept
        store.begin_write(f"{4:016x}", 50_000 + 3 * each, None)
    assert info.value.errno == errno.ENOSPC and store.damaged_copies() == 3
    store.begin_write(f"{4:016x}", each, None).abort()  # the oldest gives way
    assert [path.name for _, path, _ in store._damaged()] == [f"{2:016x}.1000002", f"{3:016x}.1000003"]


def test_out_of_inodes_when_naming_the_chunk_is_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tmpfs counts a hard link as an inode: the link that names a written chunk can be the step
    that runs out (a CI run saw gRPC UNKNOWN and a traceback there); nothing is left behind."""
    store = ChunkStore(tmp_path)

    def no_inodes(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_inodes)
    with pytest.raises(FsError) as info:
        store_chunk(store, b"data")
    assert info.value.errno == errno.ENOSPC
    assert not store.has(ID) and not list((tmp_path / "tmp").iterdir())


def test_change_log_for_heartbeats(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    store_chunk(store, b"one", chunk_id="0000000000000001")
    store_chunk(store, b"two", chunk_id="0000000000000002")
    store.delete("0000000000000001")
    assert store.drain_changes() == (["0000000000000002"], ["0000000000000001"])
    assert store.drain_changes() == ([], [])
    store.restore_changes(["0000000000000002"], ["0000000000000001"])  # the heartbeat failed
    assert store.drain_changes() == (["0000000000000002"], ["0000000000000001"])
    store_chunk(store, b"three", chunk_id="0000000000000003")
    assert store.full_report() == ["0000000000000002", "0000000000000003"]
    assert store.drain_changes() == ([], [])  # a full report supersedes the log


def test_a_stored_chunk_is_never_replaced(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    store_chunk(store, b"original")
    with pytest.raises(FsError) as exists:
        store_chunk(store, b"forgery!")
    assert exists.value.errno == errno.EEXIST
    assert b"".join(p.data for p in store.read(ID)) == b"original"


def test_a_restart_forgets_torn_chunk_files_and_tolerates_strays(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    store_chunk(store, os.urandom(300_000))
    torn_id = "00000000000000b2"
    store_chunk(store, os.urandom(300_000), chunk_id=torn_id)
    torn = store._path(torn_id)
    os.truncate(torn, torn.stat().st_size - 1000)  # as a crash or a failing disk can leave it
    (tmp_path / "chunks" / "README").write_text("not a chunk folder")
    assert ChunkStore(tmp_path).chunk_ids() == [ID]
    assert not torn.exists()


def test_a_short_write_on_a_filling_disk_stores_no_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fills up midway makes pwrite store fewer bytes than given, without an error;
    the next write then fails. A chunk cut short so must not be committed (a CI run found one,
    its header promising more bytes than the file held)."""
    store = ChunkStore(tmp_path)
    real_pwrite = os.pwrite
    room = [100_000]  # bytes the disk still takes

    def filling_pwrite(fd: int, data: bytes, offset: int) -> int:
        if room[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = real_pwrite(fd, bytes(memoryview(data)[: room[0]]), offset)
        room[0] -= written
        return written

    monkeypatch.setattr(os, "pwrite", filling_pwrite)
    data = os.urandom(300_000)
    writer = store.begin_write(ID, len(data), crc32c(data))
    with pytest.raises(FsError) as info:
        writer.write(data[:150_000])  # (the keeper's service aborts a write that failed)
    writer.abort()
    assert info.value.errno == errno.ENOSPC
    assert not store.has(ID) and not list((tmp_path / "tmp").iterdir())


def _patch(offset: int, data: bytes) -> Patch:
    return Patch(offset, data, crc32c(data))


def test_a_derived_chunk_is_its_base_with_the_patches_and_zeros_past_what_is_kept(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    base = os.urandom(3 * BLOCK_SIZE + 100)
    store_chunk(store, base)
    new_id, expected = "00000000000000b2", bytearray(base[:BLOCK_SIZE]) + bytes(3 * BLOCK_SIZE)
    expected[10:13] = b"abc"
    expected[BLOCK_SIZE - 2 : BLOCK_SIZE + 2] = b"wxyz"  # across a block boundary
    expected[-5:] = b"!" * 5
    patches = [_patch(10, b"abc"), _patch(BLOCK_SIZE - 2, b"wxyz"), _patch(len(expected) - 5, b"!" * 5)]
    crc = store.derive(new_id, len(expected), ID, BLOCK_SIZE, patches)  # the base kept up to a truncate
    assert crc == crc32c(bytes(expected)) and store.verify(new_id)
    assert b"".join(p.data for p in store.read(new_id)) == expected
    assert b"".join(p.data for p in store.read(ID)) == base  # the base is left as it was


def test_deriving_refuses_damaged_patches_and_bases_and_leaves_nothing(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    base = os.urandom(2 * BLOCK_SIZE)
    store_chunk(store, base)
    new_id = "00000000000000b2"
    with pytest.raises(FsError) as e:
        store.derive(new_id, len(base), ID, len(base), [Patch(5, b"abc", crc32c(b"abd"))])
    assert e.value.errno == errno.EINVAL and "checksum" in str(e.value)
    with pytest.raises(FsError) as e:
        store.derive(new_id, len(base), ID, len(base), [_patch(len(base) - 1, b"ab")])
    assert e.value.errno == errno.EINVAL
    with pytest.raises(FsError) as e:
        store.derive(new_id, len(base), "00000000000000c3", len(base), [])
    assert e.value.errno == errno.ENOENT
    path = chunk_path(tmp_path, ID)
    with open(path, "r+b") as f:  # bit rot in the base's second block
        f.seek(data_offset(len(base)) + BLOCK_SIZE + 7)
        f.write(b"\xff")
    with pytest.raises(CorruptChunk):
        store.derive(new_id, len(base), ID, len(base), [_patch(0, b"x")])
    assert not store.has(new_id) and not list((tmp_path / "tmp").iterdir())


def test_a_linked_chunk_is_a_second_name_of_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ChunkStore(tmp_path)
    data = os.urandom(2 * BLOCK_SIZE + 7)
    store_chunk(store, data)
    store.drain_changes()
    other, third, missing = "00000000000000b2", "00000000000000c3", "00000000000000d4"
    store_chunk(store, b"already here", chunk_id=third)
    # A source not held is skipped, a chunk already stored is never replaced, one asked twice made once.
    assert store.link([(other, ID), (other, ID), (third, ID), ("00000000000000e5", missing)]) == [other]
    assert b"".join(p.data for p in store.read(other)) == data and store.verify(other)
    assert b"".join(p.data for p in store.read(third)) == b"already here"
    assert os.stat(chunk_path(tmp_path, other)).st_ino == os.stat(chunk_path(tmp_path, ID)).st_ino  # (no space)
    assert sorted(store.drain_changes()[0]) == sorted([other, third])  # (the master hears of it)
    store.delete(ID)  # the source goes: the link stays whole
    assert b"".join(p.data for p in ChunkStore(tmp_path).read(other)) == data
    with pytest.raises(FsError) as bad:
        store.link([("not-an-id", other)])
    assert bad.value.errno == errno.EINVAL

    # A name that cannot be made durable is taken back: nothing is reported stored.
    def failing(path: Path) -> None:
        raise OSError(errno.EIO, "fsync failed")

    monkeypatch.setattr("fusedfs.keeper.chunkstore.fsync_dir", failing)
    with pytest.raises(FsError):
        store.link([(ID, other)])
    assert not store.has(ID) and not chunk_path(tmp_path, ID).exists()
