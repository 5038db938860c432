"""Which keeper folders a client reads chunks from directly (short-circuit reads)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pytest import MonkeyPatch

from fusedfs.client.shortcircuit import ShortCircuit, readable_folder
from fusedfs.grpcutil import ChannelPool
from fusedfs.keeper.chunkstore import ChunkStore
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import keeper_pb2 as kp
from fusedfs.rpc import master_pb2 as mp


def test_a_folder_is_read_only_when_it_holds_the_keepers_id(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "keeper")
    keeper_id = store.keeper_id()
    said = kp.DataFolder(keeper_id=keeper_id, path=str(store.root))
    assert readable_folder(said, keeper_id) == store.root
    # Another keeper's folder (same path on another machine, a copy): not taken for this one's.
    other = ChunkStore(tmp_path / "other").keeper_id()
    assert readable_folder(kp.DataFolder(keeper_id=other, path=str(store.root)), other) is None
    # A keeper that says it is another than the one asked (its address reused), or a folder
    # this machine does not have.
    assert readable_folder(said, other) is None
    assert readable_folder(kp.DataFolder(keeper_id=keeper_id, path=str(tmp_path / "gone")), keeper_id) is None
    assert readable_folder(kp.DataFolder(keeper_id=keeper_id), keeper_id) is None


def test_a_read_here_is_waited_for_at_once_only_while_the_disk_is_idle_and_quick(monkeypatch: MonkeyPatch) -> None:
    """The mount's event loop waits a moment for a small read from this machine's disk (sparing
    its wake-up by the thread) only when no other read is under way and reads were quick lately:
    a disk that hangs, or is slow, is waited for as a keeper's answer is."""
    local = ShortCircuit(ChannelPool(), enabled=False)
    disk = threading.Event()
    monkeypatch.setattr(local, "pieces", lambda *_: disk.wait() and [])
    keeper, ref = cp.KeeperRef(keeper_id="k"), mp.ChunkRef(chunk_id="c")
    assert local.idle_and_quick(0.002)
    hanging = local.submit(keeper, ref, 0, 4096)
    try:
        assert not local.idle_and_quick(0.002)  # (one under way)
        time.sleep(0.05)
    finally:
        disk.set()
    hanging.result()
    assert not local.idle_and_quick(0.002)  # (none under way, but that one took 50 ms)
    for _ in range(50):
        local.submit(keeper, ref, 0, 4096).result()
    assert local.idle_and_quick(0.002)  # (quick again)
