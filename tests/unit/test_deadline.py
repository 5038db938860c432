"""One deadline per operation: the calls a mount's request makes share it."""

from __future__ import annotations

import contextvars
import time

import pytest

from fusedfs.client.master import LAST_TRY, MasterClient, one_deadline, own_deadline, progressed


def test_the_calls_of_one_operation_share_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    master = MasterClient("127.0.0.1:1", wait=30)
    assert master.deadline().wait == 30  # outside any operation: each call its own wait
    with one_deadline(10):
        assert master.deadline().wait == 10 and master.deadline(wait=5).wait == 5
        now[0] += 7  # the first call took 7 s: the next gets what is left
        assert master.deadline().wait == 3
        with one_deadline(30):  # (nested: the outer one holds)
            assert master.deadline().wait == 3
        detached = contextvars.copy_context()  # a background task started within it
        detached.run(own_deadline)
        assert detached.run(lambda: master.deadline().wait) == 30
        assert master.deadline().wait == 3  # (the operation's own is untouched)
        now[0] += 5  # past it: a last try, for a master that answered late and is back
        assert master.deadline().wait == LAST_TRY
        progressed()  # an upload it waited for ended: it starts anew
        assert master.deadline().wait == 10
    assert master.deadline().wait == 30
    master.pool.close()
