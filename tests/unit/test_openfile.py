"""An open file's logic that needs no cluster: what it takes from a getattr, which slot a write goes to."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import trio

from fusedfs.client.master import MasterClient
from fusedfs.mount.cache import ChunkData
from fusedfs.mount.chunkmap import Ask
from fusedfs.mount.openfile import MountShared, OpenFile
from fusedfs.mount.writeback import WriteBack
from fusedfs.rpc import master_pb2 as mp


def open_file(tmp_path: Path, attr: mp.Attr) -> OpenFile:
    none = cast(Any, None)  # (what is tested here asks no keeper or master anything)
    master = MasterClient("127.0.0.1:1")  # (never called: a channel connects when first used)
    shared = MountShared(master, none, none, WriteBack(tmp_path / "mount-1", 64 << 20), none, none)
    return OpenFile.from_attr(attr, shared)


def know(f: OpenFile, *refs: mp.ChunkRef) -> None:
    """The file's whole chunk list is known: these chunks, and holes elsewhere."""
    f.chunk_map.put(Ask(first=0, count=0, epoch=0), list(refs))


def test_a_getattr_answered_before_our_commit_does_not_shrink_the_file(tmp_path: Path) -> None:
    f = open_file(tmp_path, mp.Attr(inode=5, size=100, mtime_ns=10, ctime_ns=10, chunk_size=1 << 20))
    f.attr = mp.Attr(inode=5, size=200, mtime_ns=20, ctime_ns=20)  # our commit's reply ...
    f.size = 200
    f.seen(mp.Attr(inode=5, size=100, mtime_ns=10, ctime_ns=10))  # ... overtook an older getattr's
    assert f.size == 200 and f.attr.ctime_ns == 20
    f.seen(mp.Attr(inode=5, size=200, mtime_ns=20, ctime_ns=20))  # the same state: nothing to do
    assert f.size == 200
    know(f)
    f.seen(mp.Attr(inode=5, size=50, mtime_ns=30, ctime_ns=30))  # another mount truncated it since
    assert f.size == 50 and not f.chunk_map.known(0) and f.attr.ctime_ns == 30


def test_our_own_unsaved_writes_stand_against_any_getattr(tmp_path: Path) -> None:
    f = open_file(tmp_path, mp.Attr(inode=5, size=100, mtime_ns=10, ctime_ns=10, chunk_size=1 << 20))
    f.writes, f.size = 1, 150  # written here, not committed yet
    f.seen(mp.Attr(inode=5, size=80, mtime_ns=30, ctime_ns=30))
    assert f.size == 150


def test_a_slot_saved_while_a_write_waited_for_its_chunk_is_the_one_written(tmp_path: Path) -> None:
    """A write that found no slot waits for the chunk's data; meanwhile another write made the
    slot and an fsync uploaded it, keeping it as saved. The waiting write takes that slot (a
    second one for the same range would shadow it, and its upload would be lost track of)."""
    f = open_file(tmp_path, mp.Attr(inode=5, size=3 << 20, mtime_ns=10, ctime_ns=10, chunk_size=1 << 20))
    writeback = f.shared.writeback
    made = []

    async def chunk_and_id(index: int) -> tuple[ChunkData, str | None]:
        theirs = writeback.create(f, 5, index, b"theirs")  # (another write, its upload ended meanwhile)
        assert writeback.keep_saved(theirs, mp.ChunkRef(chunk_id="00000000000000aa"))
        f.saved[index] = theirs
        made.append(theirs)
        return ChunkData([memoryview(b"old")]), "0000000000000001"

    f._chunk_and_id = chunk_and_id  # type: ignore[method-assign]
    know(f, *(mp.ChunkRef(index=i, chunk_id="0000000000000001", length=3) for i in range(3)))
    taken: list[object] = []

    async def write() -> None:
        async with trio.open_nursery() as nursery:
            taken.append(await f._slot(1, 10, nursery))

    trio.run(write)
    [theirs] = made
    assert taken == [theirs] and f.dirty == {1: theirs} and not f.saved and not theirs.saved
    assert writeback.read(theirs, 0, 100) == b"theirs" and writeback.used == 6


def test_a_write_into_a_big_chunk_fetches_nothing_and_a_read_of_its_slot_just_the_blocks_read(tmp_path: Path) -> None:
    """A partial write into a big chunk of the file keeps the chunk unfetched; reading back what
    was written needs nothing of it; reading around it fetches just the ranges not written."""
    chunk = os.urandom(1 << 20)
    ref = mp.ChunkRef(index=1, chunk_id="00000000000000c1", length=len(chunk))
    f = open_file(tmp_path, mp.Attr(inode=5, size=2 << 20, mtime_ns=10, ctime_ns=10, chunk_size=1 << 20))
    know(f, ref)
    fetched: list[tuple[str, int, int]] = []

    async def load(inode: int, wanted: mp.ChunkRef) -> ChunkData:
        fetched.append((wanted.chunk_id, 0, len(chunk)))
        return ChunkData([memoryview(chunk)])

    async def blocks(wanted: mp.ChunkRef, offset: int, length: int) -> bytes:
        fetched.append((wanted.chunk_id, offset, length))
        return chunk[offset : offset + length]

    f.shared.chunks = cast(Any, SimpleNamespace(load=load))
    f._blocks = blocks  # type: ignore[method-assign,assignment]

    async def main() -> tuple[bytes, bytes]:
        async with trio.open_nursery() as nursery:
            await f.write((1 << 20) + 100, b"new", nursery)
            assert fetched == [] and f.dirty[1].unfetched is ref
            written = await f.read((1 << 20) + 100, 3, nursery)
            assert fetched == []
            around = await f.read((1 << 20) + 90, 20, nursery)
            return written, around

    written, around = trio.run(main)
    assert written == b"new" and around == chunk[90:100] + b"new" + chunk[103:110]
    assert fetched == [(ref.chunk_id, 90, 10), (ref.chunk_id, 103, 7)] and f.dirty[1].unfetched is ref


