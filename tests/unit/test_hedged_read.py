"""Hedged reads: a replica that does not answer in time has the next one asked too, unless its
pieces are still coming (a slow link, which another replica asked too would only share)."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import REGISTRY

from fusedfs.chunks import MiB
from fusedfs.client import transfer as transfer_module
from fusedfs.client.master import MasterClient
from fusedfs.client.transfer import ChunkTransfer, RangeRead, _Reading
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import master_pb2 as mp

PIECES = 8
HEDGE = 0.2  # HEDGE_BASE here, to keep the test short


class PacedReplicas(ChunkTransfer):
    """Replica "slow" sends a piece every `pace` seconds, but stops after `stops_after` of them
    (until released); any other replica answers at once. Notes which replicas were asked."""

    def __init__(self, pace: float, stops_after: int) -> None:
        super().__init__(MasterClient("127.0.0.1:1"))  # (never called)
        self.pace, self.stops_after = pace, stops_after
        self.asked: list[str] = []
        self.released = threading.Event()

    def _read_from(self, reading: _Reading, read: RangeRead) -> list[memoryview]:
        self.asked.append(reading.replica.keeper_id)
        if reading.replica.keeper_id != "slow":
            return [memoryview(b"fast")]
        for _ in range(min(self.stops_after, PIECES)):
            time.sleep(self.pace)
            reading.last_piece = time.monotonic()
        if self.stops_after < PIECES:
            self.released.wait()
        return [memoryview(b"slow")]


def hedged_from_slow() -> float:
    return REGISTRY.get_sample_value("fusedfs_client_hedged_reads_total", {"keeper": "slow:1"}) or 0.0


def read(transfer: ChunkTransfer) -> list[memoryview] | None:
    ref = mp.ChunkRef(chunk_id="c", length=PIECES * MiB, stored_length=PIECES * MiB)
    replicas = [cp.KeeperRef(keeper_id=k, address=f"{k}:1") for k in ("slow", "other")]
    return transfer._read_hedged(replicas, RangeRead(ref, 0, PIECES * MiB), [])


@pytest.fixture(autouse=True)
def short_hedge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer_module, "HEDGE_BASE", HEDGE)


def test_a_replica_whose_pieces_keep_coming_is_not_hedged() -> None:
    transfer = PacedReplicas(pace=HEDGE / 2, stops_after=PIECES)  # (the whole read: 4 times the hedge)
    hedged = hedged_from_slow()
    assert read(transfer) == [memoryview(b"slow")]
    assert transfer.asked == ["slow"] and hedged_from_slow() == hedged


def test_a_replica_whose_pieces_stop_coming_is() -> None:
    transfer = PacedReplicas(pace=HEDGE / 2, stops_after=3)
    hedged = hedged_from_slow()
    try:
        assert read(transfer) == [memoryview(b"fast")]
        assert transfer.asked == ["slow", "other"] and hedged_from_slow() == hedged + 1  # (the metric names it)
    finally:
        transfer.released.set()
