"""The write-back cache: slot files, holes, truncation, accounting, the limit."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fusedfs.datadir import lock_data_dir
from fusedfs.errors import FsError
from fusedfs.mount.writeback import LEFT_AFTER, MAX_PATCH_RANGES, WriteBack, gaps, left_behind, merged
from fusedfs.rpc import master_pb2 as mp


@pytest.mark.parametrize("memory_slot_bytes", [0, 1000])  # slots in files, slots in memory
def test_slots_hold_data_with_holes_and_count_toward_the_limit(tmp_path: Path, memory_slot_bytes: int) -> None:
    cache = WriteBack(tmp_path / "mount-1", limit_bytes=100, memory_slot_bytes=memory_slot_bytes)
    a = cache.create(owner=None, inode=7, index=0, initial=b"abc")
    cache.write(a, 10, b"xyz")  # leaves a hole
    assert cache.read(a, 0, 100) == b"abc" + bytes(7) + b"xyz"
    assert cache.used == 13 and a.version == 2
    assert not cache.full(80) and cache.full(90)
    cache.truncate(a, 5)
    cache.write(a, 8, b"!")  # what the truncate cut reads as zeros again
    assert cache.read(a, 0, 100) == b"abc\0\0\0\0\0!"
    assert cache.used == 9
    b = cache.create(owner=None, inode=8, index=3, initial=b"")
    assert cache.oldest_idle() is a
    a.uploading = True
    assert cache.oldest_idle() is b
    cache.drop(a)  # while an upload reads it: the file stays open until the upload ends
    assert cache.used == 0 and a.dropped and not (tmp_path / "mount-1" / "7-0").exists()
    cache.upload_ended(a)
    assert not cache.close()  # b is still waiting
    cache.drop(b)
    assert cache.close() and not (tmp_path / "mount-1").exists()


def test_an_empty_cache_never_blocks_a_write(tmp_path: Path) -> None:
    cache = WriteBack(tmp_path / "m", limit_bytes=10)
    assert not cache.full(1000)  # one chunk always fits, whatever the limit


def test_a_slot_moves_from_memory_to_its_file_when_it_grows(tmp_path: Path) -> None:
    cache = WriteBack(tmp_path / "m", limit_bytes=1 << 20, memory_slot_bytes=8, memory_bytes=12)
    small = cache.create(owner=None, inode=1, index=0, initial=b"1234")
    assert small.memory is not None and not (tmp_path / "m" / "1-0").exists()
    cache.write(small, 6, b"56")  # within the slot limit: still in memory, with a hole
    other = cache.create(owner=None, inode=2, index=0, initial=b"abcdefgh")  # past the mount's memory
    assert other.memory is None and cache.read(other, 0, 99) == b"abcdefgh"
    cache.write(small, 7, b"789")  # past the slot limit: to its file, contents kept
    assert small.memory is None and (tmp_path / "m" / "1-0").exists()
    assert cache.read(small, 0, 99) == b"1234\0\0" + b"5789"
    assert cache.in_memory == 0 and cache.used == 18
    cache.drop(small)
    cache.drop(other)
    assert cache.used == 0 and cache.close()


def test_a_full_cache_disk_keeps_slots_in_memory_while_it_lasts_then_is_enospc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program filled the cache's disk: a slot that would move to its file stays in
    memory while the mount's memory for slots lasts (a write failed ENOSPC though nothing was
    waiting for upload to make room, and the cluster had room); past that, ENOSPC (the writer
    waits for uploads then) and the slot is kept as it was."""
    cache = WriteBack(tmp_path / "m", limit_bytes=1 << 20, memory_slot_bytes=8, memory_bytes=16)
    slot = cache.create(owner=None, inode=7, index=0, initial=b"abc")
    real_pwrite = os.pwrite

    def full_disk(fd: int, data: bytes, offset: int) -> int:  # takes 2 bytes, then no more
        if len(data) > 2:
            return real_pwrite(fd, bytes(memoryview(data)[:2]), offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full_disk)
    monkeypatch.setattr(cache, "disk_room", lambda: 0)
    cache.write(slot, 3, b"0123456789")  # past memory_slot_bytes: it would move to its file
    assert bytes(slot.memory or b"") == b"abc0123456789" and cache.in_memory == cache.used == 13
    with pytest.raises(FsError) as info:
        cache.write(slot, 13, b"xyz0")  # past the mount's memory for slots too
    assert info.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert cache.read(slot, 0, 100) == b"abc0123456789"  # still in memory, as it was
    assert not list((tmp_path / "m").iterdir())


