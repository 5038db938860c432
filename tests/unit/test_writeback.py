"""The write-back cache: slot files, holes, truncation, accounting, the limit."""

from __future__ import annotations

from pathlib import Path

from fusedfs.mount.writeback import WriteBack


def test_slots_hold_data_with_holes_and_count_toward_the_limit(tmp_path: Path) -> None:
    cache = WriteBack(tmp_path / "mount-1", limit_bytes=100)
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
