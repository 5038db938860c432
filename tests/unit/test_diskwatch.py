"""Noticing a disk that stops answering: the watch, the store's refusal, the client's laggard rule."""

from __future__ import annotations

import concurrent.futures
import errno
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fusedfs.chunks import crc32c
from fusedfs.client.transfer import wait_but_for_a_laggard
from fusedfs.errors import FsError
from fusedfs.keeper.chunkstore import ChunkStore, DiskNotAnswering
from fusedfs.keeper.diskwatch import DiskWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_oldest_operation_in_flight_counts_once_past_the_limit() -> None:
    clock = Clock()
    watch = DiskWatch(stall_after=5.0, clock=clock)
    assert watch.waiting_for() == 0.0 and watch.stalled_for() == 0.0
    with watch.op():
        clock.now += 3.0
        with watch.op():  # a younger one does not hide the older one
            clock.now += 1.0
            assert watch.waiting_for() == 4.0 and watch.stalled_for() == 0.0  # slow, not stalled
            clock.now += 2.0
            assert watch.stalled_for() == 6.0
        assert watch.stalled_for() == 6.0
    assert watch.waiting_for() == 0.0 and watch.stalled_for() == 0.0  # it answered
    with pytest.raises(OSError), watch.op():
        raise OSError(errno.EIO, "failed outright")  # an operation that fails is over too
    assert watch.waiting_for() == 0.0


def test_a_store_whose_disk_does_not_answer_refuses_new_writes_at_once(tmp_path: Path) -> None:
    clock = Clock()
    store = ChunkStore(tmp_path)
    store.watch = DiskWatch(stall_after=5.0, clock=clock)
    with store.watch.op():  # e.g. a probe stuck in fdatasync
        clock.now += 5.0
        with pytest.raises(FsError) as refused:
            store.begin_write("00000000000000a1", 10, crc32c(b"0123456789"))
        assert refused.value.errno == errno.EIO and "has not answered for 5 s" in refused.value.message
    writer = store.begin_write("00000000000000a1", 10, crc32c(b"0123456789"))  # answers again
    writer.write(b"0123456789")
    writer.commit()
    store.probe()
    assert store.chunk_ids() == ["00000000000000a1"] and store.watch.waiting_for() == 0.0


def done_future(value: Any = None) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_result(value)
    return future


def test_a_write_step_the_disk_does_not_finish_in_time_fails_and_goes_on_alone(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    store.watch.stall_after = 0.2
    disk_answers = threading.Event()
    started = time.monotonic()
    with pytest.raises(DiskNotAnswering) as given_up:
        store.answered(disk_answers.wait)
    assert 0.2 <= time.monotonic() - started < 2
    assert given_up.value.errno == errno.EIO and "has not answered" in given_up.value.message
    assert not given_up.value.step.done()  # (its thread waits on; what follows it waits for it)
    disk_answers.set()
    assert given_up.value.step.result(timeout=2) is True
    assert store.answered(lambda: 42) == 42


def test_the_last_keeper_of_a_small_write_gets_a_grace_once_the_others_answered() -> None:
    # (concurrent.futures' Future has the add_done_callback of gRPC's.)
    never: concurrent.futures.Future[Any] = concurrent.futures.Future()
    started = time.monotonic()
    calls: list[Any] = [done_future(), never, done_future()]
    wait_but_for_a_laggard(calls, 0.2)
    assert 0.2 <= time.monotonic() - started < 2 and not never.done()

    # Answers within the grace are waited for; a single keeper (goal 1, a pipeline) is waited for whole.
    for count in (3, 1):
        late: concurrent.futures.Future[Any] = concurrent.futures.Future()
        threading.Timer(0.3, late.set_result, [None]).start()
        started = time.monotonic()
        calls = [late] + [done_future() for _ in range(count - 1)]
        wait_but_for_a_laggard(calls, 0.6 if count > 1 else 0.01)
        assert late.done() and time.monotonic() - started >= 0.29


def test_when_every_keeper_is_slow_the_last_is_given_more_time() -> None:
    # (A loaded machine: the others took 0.3 s; the last, 0.9 s, is not a laggard at 4 times that.)
    futures: list[Any] = [concurrent.futures.Future() for _ in range(3)]
    for future, after in zip(futures, (0.3, 0.3, 0.9), strict=True):
        threading.Timer(after, future.set_result, [None]).start()
    wait_but_for_a_laggard(futures, 0.1)
    assert all(f.done() for f in futures)