def test_folders_of_mounts_that_did_not_unmount_are_found_and_empty_ones_removed(tmp_path: Path) -> None:
    own = tmp_path / "mount-own"
    live = tmp_path / "mount-live"  # another mount on this machine, running
    crashed = tmp_path / "mount-crashed"  # one killed with unsaved writes
    empty = tmp_path / "mount-empty"  # one killed with nothing unsaved
    fresh = tmp_path / "mount-fresh"  # one that may be starting: not yet locked
    held = [lock_data_dir(folder, "mount") for folder in (own, live)]
    for folder in (crashed, empty, fresh):
        lock_data_dir(folder, "mount").close()
    (crashed / "12-0").write_bytes(b"x" * 5000)
    (crashed / "12-3").write_bytes(b"y")
    (fresh / "13-0").write_bytes(b"z")
    old = os.stat(crashed).st_mtime - 2 * LEFT_AFTER
    for folder in (own, live, crashed, empty):
        os.utime(folder, (old, old))
    [(folder, files, size)] = left_behind(tmp_path, own)
    assert folder == crashed and files == 2 and size >= 5000
    assert not empty.exists() and fresh.exists() and live.exists()
    for lock in held:
        lock.close()


def test_ranges_merge_when_they_overlap_or_touch() -> None:
    ranges = merged([], 10, 20)
    ranges = merged(ranges, 30, 40)
    assert ranges == [(10, 20), (30, 40)]
    assert merged(ranges, 20, 25) == [(10, 25), (30, 40)]  # touching
    assert merged(ranges, 0, 5) == [(0, 5), (10, 20), (30, 40)]
    assert merged(ranges, 15, 35) == [(10, 40)]


def test_a_slot_made_from_a_chunk_uploads_as_patches_while_they_are_few(tmp_path: Path) -> None:
    cache = WriteBack(tmp_path / "mount-1", limit_bytes=1 << 20, memory_slot_bytes=0)
    base = bytes(range(256)) * 4
    slot = cache.create(owner=None, inode=7, index=0, initial=base, base="00000000000000a1")
    assert cache.patches(slot, slot.length, limit=100) == ("00000000000000a1", 1024, [])
    cache.write(slot, 10, b"abc")
    cache.write(slot, 13, b"de")  # joins the range before it
    cache.write(slot, 1030, b"xy")  # past the base's end: the chunk grows
    assert cache.patches(slot, slot.length, limit=100) == ("00000000000000a1", 1024, [(10, b"abcde"), (1030, b"xy")])
    assert cache.patches(slot, 1031, limit=100) == ("00000000000000a1", 1024, [(10, b"abcde"), (1030, b"x")])
    assert cache.patches(slot, slot.length, limit=6) is None  # too many bytes changed: uploaded whole
    cache.truncate(slot, 12)  # the base counts up to the cut only; a write past it leaves zeros between
    cache.write(slot, 20, b"z")
    assert cache.patches(slot, slot.length, limit=100) == ("00000000000000a1", 12, [(10, b"ab"), (20, b"z")])
    assert cache.read(slot, 0, 100) == base[:10] + b"ab" + bytes(8) + b"z"
    for offset in range(30, 30 + 2 * (MAX_PATCH_RANGES + 1), 2):  # too many ranges to track: whole
        cache.write(slot, offset, b"-")
    assert slot.base is None and cache.patches(slot, slot.length, limit=1 << 20) is None
    fresh = cache.create(owner=None, inode=8, index=0, initial=b"")  # no chunk to start from
    cache.write(fresh, 0, b"a")
    assert cache.patches(fresh, fresh.length, limit=100) is None


@pytest.mark.parametrize("memory_slot_bytes", [0, 1000])  # slots in files, slots in memory
def test_an_uploaded_slot_is_kept_as_the_chunk_it_made_until_room_is_needed(
    tmp_path: Path, memory_slot_bytes: int
) -> None:
    folder = tmp_path / "mount-1"
    cache = WriteBack(folder, limit_bytes=100, memory_slot_bytes=memory_slot_bytes)
    a = cache.create(owner=None, inode=7, index=0, initial=b"0123456789")
    b = cache.create(owner=None, inode=8, index=0, initial=b"b")
    assert cache.keep_saved(a, mp.ChunkRef(chunk_id="00000000000000aa"))
    assert a.saved and (a.base, a.base_kept, a.changed) == ("00000000000000aa", 10, [])
    assert cache.read(a, 0, 100) == b"0123456789" and cache.used == 11  # still there, still counted
    if not memory_slot_bytes:  # its file is named apart: not data a crash leaves unsaved
        assert not (folder / "7-0").exists() and (folder / "7-0.saved").exists()
    assert cache.oldest_idle() is a  # dropped first when room is needed (nothing to upload)
    with pytest.raises(AssertionError):
        cache.write(a, 0, b"x")  # (written again only once reused)
    assert cache.reuse(a) and not a.saved
    cache.write(a, 2, b"xy")
    assert a.changed == [(2, 4)] and cache.patches(a, 10, limit=100) == ("00000000000000aa", 10, [(2, b"xy")])
    assert cache.oldest_idle() is a  # (oldest)
    assert cache.keep_saved(a, mp.ChunkRef(chunk_id="00000000000000ab")) and cache.keep_saved(
        b, mp.ChunkRef(chunk_id="00000000000000bb")
    )
    lock = lock_data_dir(folder, "mount")  # held while the mount lives
    assert left_behind(tmp_path, tmp_path / "other") == []
    os.utime(folder, (0, 0))
    lock.close()  # the mount was killed: saved slots are no data left behind
    assert left_behind(tmp_path, tmp_path / "other") == [] and not folder.exists()


