"""A chunk write's retry rule, on a fake clock: the wait bounds a silence, not a transfer."""

from __future__ import annotations

import errno
import time

import pytest

from fusedfs.client.master import MasterClient
from fusedfs.client.transfer import SENDING_ATTEMPTS, ChunkTransfer, _Attempt, _Reservation
from fusedfs.errors import FsError
from fusedfs.rpc import common_pb2 as cp

WAIT = 2.0


class ScriptedTransfer(ChunkTransfer):
    """Each attempt takes `took` seconds of the fake clock, sends bytes or not, and stores the
    chunk on as many keepers as its script says (of 3 in the pipeline)."""

    def __init__(self, clock: list[float], stored: list[int], took: float, sends: bool) -> None:
        super().__init__(MasterClient("127.0.0.1:1", wait=WAIT))  # (never called: see below)
        self.clock, self.stored, self.took, self.sends = clock, stored, took, sends
        self.attempts = 0

    def _reserve(self, exclude: set[str], length: int, goal: int) -> _Reservation:
        keepers = [cp.KeeperRef(keeper_id=k, address=f"{k}:1") for k in "abc"]
        return _Reservation(f"chunk{self.attempts}", keepers, 2, self.clock[0])

    def _push(self, reservation: _Reservation, data: bytes, crc: int) -> _Attempt:
        attempt = _Attempt(reservation.chunk_id, sent=self.sends)
        self.clock[0] += self.took
        count = self.stored[min(self.attempts, len(self.stored) - 1)]
        self.attempts += 1
        attempt.stored_on.extend("abc"[:count])
        attempt.failed.extend("abc"[count:])
        return attempt

    def abandon(self, chunk_ids: list[str]) -> None:
        pass


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))
    return now


def test_an_attempt_failing_after_seconds_of_data_is_tried_again(clock: list[float]) -> None:
    """Over a slow link one attempt outlasts the wait; a keeper failing at its end (a ping timed
    out behind the data) leaves the chunk on one keeper, and another attempt stores it whole."""
    transfer = ScriptedTransfer(clock, stored=[1, 3], took=5 * WAIT, sends=True)
    assert transfer.write(0, b"x" * 100).chunk_id == "chunk1"


def test_an_attempt_that_sent_nothing_is_not_once_the_wait_is_over(clock: list[float]) -> None:
    transfer = ScriptedTransfer(clock, stored=[1, 3], took=5 * WAIT, sends=False)
    with pytest.raises(FsError) as e:
        transfer.write(0, b"x" * 100)
    assert e.value.errno == errno.EIO and transfer.attempts == 1


def test_attempts_that_send_bytes_and_fail_are_not_made_forever(clock: list[float]) -> None:
    transfer = ScriptedTransfer(clock, stored=[0], took=5 * WAIT, sends=True)
    with pytest.raises(FsError) as e:
        transfer.write(0, b"x" * 100)
    assert e.value.errno == errno.EIO and SENDING_ATTEMPTS < transfer.attempts <= SENDING_ATTEMPTS + 1
