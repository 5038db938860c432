"""Derived chunks kept as their changed blocks beside their base (chunkfile.py's delta files):
what they read as, how they chain, and what a restart, a delete, a link and damage do to them."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusedfs.chunkfile import DELTA_MAGIC, MAGIC, ChunkFile, CorruptChunk, base_path, data_offset
from fusedfs.chunks import BLOCK_SIZE, crc32c
from fusedfs.errors import FsError
from fusedfs.keeper.chunkstore import LAYOUT, ChunkStore, Patch

BASE, FIRST, SECOND = "00000000000000a1", "00000000000000b2", "00000000000000c3"
BLOCKS = 40  # an 8 MiB chunk's share (1 in 8) of changed blocks kept beside the base is 5 of these


def _patch(offset: int, data: bytes) -> Patch:
    return Patch(offset, data, crc32c(data))


def _store(store: ChunkStore, data: bytes, chunk_id: str = BASE) -> None:
    writer = store.begin_write(chunk_id, len(data), crc32c(data))
    writer.write(data)
    writer.commit()


def _read(store: ChunkStore, chunk_id: str, offset: int = 0, length: int = 0) -> bytes:
    return b"".join(p.data for p in store.read(chunk_id, offset, length))


def _magic(store: ChunkStore, chunk_id: str) -> bytes:
    return store._path(chunk_id).read_bytes()[:8]


def _apply(data: bytes, length: int, kept: int, patches: list[Patch]) -> bytes:
    out = bytearray(data[: min(kept, length)].ljust(length, b"\0"))
    for p in patches:
        out[p.offset : p.offset + len(p.data)] = p.data
    return bytes(out)


def test_a_small_change_is_kept_beside_its_base_and_reads_as_the_whole_chunk(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    base = os.urandom(BLOCKS * BLOCK_SIZE + 100)
    _store(store, base)
    patches = [_patch(5 * BLOCK_SIZE + 10, b"abc"), _patch(7 * BLOCK_SIZE - 2, b"wxyz"), _patch(len(base) - 3, b"!!!")]
    expected = _apply(base, len(base), len(base), patches)
    crc = store.derive(FIRST, len(base), BASE, len(base), patches)
    assert crc == crc32c(expected) and store.verify(FIRST, (len(expected), crc))
    assert _magic(store, FIRST) == DELTA_MAGIC
    assert store._path(FIRST).stat().st_size < 5 * BLOCK_SIZE  # its 4 changed blocks, not 40
    assert os.stat(base_path(store._path(FIRST))).st_ino == os.stat(store._path(BASE)).st_ino
    assert _read(store, FIRST) == expected
    for offset, length in [(0, 1), (5 * BLOCK_SIZE, 3 * BLOCK_SIZE), (6 * BLOCK_SIZE + 5, 10), (len(base) - 50, 50)]:
        start = offset - offset % BLOCK_SIZE
        assert (
            _read(store, FIRST, offset, length)[offset - start : offset - start + length]
            == expected[offset : offset + length]
        )
    # Derived again (a database's next commit): the new one names the first's base, not the first.
    more = [_patch(20 * BLOCK_SIZE, b"more")]
    expected = _apply(expected, len(expected), len(expected), more)
    assert store.derive(SECOND, len(expected), FIRST, len(expected), more) == crc32c(expected)
    assert os.stat(base_path(store._path(SECOND))).st_ino == os.stat(store._path(BASE)).st_ino
    # The base and the first go (garbage): the second keeps the bytes it needs, across a restart.
    store.delete(BASE)
    store.delete(FIRST)
    assert not base_path(store._path(FIRST)).exists()
    store = ChunkStore(tmp_path)
    assert store.chunk_ids() == [SECOND] and _read(store, SECOND) == expected and store.verify(SECOND)
    store.delete(SECOND)
    assert not [p for p in (tmp_path / "chunks").rglob("*") if p.is_file()]


def test_a_change_to_many_blocks_is_written_whole(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    base = os.urandom(BLOCKS * BLOCK_SIZE)
    _store(store, base)
    patches = [_patch(i * BLOCK_SIZE, b"x") for i in range(0, BLOCKS, 6)]  # 7 blocks of 40: more than 1 in 8
    expected = _apply(base, len(base), len(base), patches)
    assert store.derive(FIRST, len(base), BASE, len(base), patches) == crc32c(expected)
    assert _magic(store, FIRST) == MAGIC and not base_path(store._path(FIRST)).exists()
    assert _read(store, FIRST) == expected


def test_a_derived_chunk_shorter_or_longer_than_its_base(tmp_path: Path) -> None:
    """A truncate keeps part of a block (that block is copied, zeros after what is kept), and a
    chunk grown past its base copies its new blocks."""
    store = ChunkStore(tmp_path)
    base = os.urandom(BLOCKS * BLOCK_SIZE)
    _store(store, base)
    length, kept = (BLOCKS + 2) * BLOCK_SIZE + 7, (BLOCKS - 1) * BLOCK_SIZE + 5
    expected = _apply(base, length, kept, [])
    assert store.derive(FIRST, length, BASE, kept, []) == crc32c(expected)
    assert _magic(store, FIRST) == DELTA_MAGIC and _read(store, FIRST) == expected
    shorter = 10 * BLOCK_SIZE + 3
    expected = _apply(expected, shorter, shorter, [_patch(shorter - 1, b"z")])
    assert store.derive(SECOND, shorter, FIRST, shorter, [_patch(shorter - 1, b"z")]) == crc32c(expected)
    assert _read(store, SECOND) == expected and store.verify(SECOND)


def test_a_base_with_all_the_names_its_disk_allows_gives_a_whole_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ChunkStore(tmp_path)
    base = os.urandom(BLOCKS * BLOCK_SIZE)
    _store(store, base)
    link = os.link

    def full_link(source: Path, target: Path) -> None:
        if str(target).endswith(".base"):
            raise OSError(errno.EMLINK, "Too many links")
        link(source, target)

    monkeypatch.setattr(os, "link", full_link)
    patches = [_patch(3, b"abc")]
    assert store.derive(FIRST, len(base), BASE, len(base), patches) == crc32c(
        _apply(base, len(base), len(base), patches)
    )
    assert _magic(store, FIRST) == MAGIC and not list((tmp_path / "tmp").iterdir())


def test_damage_under_a_derived_chunk_is_caught_where_it_lies(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    base = os.urandom(BLOCKS * BLOCK_SIZE)
    _store(store, base)
    store.derive(FIRST, len(base), BASE, len(base), [_patch(3 * BLOCK_SIZE, b"abc")])
    with open(store._path(BASE), "r+b") as f:  # bit rot in the base, in a block the derived one shares
        f.seek(data_offset(len(base)) + 30 * BLOCK_SIZE + 9)
        f.write(bytes([base[30 * BLOCK_SIZE + 9] ^ 1]))
    assert _read(store, FIRST, 0, 10 * BLOCK_SIZE)[3 * BLOCK_SIZE : 3 * BLOCK_SIZE + 3] == b"abc"
    with pytest.raises(CorruptChunk, match="block 30"):
        _read(store, FIRST)
    assert not store.verify(FIRST)
    # A copy found damaged is set aside with its base, and can still be read unchecked.
    store.set_aside(FIRST, "damaged")
    assert not store.has(FIRST) and not store._path(FIRST).exists()
    header, pieces = store.open_damaged(FIRST)
    assert header.sources is not None and len(b"".join(p.data for p in pieces)) == len(base)
    assert len(list((tmp_path / "damaged").iterdir())) == 2  # the copy and its base


def test_a_restart_drops_a_derived_chunk_without_its_base_and_a_base_without_its_chunk(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    base = os.urandom(BLOCKS * BLOCK_SIZE)
    _store(store, base)
    store.derive(FIRST, len(base), BASE, len(base), [_patch(0, b"a")])
    store.derive(SECOND, len(base), BASE, len(base), [_patch(0, b"b")])
    base_path(store._path(FIRST)).unlink()  # as a disk that lost a name can leave it
    store._path(SECOND).unlink()  # as a derive cut short before its chunk was named
    store = ChunkStore(tmp_path)
    assert store.chunk_ids() == [BASE]
    assert not store._path(FIRST).exists() and not base_path(store._path(SECOND)).exists()


def test_a_linked_derived_chunk_keeps_its_base(tmp_path: Path) -> None:
    """A snapshot's link of a derived chunk links its base too."""
    store = ChunkStore(tmp_path)
    base = os.urandom(BLOCKS * BLOCK_SIZE)
    _store(store, base)
    store.derive(FIRST, len(base), BASE, len(base), [_patch(0, b"a")])
    expected = _read(store, FIRST)
    assert store.link([(SECOND, FIRST)]) == [SECOND]
    store.delete(FIRST)
    store.delete(BASE)
    assert _read(ChunkStore(tmp_path), SECOND) == expected


