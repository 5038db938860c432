"""The mount's chunk cache: slicing chunks kept as received pieces, limits, eviction."""

from __future__ import annotations

import os

import trio

from fusedfs.chunks import BLOCK_SIZE
from fusedfs.mount.cache import ChunkCache, ChunkData, ChunkLoader
from fusedfs.rpc import master_pb2 as mp


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


def ref(chunk_id: str, length: int = 1000) -> mp.ChunkRef:
    return mp.ChunkRef(index=0, chunk_id=chunk_id, length=length)


def test_concurrent_loads_of_a_chunk_share_one_fetch_and_all_finish() -> None:
    """Regression: two fetches of one chunk once lost a waiter's wake-up and hung a read for good."""
    fetches: list[str] = []

    async def fetch(inode: int, chunk: mp.ChunkRef) -> list[memoryview]:
        fetches.append(chunk.chunk_id)
        await trio.sleep(0.01)
        return [memoryview(bytes([len(fetches)]) * chunk.length)]

    async def main() -> None:
        # A cache too small to keep the chunk: every later load must fetch again, never wait forever.
        loader = ChunkLoader(ChunkCache(limit_bytes=10), fetch, trio.CapacityLimiter(4))
        results: list[bytes] = []

        async def load() -> None:
            results.append((await loader.load(1, ref("a"))).slice(0, 1))

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(load)
            assert results == [b"\x01"] * 5 and fetches == ["a"]
            await load()
        assert fetches == ["a", "a"] and not loader._flights

    trio.run(main)


def test_a_failed_fetch_lets_the_waiters_fetch_again() -> None:
    attempts = 0

    async def fetch(inode: int, chunk: mp.ChunkRef) -> list[memoryview]:
        nonlocal attempts
        attempts += 1
        await trio.sleep(0.01)
        if attempts == 1:
            raise OSError("keeper gone")
        return [memoryview(b"x" * chunk.length)]

    async def main() -> None:
        loader = ChunkLoader(ChunkCache(limit_bytes=1 << 20), fetch, trio.CapacityLimiter(4))
        outcomes: list[str] = []

        async def load() -> None:
            try:
                outcomes.append((await loader.load(1, ref("a"))).slice(0, 1).decode())
            except OSError:
                outcomes.append("error")

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load)
                await trio.sleep(0.001)
                nursery.start_soon(load)
        assert sorted(outcomes) == ["error", "x"] and attempts == 2
        assert not loader.wanted("a") and loader.wanted("b")

    trio.run(main)


def test_reads_within_a_block_fetch_it_once_and_slice_it() -> None:
    """A random read keeps the checksum block it came in: the next read in that block needs no fetch."""
    data = os.urandom(3 * BLOCK_SIZE + 500)
    chunk = mp.ChunkRef(index=0, chunk_id="c1", length=len(data), stored_length=len(data))
    fetched: list[tuple[int, int]] = []

    async def fetch(start: int, size: int) -> list[memoryview]:
        fetched.append((start, size))
        return pieces(data[start : start + size], 4096)

    async def main() -> None:
        cache = ChunkCache(limit_bytes=1 << 20)
        assert await cache.block_range(chunk, BLOCK_SIZE + 4096, 4096, fetch) == data[BLOCK_SIZE + 4096 :][:4096]
        assert await cache.block_range(chunk, BLOCK_SIZE + 100, 50, fetch) == data[BLOCK_SIZE + 100 :][:50]
        assert fetched == [(BLOCK_SIZE, BLOCK_SIZE)]
        # The short last block; a read past the chunk's end is a hole; one across blocks is not kept.
        assert await cache.block_range(chunk, 3 * BLOCK_SIZE + 400, 4096, fetch) == data[3 * BLOCK_SIZE + 400 :]
        assert fetched[-1] == (3 * BLOCK_SIZE, 500)
        assert await cache.block_range(chunk, len(data) + 10, 10, fetch) == b""
        assert await cache.block_range(chunk, BLOCK_SIZE - 10, 20, fetch) is None
        # A shorter (truncated) view of the chunk never sees the bytes past its length.
        short = mp.ChunkRef(index=0, chunk_id="c1", length=BLOCK_SIZE + 5000, stored_length=len(data))
        assert (
            await cache.block_range(short, BLOCK_SIZE + 4096, 4096, fetch)
            == data[BLOCK_SIZE + 4096 : BLOCK_SIZE + 5000]
        )
        assert len(fetched) == 2

    trio.run(main)
