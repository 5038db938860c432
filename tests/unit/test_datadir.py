"""The data folder of a master or keeper: one process at a time, private to its user."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

import pytest

from fusedfs.datadir import lock_data_dir
from fusedfs.errors import FsError


def test_a_data_folder_is_locked_and_private(tmp_path: Path) -> None:
    folder = tmp_path / "keeper"
    folder.mkdir(mode=0o755)  # as an operator may have made it
    lock = lock_data_dir(folder, "keeper")
    try:
        # Every file's bytes live here: other users must go through the mount's permissions.
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        with pytest.raises(FsError) as caught:
            lock_data_dir(folder, "keeper")
        assert caught.value.errno == errno.EBUSY and "one keeper per data folder" in caught.value.message
    finally:
        lock.close()
    lock_data_dir(tmp_path / "new" / "master", "master").close()
    assert stat.S_IMODE((tmp_path / "new" / "master").stat().st_mode) == 0o700
