"""The status text: spans and sizes as people read them, and a line per mount."""

from __future__ import annotations

from fusedfs.rpc import master_pb2 as mp
from fusedfs.statusview import age_text, status_text


def test_spans_read_in_the_largest_units_that_fit() -> None:
    assert [age_text(s) for s in (-1, 0, 59.9, 60, 3599, 3600, 3 * 3600 + 2 * 60, 86400 * 2 + 4 * 3600)] == [
        "0s", "0s", "59s", "1m", "59m", "1h00m", "3h02m", "2d04h",
    ]  # fmt: skip


def test_each_mount_shows_where_it_is_and_what_it_holds_not_yet_on_the_cluster() -> None:
    now = 1_000_000.0
    alpha = mp.MountInfo(
        host="alpha", mount_point="/mnt/shared", pid=4242, version="0.1.0",
        mounted_ns=int((now - 3 * 3600 - 120) * 1e9), writeback_bytes=12 << 20, failed_saves=2,
    )  # fmt: skip
    reply = mp.StatusReply(
        mounts=2,
        connected_mounts=[
            mp.MountStatus(info=alpha, silent_seconds=0.4, open_files=4),
            mp.MountStatus(silent_seconds=1.0),  # (a mount of before MountInfo)
        ],
    )
    lines = status_text(reply, now).splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[-1:] == ["MOUNT"])
    assert lines[header].split() == ["PID", "VERSION", "UP", "OPEN", "UNSAVED", "FAILED", "SEEN", "MOUNT"]
    assert lines[header + 1].split() == ["4242", "0.1.0", "3h02m", "4", "12.0", "MiB", "2", "0.4s", "alpha:/mnt/shared"]
    assert lines[header + 2].endswith(" 1.0s  (a mount that does not say)")
    assert "mounts: 2" in status_text(reply, now)
    assert "MOUNT" not in status_text(mp.StatusReply(), now)
