"""Lines that repeat are held back, and counted."""

from __future__ import annotations

import logging
import time

import pytest

from fusedfs.logs import Repeating


def test_a_repeating_line_goes_once_a_while_with_the_count_held_back(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.repeating")
    repeating = Repeating(logger, every=0.2)
    with caplog.at_level(logging.INFO, logger="test.repeating"):
        for _ in range(50):
            repeating.info(("write", "k1"), "write to %s failed", "k1")
        repeating.info(("write", "k2"), "write to %s failed", "k2")  # another key: at once
        time.sleep(0.25)
        repeating.info(("write", "k1"), "write to %s failed", "k1")
        repeating.info(("write", "k1"), "write to %s failed", "k1")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == ["write to k1 failed", "write to k2 failed"], lines
    assert len(lines) == 3 and lines[2].startswith("write to k1 failed (and 49 more like it in the last 0"), lines


def test_nothing_is_counted_below_the_loggers_level(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.repeating.quiet")
    repeating = Repeating(logger, every=0.2)
    with caplog.at_level(logging.WARNING, logger="test.repeating.quiet"):
        repeating.info("k", "hidden")
        repeating.warning("k", "shown")
    assert [r.getMessage() for r in caplog.records] == ["shown"]
