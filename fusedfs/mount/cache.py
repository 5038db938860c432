"""Chunks this mount has read: kept as received, bounded in bytes, fetched once however many ask.

`ChunkLoader` is the one way the mount reads a whole chunk: concurrent readers and the
read-ahead of one chunk share a single fetch (single flight), and the finished chunk goes
to the LRU `ChunkCache` shared by every open file. Random reads keep the single 64 KiB
checksum blocks they fetch in the same cache (`ChunkCache.block_range`).
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import trio

from fusedfs.chunks import BLOCK_SIZE, aligned_range
from fusedfs.rpc import master_pb2 as mp

log = logging.getLogger(__name__)


class ChunkData:
    """A chunk as the pieces it arrived in: slicing it never copies the whole chunk.

    (Joining would allocate a chunk-sized buffer per fetch; with glibc that memory either stays
    with the process or costs a fresh mapping each time.)
    """

    def __init__(self, parts: list[memoryview], length: int | None = None) -> None:
        self.parts = parts
        self.starts = list(itertools.accumulate((len(p) for p in parts), initial=0))
        self.length = self.starts[-1] if length is None else min(length, self.starts[-1])

    def __len__(self) -> int:
        return self.length

    def limited(self, length: int) -> ChunkData:
        """The first `length` bytes (a truncated file uses less of a chunk than it holds)."""
        return self if length >= self.length else ChunkData(self.parts, length)

    def slice(self, start: int, end: int) -> bytes:
        end = min(end, len(self))
        if start >= end:
            return b""
        first = bisect.bisect_right(self.starts, start) - 1
        out = []
        i = first
        while i < len(self.parts) and self.starts[i] < end:
            part_start = self.starts[i]
            out.append(self.parts[i][max(0, start - part_start) : end - part_start])
            i += 1
        return out[0].tobytes() if len(out) == 1 else b"".join(out)


EMPTY = ChunkData([])


CacheKey = str | tuple[str, int]  # a chunk id (the whole chunk), or (chunk id, offset) of one block


class ChunkCache:
    """Recently read chunks and single blocks, least recently used dropped first, bounded in bytes."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.size = 0
        self._data: OrderedDict[CacheKey, ChunkData] = OrderedDict()

    def get(self, key: CacheKey) -> ChunkData | None:
        data = self._data.get(key)
        if data is not None:
            self._data.move_to_end(key)
        return data

    def put(self, key: CacheKey, data: ChunkData) -> None:
        if key in self._data or len(data) > self.limit:
            return
        self._data[key] = data
        self.size += len(data)
        while self.size > self.limit:
            _, dropped = self._data.popitem(last=False)
            self.size -= len(dropped)

    async def block_range(
        self, ref: mp.ChunkRef, offset: int, length: int, fetch: Callable[[int, int], Awaitable[list[memoryview]]]
    ) -> bytes | None:
        """[offset, offset + length) of a chunk when it lies within one checksum block: from that
        block, cached, or fetched whole with fetch(start, size) and kept (the keeper sends the
        whole block anyway, for its checksum; a random reader's next read may fall in it).
        None for a range across blocks (not worth keeping)."""
        start, size = aligned_range(offset, length, ref.stored_length)
        if size > BLOCK_SIZE:
            return None
        needed = min(ref.length, start + size) - start  # (a chunk's blocks never grow, but be sure)
        if needed <= 0:  # past the chunk's end: a hole
            return b""
        key = (ref.chunk_id, start)
        block = self.get(key)
        if block is None or len(block) < needed:
            block = ChunkData(await fetch(start, size))
            self.put(key, block)
        return block.limited(needed).slice(offset - start, offset - start + length)


class _Flight:
    """One fetch in progress; waiters take its result, or fetch again if it failed."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.data: ChunkData | None = None


class ChunkLoader:
    def __init__(
        self,
        cache: ChunkCache,
        fetch: Callable[[int, mp.ChunkRef], Awaitable[list[memoryview]]],
        limiter: trio.CapacityLimiter,
    ) -> None:
        self.cache = cache
        self._fetch = fetch
        self._limiter = limiter  # chunks in flight, each held in memory: bounds the mount's memory
        self._flights: dict[str, _Flight] = {}

    def wanted(self, chunk_id: str) -> bool:
        """Neither cached nor on its way (what a read-ahead should start)."""
        return chunk_id not in self._flights and self.cache.get(chunk_id) is None

    async def prefetch(self, inode: int, ref: mp.ChunkRef) -> None:
        """load() for a chunk that is only expected to be read: a failure is logged, not raised
        (the real read will retry and report it)."""
        try:
            await self.load(inode, ref)
        except Exception as e:
            log.debug("fetching chunk %s ahead failed: %s", ref.chunk_id, e)

    async def load(self, inode: int, ref: mp.ChunkRef) -> ChunkData:
        """The whole chunk (all it holds: callers limit it to the file's current length)."""
        while True:
            data = self.cache.get(ref.chunk_id)
            if data is not None:
                return data
            flight = self._flights.get(ref.chunk_id)
            if flight is None:
                break
            await flight.done.wait()
            if flight.data is not None:
                return flight.data
        flight = self._flights[ref.chunk_id] = _Flight()
        try:
            async with self._limiter:
                flight.data = ChunkData(await self._fetch(inode, ref))
            self.cache.put(ref.chunk_id, flight.data)
            return flight.data
        finally:
            del self._flights[ref.chunk_id]
            flight.done.set()