def test_a_write_into_an_unfetched_slot_while_its_blocks_are_fetched_for_a_read_is_what_the_read_sees(
    tmp_path: Path,
) -> None:
    """A read of an unfetched slot fetches the ranges not written; a write there meanwhile wins
    over what was fetched (the slot is read after the fetch)."""
    chunk = os.urandom(1 << 20)
    ref = mp.ChunkRef(index=0, chunk_id="00000000000000c1", length=len(chunk))
    f = open_file(tmp_path, mp.Attr(inode=5, size=1 << 20, mtime_ns=10, ctime_ns=10, chunk_size=1 << 20))
    know(f, ref)
    fetching = trio.Event()
    go_on = trio.Event()

    async def blocks(wanted: mp.ChunkRef, offset: int, length: int) -> bytes:
        fetching.set()
        await go_on.wait()
        return chunk[offset : offset + length]

    f._blocks = blocks  # type: ignore[method-assign,assignment]

    async def main() -> bytes:
        async with trio.open_nursery() as nursery:
            await f.write(100, b"first", nursery)
            result = []

            async def read() -> None:
                result.append(await f.read(0, 200, nursery))

            nursery.start_soon(read)
            await fetching.wait()
            await f.write(150, b"during", nursery)  # into a range being fetched
            go_on.set()
        return result[0]

    got = trio.run(main)
    assert got == chunk[:100] + b"first" + chunk[105:150] + b"during" + chunk[156:200]


def test_waits_for_uploads_are_bounded_by_silence_not_length(tmp_path: Path) -> None:
    """A writer waiting for room (or a flush for its uploads) waits while uploads move bytes,
    past its bound (a slow link), and gives up once they have moved none for `stall` seconds."""
    f = open_file(tmp_path, mp.Attr(inode=5, size=0, mtime_ns=10, ctime_ns=10, chunk_size=1 << 20))
    transfer = SimpleNamespace(last_moved=0.0)
    f.shared.transfer = cast(Any, transfer)

    async def waits(moving_for: float, silent_for: float) -> tuple[bool, float]:
        """Uploads move bytes (a piece each 20 ms) for `moving_for` s, then none for `silent_for`
        s, then the awaited one ends; the wait's bound and stall are 0.1 s."""
        done = trio.Event()
        started = transfer.last_moved = time.monotonic()

        async def uploads() -> None:
            while time.monotonic() < started + moving_for:
                transfer.last_moved = time.monotonic()
                await trio.sleep(0.02)
            await trio.sleep(silent_for)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(uploads)
            waited = await f._while_uploads_move(done.wait, started + 0.1, 0.1)
            nursery.cancel_scope.cancel()
        return waited, time.monotonic() - started

    waited, took = trio.run(waits, 0.4, 0.0)  # slow: it ends long past the bound
    assert waited and 0.4 <= took < 0.55, took
    waited, took = trio.run(waits, 0.4, 0.3)  # then silent: given up 0.1 s into the silence
    assert not waited and 0.45 < took < 0.65, took
    waited, took = trio.run(waits, 0.0, 0.3)  # silent from the start: given up at the bound
    assert not waited and 0.09 < took < 0.25, took


def test_appends_written_while_their_upload_went_on_stay_appends(tmp_path: Path) -> None:
    """A commit of appends that were not all in its upload (more came meanwhile): those left are
    appends at the end the commit gave the file, committed only if no other mount appended since
    (else they go again at the new end). Committed as plain writes, they went in over the lines
    another mount appended there meanwhile."""
    f = open_file(tmp_path, mp.Attr(inode=5, size=100, mtime_ns=10, ctime_ns=10, chunk_size=1 << 20))
    f.shared.dircache = cast(Any, SimpleNamespace(forget_inode=lambda inode: None))
    f.append_at, f.size = 100, 300  # appended 200 bytes; the upload took the first 120
    f._committed(mp.Attr(inode=5, size=220, mtime_ns=20, ctime_ns=20), 0)
    assert f.append_at == 220
    f._committed(mp.Attr(inode=5, size=300, mtime_ns=30, ctime_ns=30), 0)  # the rest
    assert f.append_at is None
    f.size = 400  # written, not appended: no condition
    f._committed(mp.Attr(inode=5, size=350, mtime_ns=40, ctime_ns=40), 0)
    assert f.append_at is None
