"""Metadata copies on a keeper: only whole, undamaged copies of its own cluster, newest kept."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest

from fusedfs.chunks import crc32c
from fusedfs.errors import FsError
from fusedfs.keeper.metacopies import KEEP, MetadataCopies
from fusedfs.rpc import keeper_pb2 as kp


def header(data: bytes, taken: int, cluster: str = "c1", crc: int | None = None) -> kp.MetadataCopyHeader:
    return kp.MetadataCopyHeader(
        cluster_id=cluster, taken_ns=taken, length=len(data), crc32c=crc32c(data) if crc is None else crc
    )


def test_keeps_the_newest_whole_copies_of_its_own_cluster(tmp_path: Path) -> None:
    copies = MetadataCopies(tmp_path, lambda: "c1")
    assert copies.newest() is None
    for taken in (5, 3, 9, 7, 8):
        data = b"copy %d " % taken * 1000
        copies.put(header(data, taken), [data[:10], data[10:]])
    newest = copies.newest()
    assert newest is not None
    first, pieces = newest
    assert first.taken_ns == 9 and b"".join(pieces) == b"copy 9 " * 1000
    assert first.crc32c == crc32c(b"copy 9 " * 1000) and first.cluster_id == "c1"
    assert len(list((tmp_path / "metadata").iterdir())) == KEEP
    refused = [
        (header(b"x", 10, cluster="c2"), [b"x"]),  # another cluster's master
        (header(b"xy", 11), [b"x"]),  # cut short
        (header(b"xy", 12), [b"xyz"]),  # too long
        (header(b"xy", 13, crc=1), [b"xy"]),  # damaged
        (header(b"x", time.time_ns() + 2 * 86_400 * 10**9), [b"x"]),  # "newest" for days to come
    ]
    for bad, pieces_sent in refused:
        with pytest.raises(FsError) as error:
            copies.put(bad, pieces_sent)
        assert error.value.errno in (errno.EXDEV, errno.EINVAL)
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "metadata").iterdir()) == [
        f"{t:020d}" for t in (7, 8, 9)
    ]  # and nothing half-written left behind
    assert MetadataCopies(tmp_path, lambda: "").newest() is not None  # (reading needs no cluster)
    with pytest.raises(FsError):  # a keeper that never registered takes no copy
        MetadataCopies(tmp_path, lambda: "").put(header(b"x", 20), [b"x"])
