"""Chunks this mount has read: kept as received, bounded in bytes, fetched once however many ask.

`ChunkLoader` is the one way the mount reads a whole chunk: concurrent readers and the
read-ahead of one chunk share a single fetch (single flight), and the finished chunk goes
to the LRU `ChunkCache` shared by every open file.
"""

from __future__ import annotations

import bisect
import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import trio

from fusedfs.rpc import master_pb2 as mp


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


class ChunkCache:
    """Recently read chunks, least recently used dropped first, bounded in bytes."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.size = 0
        self._data: OrderedDict[str, ChunkData] = OrderedDict()

    def get(self, chunk_id: str) -> ChunkData | None:
        data = self._data.get(chunk_id)
        if data is not None:
            self._data.move_to_end(chunk_id)
        return data

    def put(self, chunk_id: str, data: ChunkData) -> None:
        if chunk_id in self._data or len(data) > self.limit:
            return
        self._data[chunk_id] = data
        self.size += len(data)
        while self.size > self.limit:
            _, dropped = self._data.popitem(last=False)
            self.size -= len(dropped)


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
