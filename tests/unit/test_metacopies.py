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
    first, pieces, _ = newest
    assert first.taken_ns == 9 and b"".join(pieces) == b"copy 9 " * 1000
    assert first.crc32c == crc32c(b"copy 9 " * 1000) and first.cluster_id == "c1"
    assert len(list((tmp_path / "metadata").glob("*.sqlite3"))) == KEEP
    assert len(list((tmp_path / "metadata").glob("*.journal"))) == KEEP  # each copy's own
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
        f"{t:020d}" for t in (7, 7, 8, 8, 9, 9)
    ]  # and nothing half-written left behind
    assert MetadataCopies(tmp_path, lambda: "").newest() is not None  # (reading needs no cluster)
    with pytest.raises(FsError):  # a keeper that never registered takes no copy
        MetadataCopies(tmp_path, lambda: "").put(header(b"x", 20), [b"x"])


def entry(seq: int) -> kp.JournalEntry:
    return kp.JournalEntry(seq=seq, table="meta", values=[kp.JournalValue(text="k"), kp.JournalValue(integer=seq)])


def changes(taken: int, *seqs: int, cluster: str = "c1") -> kp.MetadataJournal:
    return kp.MetadataJournal(cluster_id=cluster, copy_taken_ns=taken, entries=[entry(s) for s in seqs])


def test_changes_after_a_copy_are_kept_in_order_without_gaps(tmp_path: Path) -> None:
    copies = MetadataCopies(tmp_path, lambda: "c1")
    data = b"copy"
    first = header(data, 5)
    first.journal_seq = 10  # the copy holds the changes up to 10
    copies.put(first, [data])
    assert copies.append_journal(changes(5)) == 10
    assert copies.append_journal(changes(5, 11, 12)) == 12
    assert copies.append_journal(changes(5, 11, 12, 13)) == 13  # sent again: taken once
    assert copies.append_journal(changes(5, 15, 16)) == 13  # a gap: refused, the master resends
    with pytest.raises(FsError) as error:
        copies.append_journal(changes(6, 14))  # no such copy here
    assert error.value.errno == errno.ENOENT
    with pytest.raises(FsError) as error:
        copies.append_journal(changes(5, 14, cluster="c2"))
    assert error.value.errno == errno.EXDEV
    newest = copies.newest()
    assert newest is not None
    got, _, journal = newest
    assert got.journal_seq == 10 and [e.seq for e in journal] == [11, 12, 13]

    # A crash tears the last record: a keeper started again holds the changes before it.
    path = next((tmp_path / "metadata").glob("*.journal"))
    whole = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x00\x00\x00\x30torn")
    again = MetadataCopies(tmp_path, lambda: "c1")
    assert again.append_journal(changes(5, 14)) == 14
    assert path.stat().st_size > whole
    newest = again.newest()
    assert newest is not None and [e.seq for e in newest[2]] == [11, 12, 13, 14]

    # A newer copy: the journal goes on from it; the old copies' journals go with them.
    for taken in (6, 7, 8):
        newer = header(data, taken)
        newer.journal_seq = 100 + taken
        again.put(newer, [data])
    assert again.append_journal(changes(8, 109)) == 109
    assert len(list((tmp_path / "metadata").glob("*.journal"))) == KEEP
    newest = again.newest()
    assert newest is not None and newest[0].journal_seq == 108 and [e.seq for e in newest[2]] == [109]
