"""Which keeper folders a client reads chunks from directly (short-circuit reads)."""

from __future__ import annotations

from pathlib import Path

from fusedfs.client.shortcircuit import readable_folder
from fusedfs.keeper.chunkstore import ChunkStore
from fusedfs.rpc import keeper_pb2 as kp


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
