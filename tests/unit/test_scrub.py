"""The keeper's background scrub: finds rotten and vanished chunks, paces itself."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from fusedfs.chunkfile import CorruptChunk
from fusedfs.keeper.chunkstore import DAMAGED_KEPT, ChunkStore, prune_damaged
from fusedfs.keeper.scrub import Scrubber, pause_after_chunk
from tests.unit.test_chunkstore import store_chunk


def test_pacing_spreads_a_pass_over_the_interval() -> None:
    assert pause_after_chunk(100.0, 10, spent=1.0) == 9.0
    assert pause_after_chunk(100.0, 10, spent=20.0) == 0.0  # behind: no rest
    assert pause_after_chunk(5.0, 0, spent=0.0) == 5.0


def test_a_pass_sets_rotten_replicas_aside_and_forgets_vanished_ones(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    ids = [f"{n:016x}" for n in (1, 2, 3)]
    for chunk_id in ids:
        store_chunk(store, os.urandom(200_000), chunk_id=chunk_id)
    store.drain_changes()
    rotten = store._path(ids[1])
    with open(rotten, "r+b") as f:  # one flipped byte in the data, as bit rot does
        f.seek(-1000, os.SEEK_END)
        byte = f.read(1)
        f.seek(-1000, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x40]))
    store._path(ids[2]).unlink()  # deleted behind the keeper's back
    scrubber = Scrubber(store, interval=0.0, stop=threading.Event())
    scrubber.scrub_pass()
    assert (scrubber.stats.checked, scrubber.stats.bad, scrubber.stats.missing, scrubber.stats.passes) == (2, 1, 1, 1)
    assert store.chunk_ids() == [ids[0]]
    assert sorted(store.drain_changes()[1]) == ids[1:]  # the next heartbeat reports both gone
    # The rotten copy is kept aside, not served, and deleted only once it is DAMAGED_KEPT old.
    assert not rotten.exists()
    [aside] = (tmp_path / "damaged").iterdir()
    assert aside.name.startswith(ids[1] + ".")
    prune_damaged(tmp_path / "damaged", time.time() + DAMAGED_KEPT - 60)
    assert aside.exists()
    ChunkStore(tmp_path)  # (a start prunes too)
    assert aside.exists()
    prune_damaged(tmp_path / "damaged", time.time() + DAMAGED_KEPT + 60)
    assert not aside.exists()


def test_a_chunk_its_disk_cannot_read_is_set_aside_and_the_pass_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad sector under a chunk file (reads fail with EIO, the commonest disk fault) is a
    damaged copy like rot: set aside, so the master copies a good one; and the scrub's pass goes
    on to the chunks after it (an error ended the pass, and the next began with the same file)."""
    store = ChunkStore(tmp_path)
    ids = [f"{n:016x}" for n in (1, 2, 3)]
    for chunk_id in ids:
        store_chunk(store, os.urandom(200_000), chunk_id=chunk_id)
    store.drain_changes()
    real_pread = os.pread

    def failing_pread(fd: int, size: int, offset: int) -> bytes:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(ids[1]) and offset >= 4096:
            raise OSError(errno.EIO, "Input/output error")
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", failing_pread)
    with pytest.raises(CorruptChunk, match="its disk cannot read it"):
        list(store.read(ids[1]))
    scrubber = Scrubber(store, interval=0.0, stop=threading.Event())
    scrubber.scrub_pass()
    assert (scrubber.stats.checked, scrubber.stats.bad, scrubber.stats.passes) == (3, 1, 1)
    assert store.chunk_ids() == [ids[0], ids[2]] and store.drain_changes()[1] == [ids[1]]
    assert [p.name.split(".")[0] for p in (tmp_path / "damaged").iterdir()] == [ids[1]]