def test_a_cache_holding_saved_slots_alone_closes_clean(tmp_path: Path) -> None:
    cache = WriteBack(tmp_path / "mount-1", limit_bytes=100, memory_slot_bytes=0)
    a = cache.create(owner=None, inode=7, index=0, initial=b"abc")
    assert cache.keep_saved(a, mp.ChunkRef(chunk_id="00000000000000aa"))
    assert cache.close() and not (tmp_path / "mount-1").exists()


def test_gaps_are_what_ranges_leave_uncovered() -> None:
    ranges = [(10, 20), (30, 40)]
    assert gaps(ranges, 0, 50) == [(0, 10), (20, 30), (40, 50)]
    assert gaps(ranges, 12, 35) == [(20, 30)]
    assert gaps(ranges, 10, 20) == [] and gaps([], 5, 8) == [(5, 8)] and gaps(ranges, 7, 7) == []


def test_an_unfetched_slot_holds_what_was_written_until_filled_from_its_chunk(tmp_path: Path) -> None:
    cache = WriteBack(tmp_path / "mount-1", limit_bytes=1 << 30)
    chunk = bytes(range(256)) * 4096  # 1 MiB
    ref = mp.ChunkRef(index=2, chunk_id="00000000000000c1", length=len(chunk))
    slot = cache.create_unfetched(owner=None, inode=7, index=2, chunk=ref, length=len(chunk))
    assert (slot.length, slot.base, slot.base_kept, cache.used, cache.in_memory) == (
        len(chunk),
        ref.chunk_id,
        len(chunk),
        len(chunk),
        0,
    )
    assert os.fstat(slot.fd).st_blocks == 0  # nothing of the chunk fetched, nor stored
    cache.write(slot, 1000, b"abc")
    cache.write(slot, len(chunk) - 2, b"xyz")  # past the chunk's end: it grows
    assert cache.unfilled(slot, 0, 2000) == [(0, 1000), (1003, 2000)]
    assert cache.unfilled(slot, 1000, 1003) == [] and cache.read(slot, 1000, 1003) == b"abc"
    with pytest.raises(AssertionError):  # zeros in place of the chunk's bytes never pass
        cache.read(slot, 999, 1003)
    pieces = [(990, 1000, chunk[990:1000]), (1003, 1010, chunk[1003:1010]), (len(chunk) - 5, len(chunk), chunk[-5:])]
    assert cache.read(slot, 990, 1010, pieces) == chunk[990:1000] + b"abc" + chunk[1003:1010]
    assert cache.read(slot, len(chunk) - 5, len(chunk) + 1, pieces) == chunk[-5:-2] + b"xyz"
    with pytest.raises(AssertionError):
        cache.read(slot, 985, 1010, pieces)  # (one byte short)
    assert cache.patches(slot, slot.length, limit=100) == (
        ref.chunk_id,
        len(chunk),
        [(1000, b"abc"), (len(chunk) - 2, b"xyz")],
    )
    version = slot.version
    fetched: list[tuple[int, int]] = []

    def data(start: int, end: int) -> bytes:
        fetched.append((start, end))
        return chunk[start:end]

    cache.fill(slot, ref, data)
    assert fetched == [(0, 1000), (1003, len(chunk) - 2)]  # what was written stays as written
    assert slot.unfetched is None and slot.version == version  # (no reader sees a change)
    expected = chunk[:1000] + b"abc" + chunk[1003:-2] + b"xyz"
    assert cache.read(slot, 0, slot.length) == expected
    cache.fill(slot, ref, data)  # (filled: nothing more to do)
    assert len(fetched) == 2


