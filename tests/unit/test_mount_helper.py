"""mount.fusedfs: mount(8)'s helper call turned into `fusedfs mount` arguments."""

from __future__ import annotations

import pytest

from fusedfs.errors import FsError
from fusedfs.mount.helper import kernel_options, mount_args


def test_an_fstab_lines_options_are_sorted_out() -> None:
    args = mount_args(["m:3000", "/mnt/f", "-o", "defaults,_netdev,nofail,x-systemd.automount,comment=x"])
    assert args == ["mount", "m:3000", "/mnt/f", "--daemon"]
    args = mount_args(["m", "/mnt/f", "-n", "-o", "cache_mib=256,wait=5,no-short-circuit,noexec,ro", "-t", "fusedfs"])
    assert args == [
        "mount", "m", "/mnt/f", "--daemon", "--cache-mib", "256", "--wait", "5", "--no-short-circuit", "-o", "noexec,ro"
    ]  # fmt: skip
    assert mount_args(["m", "/mnt/f", "-o", "metrics=0.0.0.0:9567"]) == [
        "mount",
        "m",
        "/mnt/f",
        "--daemon",
        "--metrics",
        "0.0.0.0:9567",
    ]
    assert mount_args(["m", "/mnt/f", "-o", "secret_file=/etc/fusedfs/secret"]) == [
        "mount", "m", "/mnt/f", "--daemon", "--secret-file", "/etc/fusedfs/secret"
    ]  # fmt: skip
    assert mount_args(["m", "/mnt/f", "-r"]) == ["mount", "m", "/mnt/f", "--daemon", "-o", "ro"]
    assert mount_args(["m", "/mnt/f", "-f", "-o", "ro"]) is None  # a fake mount: nothing to do
    assert mount_args(["m", "/mnt/f", "-s", "-o", "bogus,noexec"]) == [
        "mount",
        "m",
        "/mnt/f",
        "--daemon",
        "-o",
        "noexec",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["m", "/mnt/f", "-o", "bogus"],  # unknown: an error, not dropped in silence
        ["m", "/mnt/f", "-o", "cache-mib"],  # a value option without its value
        ["m", "/mnt/f", "-o", "no-short-circuit=1"],
        ["m", "/mnt/f", "-N", "1234"],
        ["m", "/mnt/f", "-x"],
        ["m"],
        ["m", "/mnt/f", "-o"],
    ],
)
def test_mistakes_are_refused(argv: list[str]) -> None:
    with pytest.raises(FsError):
        mount_args(argv)


def test_kernel_options_last_of_two_opposites_wins() -> None:
    assert kernel_options(["ro,noexec", "rw"]) == {"noexec"}  # (rw, exec, async: the defaults)
    assert kernel_options(["rw", "ro", "sync", "nodev"]) == {"ro", "sync", "nodev"}
    with pytest.raises(FsError):
        kernel_options(["relatime"])  # libfuse 3 refuses it
