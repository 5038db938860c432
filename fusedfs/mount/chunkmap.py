"""Which chunk is in each slot of an open file, as far as this mount knows.

The master is asked a window of slots at a time (`ask`, then `put` with its reply), so that an
open, and a read after each of our own commits, costs a window's worth of chunk rows however
long the file is: a file of 4,000 chunks used to be fetched whole at each (38 ms), which held a
database's write + fsync at 17/s where a small file does 80.

A commit of ours makes its slot stale: that slot alone is asked again, unless we know where its
new chunk is (`committed`: we just stored it). A reply may be older than a commit whose answer
arrived while it was on the way; each ask carries the map's epoch, and a slot changed after it
was asked keeps waiting for a newer answer (a read would otherwise get the chunk the commit
replaced: the bytes before our own write). Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusedfs.rpc import master_pb2 as mp

WINDOW = 128  # chunks asked at once (a GetChunks of 128 rows: ~1 ms)
_END = 1 << 64  # (past any slot: a reply that reached the file's last chunk covers this far)


@dataclass(frozen=True)
class Ask:
    """What to ask the master for (GetChunksRequest's first_index and count), and when."""

    first: int
    count: int
    epoch: int


class ChunkMap:
    def __init__(self) -> None:
        self._refs: dict[int, mp.ChunkRef] = {}
        self._windows: set[int] = set()  # windows (slot // WINDOW) known whole
        self._known_from: int | None = None  # every slot from here on is known (the file ends before)
        self._stale: set[int] = set()  # slots our commits changed since they were last answered
        # slot -> the epoch our last commit there was seen at, oldest first: an answer asked before
        # it is older there, whenever it arrives
        self._changed: dict[int, int] = {}
        self._epoch = 0
        self._reset_at = 0  # answers to asks older than this are dropped whole

    def known(self, index: int) -> bool:
        """Whether ref(index) answers without asking the master."""
        if index in self._stale:
            return False
        return index // WINDOW in self._windows or (self._known_from is not None and index >= self._known_from)

    def ref(self, index: int) -> mp.ChunkRef | None:
        """The chunk in slot index (None: a hole); only for a known slot."""
        assert self.known(index)
        return self._refs.get(index)

    def last_known(self, index: int) -> mp.ChunkRef | None:
        """The chunk last known in slot index, as the master said or our commit put it, even
        in a slot not known(): a hint (where it was stored), not the slot's state."""
        return None if index in self._stale else self._refs.get(index)

    def hole(self, index: int) -> bool:
        """Known to hold no chunk (a slot not known might hold one)."""
        return self.known(index) and index not in self._refs

    def ask(self, index: int) -> Ask:
        """The request that makes slot index known: the slot alone when only it changed, else its window."""
        window_known = index // WINDOW in self._windows or (self._known_from is not None and index >= self._known_from)
        if window_known and index in self._stale:
            return Ask(index, 1, self._epoch)
        first = index - index % WINDOW
        return Ask(first, WINDOW, self._epoch)

    def put(self, ask: Ask, chunks: list[mp.ChunkRef]) -> None:
        """The master's answer to ask: the chunks from ask.first on, at most ask.count of them
        (so it covers slots up to its last chunk's, or every slot on when it has fewer)."""
        if ask.epoch < self._reset_at:
            return
        end = chunks[-1].index + 1 if ask.count and len(chunks) >= ask.count else _END
        changed_since = set()
        for index, epoch in reversed(self._changed.items()):
            if epoch <= ask.epoch:
                break
            changed_since.add(index)
        answered = {ref.index: ref for ref in chunks if ref.index not in changed_since}
        for index in [i for i in self._refs if ask.first <= i < end and i not in changed_since]:
            del self._refs[index]  # (a hole now, unless answered below)
        self._refs.update(answered)
        self._stale -= {i for i in self._stale if ask.first <= i < end and i not in changed_since}
        if end == _END:
            self._known_from = ask.first if self._known_from is None else min(self._known_from, ask.first)
        else:
            self._windows.update(range(-(-ask.first // WINDOW), end // WINDOW))  # (those it covers whole)

    def changed(self, index: int) -> None:
        """Our commit put a new chunk in slot index: it is asked again before it is read."""
        self._epoch += 1
        self._changed.pop(index, None)
        self._changed[index] = self._epoch
        self._stale.add(index)
        self._refs.pop(index, None)

    def committed(self, index: int, ref: mp.ChunkRef) -> None:
        """Our commit put chunk `ref` in slot index, and we know where it is stored: the slot reads
        as that without asking (an answer asked before the commit still does not replace it)."""
        self.changed(index)
        self._stale.discard(index)
        self._refs[index] = ref

    def reset(self) -> None:
        """Nothing known any more (the file changed elsewhere, or was truncated)."""
        self._epoch += 1
        self._reset_at = self._epoch
        self._refs.clear()
        self._windows.clear()
        self._stale.clear()
        self._changed.clear()
        self._known_from = None