def test_an_unfetched_slot_keeps_track_of_every_range_and_of_its_cut(tmp_path: Path) -> None:
    cache = WriteBack(tmp_path / "mount-1", limit_bytes=1 << 30)
    chunk = os.urandom(1 << 20)
    ref = mp.ChunkRef(index=0, chunk_id="00000000000000c1", length=len(chunk))
    slot = cache.create_unfetched(owner=None, inode=7, index=0, chunk=ref, length=len(chunk))
    model = bytearray(chunk)
    for offset in range(0, 4 * (MAX_PATCH_RANGES + 1), 4):  # too many to derive: still known, to fill
        cache.write(slot, offset, b"-")
        model[offset] = ord("-")
    assert slot.base is None and len(slot.changed) == MAX_PATCH_RANGES + 1
    cache.truncate(slot, 500_000)  # the chunk counts up to the cut; past it, zeros
    cache.write(slot, 600_000, b"end")
    model[500_000:] = bytes(100_000) + b"end"
    assert cache.unfilled(slot, 499_990, 600_003) == [(499_990, 500_000)]
    cache.fill(slot, ref, lambda start, end: chunk[start:end])
    assert cache.read(slot, 0, slot.length) == model and slot.changed == []


def test_a_saved_unfetched_slot_fetches_from_the_chunk_it_made(tmp_path: Path) -> None:
    cache = WriteBack(tmp_path / "mount-1", limit_bytes=1 << 30)
    ref = mp.ChunkRef(index=0, chunk_id="00000000000000c1", length=1 << 20)
    slot = cache.create_unfetched(owner=None, inode=7, index=0, chunk=ref, length=1 << 20)
    cache.write(slot, 10, b"abc")
    made = mp.ChunkRef(index=0, chunk_id="00000000000000c2", length=1 << 20)
    assert cache.keep_saved(slot, made)
    assert slot.unfetched is made and slot.base == made.chunk_id and cache.unfilled(slot, 0, 20) == [(0, 20)]
    cache.fill(
        slot, ref, lambda start, end: b"old" * (end - start)
    )  # fetched meanwhile from the chunk before: not taken
    assert slot.unfetched is made
    cache.drop(slot)
    cache.fill(slot, made, lambda start, end: b"x" * (end - start))  # gone meanwhile: left alone
    assert slot.unfetched is made


@pytest.mark.parametrize("memory_slot_bytes", [0, 1000])  # slots in files, slots in memory
def test_a_slot_rebased_takes_the_new_chunk_where_it_was_not_written(tmp_path: Path, memory_slot_bytes: int) -> None:
    """Another mount changed the chunk a slot was copied from: where the slot was written it
    keeps its bytes, elsewhere it takes the new chunk's (zeros past its end, or for none), and
    it now derives from that chunk."""
    cache = WriteBack(tmp_path / "mount-1", limit_bytes=1 << 20, memory_slot_bytes=memory_slot_bytes)
    slot = cache.create(owner=None, inode=7, index=0, initial=b"abcdefgh", base="c1", origin="c1")
    cache.write(slot, 2, b"XY")
    cache.write(slot, 12, b"!")
    assert slot.written == [(2, 4), (12, 13)] and slot.origin == "c1"
    version = slot.version
    new = mp.ChunkRef(chunk_id="c2", length=10)
    cache.rebase(slot, new, 10, lambda a, b: b"ABCDEFGHIJ"[a:b])
    assert cache.read(slot, 0, 100) == b"ABXYEFGHIJ\0\0!"
    assert (slot.origin, slot.base, slot.base_kept, slot.changed) == ("c2", "c2", 10, [(2, 4), (12, 13)])
    assert slot.version > version and slot.written == [(2, 4), (12, 13)]
    cache.rebase(slot, None, 0, lambda a, b: b"")  # (the other mount truncated it away)
    assert cache.read(slot, 0, 100) == b"\0\0XY" + bytes(8) + b"!" and slot.origin == "" and slot.base is None


def test_an_unfetched_slot_rebased_stays_unfetched_of_the_new_chunk(tmp_path: Path) -> None:
    cache = WriteBack(tmp_path / "mount-1", limit_bytes=1 << 20)
    old = mp.ChunkRef(chunk_id="c1", length=100)
    slot = cache.create_unfetched(owner=None, inode=7, index=0, chunk=old, length=100)
    cache.write(slot, 10, b"mine")
    new = mp.ChunkRef(chunk_id="c2", length=300)
    cache.rebase(slot, new, 300, lambda a, b: pytest.fail("nothing is fetched"))
    assert slot.unfetched is new and slot.length == 300 and slot.origin == "c2"
    assert cache.unfilled(slot, 0, 300) == [(0, 10), (14, 300)]
