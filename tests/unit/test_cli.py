"""The command line's own rules, without running what it starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fusedfs import cli, local


def test_up_mounts_at_the_folder_given_and_nowhere_with_an_empty_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """`fusedfs up --mount ''` mounted the cluster over the current folder (Path("") is ".")."""
    started: list[Any] = []

    def run_local_cluster(*args: Any) -> int:
        started.append(args[3])  # (where to mount: None for nowhere)
        return 0

    monkeypatch.setattr(local, "run_local_cluster", run_local_cluster)
    assert cli.main(["up", "--mount", ""]) == 0
    assert cli.main(["up", "--mount", "here"]) == 0
    assert cli.main(["up"]) == 0
    assert started == [None, Path("here"), Path("fusedfs-mnt")]
