"""A chunk write's retry rule, on a fake clock: the wait bounds a silence, not a transfer."""

from __future__ import annotations

import errno
import time

import pytest

from fusedfs.client.master import MasterClient
from fusedfs.client.transfer import RETRY_GRACE, SENDING_ATTEMPTS, ChunkTransfer, _Attempt, _Reservation
from fusedfs.errors import FsError
from fusedfs.rpc import common_pb2 as cp


class ScriptedTransfer(ChunkTransfer):
    """Attempt i takes script[i]'s seconds of the fake clock, sends bytes or not, and stores the
    chunk on so many keepers (of 3 in the pipeline); the last entry stands for any later one."""

    def __init__(self, clock: list[float], wait: float, script: list[tuple[float, bool, int]]) -> None:
        super().__init__(MasterClient("127.0.0.1:1", wait=wait))  # (never called: see below)
        self.clock, self.script = clock, script
        self.attempts = 0

    def _reserve(self, exclude: set[str], length: int, goal: int, fresh: bool = False) -> _Reservation:
        keepers = [cp.KeeperRef(keeper_id=k, address=f"{k}:1") for k in "abc"]
        return _Reservation(f"chunk{self.attempts}", keepers, 2, self.clock[0])

    def _push(self, reservation: _Reservation, data: bytes, crc: int) -> _Attempt:
        took, sent, stored = self.script[min(self.attempts, len(self.script) - 1)]
        self.attempts += 1
        self.clock[0] += took
        return _Attempt(reservation.chunk_id, stored_on=list("abc"[:stored]), failed=list("abc"[stored:]), sent=sent)

    def abandon(self, chunk_ids: list[str]) -> None:
        pass


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))
    return now


def write(transfer: ScriptedTransfer) -> str:
    return transfer.write(0, b"x" * 100).chunk_id


def test_an_attempt_failing_after_seconds_of_data_is_tried_again(clock: list[float]) -> None:
    """Over a slow link one attempt outlasts the wait; a keeper failing at its end (a ping timed
    out behind the data) leaves the chunk on one keeper, and another attempt stores it whole."""
    transfer = ScriptedTransfer(clock, wait=2, script=[(10, True, 1), (10, True, 3)])
    assert write(transfer) == "chunk1"


def test_an_attempt_that_sent_nothing_is_not_once_the_wait_is_over(clock: list[float]) -> None:
    transfer = ScriptedTransfer(clock, wait=2, script=[(10, False, 1), (10, True, 3)])
    with pytest.raises(FsError) as e:
        write(transfer)
    assert e.value.errno == errno.EIO and transfer.attempts == 1


def test_a_cluster_cut_off_late_in_a_transfer_fails_it_soon_after_the_wait(clock: list[float]) -> None:
    """Bytes went for 28 s of a 30 s wait, then the keepers were cut off: the attempts after it
    fail at once, and the write gives up RETRY_GRACE after the first failed, not a wait after."""
    started = clock[0]
    transfer = ScriptedTransfer(clock, wait=30, script=[(28, True, 0), (0.1, False, 0)])
    with pytest.raises(FsError) as e:
        write(transfer)
    assert e.value.errno == errno.EIO and 28 + RETRY_GRACE <= clock[0] - started < 28 + RETRY_GRACE + 1


def test_attempts_that_send_bytes_and_fail_are_not_made_forever(clock: list[float]) -> None:
    transfer = ScriptedTransfer(clock, wait=2, script=[(10, True, 0)])
    with pytest.raises(FsError) as e:
        write(transfer)
    assert e.value.errno == errno.EIO and SENDING_ATTEMPTS < transfer.attempts <= SENDING_ATTEMPTS + 1
