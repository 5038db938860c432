"""The mount's chunk cache: slicing chunks kept as received pieces, limits, eviction."""

from __future__ import annotations

import os

from fusedfs.mount.openfile import ChunkCache, ChunkData


def pieces(data: bytes, size: int) -> list[memoryview]:
    return [memoryview(data)[i : i + size] for i in range(0, len(data), size)]


def test_slices_across_pieces_match_the_bytes() -> None:
    data = os.urandom(10_000)
    chunk = ChunkData(pieces(data, 1024))
    for start, end in [
        (0, 10_000),
        (1000, 1100),
        (1023, 1025),
        (5000, 20_000),
        (9999, 10_000),
        (3, 3),
        (12_000, 13_000),
    ]:
        assert chunk.slice(start, end) == data[start:end], (start, end)


def test_limited_hides_what_a_truncate_cut() -> None:
    data = os.urandom(4096)
    chunk = ChunkData(pieces(data, 1000)).limited(1500)
    assert len(chunk) == 1500
    assert chunk.slice(1000, 4096) == data[1000:1500]
    assert chunk.limited(5000) is chunk


def test_cache_evicts_least_recently_used() -> None:
    cache = ChunkCache(limit_bytes=2500)
    for name in ("a", "b"):
        cache.put(name, ChunkData([memoryview(bytes(1000))]))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", ChunkData([memoryview(bytes(1000))]))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.size == 2000
