"""Chunk ids reserved ahead for small chunks: used while fresh, dropped with a failing keeper."""

from __future__ import annotations

import time

import pytest

from fusedfs.client.transfer import RESERVATION_MAX_AGE, _Reservation, _ReservedAhead
from fusedfs.rpc import common_pb2 as cp


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
