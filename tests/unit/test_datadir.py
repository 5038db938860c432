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


def test_a_data_folder_that_cannot_be_made_is_one_readable_error_naming_it(tmp_path: Path) -> None:
    """(A mount whose cache disk was full said only "No space left on device".)"""
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(FsError) as caught:
        lock_data_dir(tmp_path / "a-file" / "mount-1", "mount")
    assert caught.value.errno in (errno.ENOTDIR, errno.EEXIST)
    assert caught.value.message.startswith(f"cannot use {tmp_path / 'a-file' / 'mount-1'} as the mount's folder: ")