def test_a_derived_chunk_is_read_straight_from_the_disk_as_the_keeper_reads_it(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    base = os.urandom(BLOCKS * BLOCK_SIZE)
    _store(store, base)
    store.derive(FIRST, len(base), BASE, len(base), [_patch(9 * BLOCK_SIZE + 1, b"abc")])
    with ChunkFile(FIRST, store._path(FIRST)) as chunk:
        assert b"".join(p.data for p in chunk.pieces(8 * BLOCK_SIZE, 3 * BLOCK_SIZE, verify=False)) == _read(
            store, FIRST, 8 * BLOCK_SIZE, 3 * BLOCK_SIZE
        )


CHAIN_BLOCKS = 16  # (the least that keeps a change beside its base: 2 blocks of 16)
_offsets = st.integers(0, (CHAIN_BLOCKS + 2) * BLOCK_SIZE)
_sizes = st.none() | _offsets  # None: as long as the chunk derived from, or all of it kept
_blobs = st.binary(min_size=1, max_size=100) | st.binary(min_size=1, max_size=3 * BLOCK_SIZE // 2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.tuples(_sizes, _sizes, st.lists(st.tuples(_offsets, _blobs), max_size=3)), min_size=1, max_size=6)
)
def test_a_chain_of_derived_chunks_reads_as_its_changes_applied_in_turn(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int | None, int | None, list[tuple[int, bytes]]]]
) -> None:
    store = ChunkStore(tmp_path_factory.mktemp("keeper"))
    data = os.urandom(CHAIN_BLOCKS * BLOCK_SIZE - 1000)
    _store(store, data, chunk_id="0000000000000100")
    for step, (new_length, new_kept, raw) in enumerate(steps, start=1):
        length = max(1, new_length if new_length is not None else len(data))
        kept = min(new_kept if new_kept is not None else len(data), len(data))
        patches = [_patch(min(offset, length - 1), blob[: length - min(offset, length - 1)]) for offset, blob in raw]
        chunk_id = f"{0x100 + step:016x}"
        data = _apply(data, length, kept, patches)
        assert store.derive(chunk_id, length, f"{0x100 + step - 1:016x}", kept, patches) == crc32c(data)
        assert _read(store, chunk_id) == data and store.verify(chunk_id)
    assert _read(ChunkStore(store.root), chunk_id) == data


def test_a_keeper_marks_its_folder_with_its_layout_and_refuses_a_newer_one(tmp_path: Path) -> None:
    ChunkStore(tmp_path)
    assert (tmp_path / "layout").read_text() == f"{LAYOUT}\n"
    (tmp_path / "layout").write_text(f"{LAYOUT + 1}\n")
    with pytest.raises(FsError, match=f"layout {LAYOUT + 1}, newer than this keeper's"):
        ChunkStore(tmp_path)
