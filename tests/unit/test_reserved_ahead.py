"""Chunk ids reserved ahead for small chunks: used while fresh, dropped with a failing keeper;
and for chunks derived on the keepers of their base without asking the master."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

import pytest

from fusedfs.client.master import MasterClient
from fusedfs.client.transfer import OPEN_MAX_AGE, RESERVATION_MAX_AGE, ChunkTransfer, _Reservation, _ReservedAhead
from fusedfs.errors import FsError
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import master_pb2 as mp


def reservation(chunk_id: str, keepers: list[str], made: float) -> _Reservation:
    return _Reservation(chunk_id, [cp.KeeperRef(keeper_id=k, address=f"{k}:1") for k in keepers], 2, made)


def test_takes_fresh_reservations_and_reports_stale_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1000.0
    monkeypatch.setattr(time, "monotonic", lambda: now)
    ahead = _ReservedAhead(limit=4)
    assert ahead.take() == (None, [])
    ahead.keep([reservation("old", ["a", "b"], now - RESERVATION_MAX_AGE - 1)])
    ahead.keep([reservation("new", ["a", "b"], now - 1)])
    taken, stale = ahead.take()
    assert taken is not None and taken.chunk_id == "new"
    assert stale == ["old"]
    assert ahead.take() == (None, [])


def test_a_failing_keeper_takes_its_reservations_along() -> None:
    ahead = _ReservedAhead(limit=4)
    ahead.keep([reservation("1", ["a", "b"], 0), reservation("2", ["b", "c"], 0), reservation("3", ["c", "d"], 0)])
    assert sorted(ahead.drop_keepers({"b"})) == ["1", "2"]
    assert ahead.drop_all() == ["3"]
    assert ahead.drop_all() == []


def test_the_batch_grows_while_used_up_in_time_and_shrinks_when_ids_go_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    ahead = _ReservedAhead(limit=8)
    sizes = []
    for _ in range(5):  # a fast writer: each batch used up while fresh
        while ahead.take()[0] is not None:
            pass
        sizes.append(ahead.batch)  # the size of the next request to the master
        ahead.keep([reservation(str(i), ["a"], now[0]) for i in range(ahead.batch - 1)])  # (one used at once)
    assert sizes == [2, 4, 8, 8, 8]
    now[0] += RESERVATION_MAX_AGE + 1  # then the writer pauses: the last 7 go stale
    taken, stale = ahead.take()
    assert taken is None and len(stale) == 7 and ahead.batch == 4


def test_ids_grown_stale_are_taken_out_without_a_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a mount's session loop gives back each second once its writer has stopped."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    ahead = _ReservedAhead(limit=8)
    ahead.batch = 8
    ahead.keep([reservation(str(i), ["a", "b"], now[0]) for i in range(3)])
    assert ahead.stale() == []  # still fresh: kept for the writer
    now[0] += RESERVATION_MAX_AGE + 0.1
    assert sorted(ahead.stale()) == ["0", "1", "2"] and ahead.batch == 4
    assert ahead.stale() == [] and ahead.take() == (None, [])


def test_the_keepers_taking_new_chunks_are_known_for_a_heartbeat_s_time(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    ahead = _ReservedAhead(limit=8)
    assert ahead.open_keepers() is None  # (no batch yet)
    ahead.opened(frozenset("abc"))
    ahead.close_keepers(["b"])  # (it failed a derive)
    assert ahead.open_keepers() == frozenset("ac")
    now[0] += OPEN_MAX_AGE + 0.1
    assert ahead.open_keepers() is None  # asked again with the next batch


class DerivingTransfer(ChunkTransfer):
    """Derives without keepers: _derive_on fails for the keepers in `failing`, and the master's
    allocation (with derive_from) places the chunk on keepers x, y, z."""

    def __init__(self, open_keepers: str, failing: str = "") -> None:
        super().__init__(MasterClient("127.0.0.1:1"), reserve_ahead=8)  # (never called: see below)
        self.open_keepers, self.failing = frozenset(open_keepers), failing
        self.batches = self.allocations = 0
        self.derived_on: list[tuple[str, str]] = []  # (chunk id, keepers)

    def _reserve(self, exclude: set[str], length: int, goal: int, fresh: bool = False) -> _Reservation:
        assert self._ahead is not None
        taken = None if fresh else self._ahead.take()[0]
        if taken is not None:
            return taken
        self.batches += 1
        self._ahead.keep([reservation(f"ahead{self.batches}.{i}", ["p", "q", "r"], time.monotonic()) for i in (1, 2)])
        self._ahead.opened(self.open_keepers)
        return reservation(f"ahead{self.batches}.0", ["p", "q", "r"], time.monotonic())

    def _derive_on(
        self, index: int, chunk_id: str, keepers: list[cp.KeeperRef], message: kp.DeriveChunkRequest, failed: list[str]
    ) -> mp.NewChunk:
        self.derived_on.append((chunk_id, "".join(k.keeper_id for k in keepers)))
        failed += [k.keeper_id for k in keepers if k.keeper_id in self.failing]
        if failed:
            raise FsError(errno.EIO, "a keeper failed")
        return mp.NewChunk(index=index, chunk_id=chunk_id, stored_on=[k.keeper_id for k in keepers])

    def allocate(self, method: str, request: mp.AllocateChunksRequest, **_: object) -> mp.AllocateChunksReply:
        assert method == "AllocateChunks" and request.derive_from == "base"
        self.allocations += 1
        pipeline = [cp.KeeperRef(keeper_id=k, address=f"{k}:1") for k in "xyz"]
        allocation = mp.ChunkAllocation(chunk_id=f"asked{self.allocations}", pipeline=pipeline)
        return mp.AllocateChunksReply(chunks=[allocation])

    def derive_from_base(self, holders: str) -> tuple[str, list[str]]:
        refs = [cp.KeeperRef(keeper_id=k, address=f"{k}:1") for k in holders]
        chunk = self.derive(0, "base", 100, 100, [(0, b"x")], holders=refs)
        return chunk.chunk_id, list(chunk.stored_on)


@pytest.fixture
def deriving(monkeypatch: pytest.MonkeyPatch) -> Callable[..., DerivingTransfer]:
    def make(open_keepers: str, failing: str = "") -> DerivingTransfer:
        transfer = DerivingTransfer(open_keepers, failing)
        monkeypatch.setattr(transfer.master, "call", transfer.allocate)
        return transfer

    return make


def test_a_chunk_is_derived_on_its_base_s_holders_under_ids_reserved_ahead(
    deriving: Callable[..., DerivingTransfer],
) -> None:
    transfer = deriving(open_keepers="abcd")
    assert transfer.derive_from_base("abcd") == ("ahead1.0", list("abc"))  # (a goal's worth: 3)
    assert transfer.derive_from_base("bcd") == ("ahead1.2", list("bcd"))
    assert transfer.derive_from_base("abc") == ("ahead1.1", list("abc"))
    assert transfer.allocations == 0 and transfer.batches == 1  # one master call for three chunks


def test_a_base_on_a_keeper_drained_or_stalled_is_derived_where_the_master_says(
    deriving: Callable[..., DerivingTransfer],
) -> None:
    transfer = deriving(open_keepers="acd")  # (b is drained, or its disk does not answer)
    assert transfer.derive_from_base("abc") == ("asked1", list("xyz"))
    assert transfer.derive_from_base("ab") == ("asked2", list("xyz"))  # (too few holders known)
    assert transfer.derive_from_base("") == ("asked3", list("xyz"))  # (none known)
    assert transfer._ahead is not None and transfer._ahead.take()[0] is not None  # the id reserved: kept


def test_a_holder_failing_a_derive_leaves_it_to_the_master_until_the_next_batch(
    deriving: Callable[..., DerivingTransfer],
) -> None:
    transfer = deriving(open_keepers="abc", failing="b")
    assert transfer.derive_from_base("abc") == ("asked1", list("xyz"))
    assert transfer.derived_on == [("ahead1.0", "abc"), ("asked1", "xyz")]
    assert transfer.derive_from_base("abc") == ("asked2", list("xyz"))  # b is not tried again
    assert transfer.derived_on[2:] == [("asked2", "xyz")]
