"""`mount.fusedfs`: the helper mount(8) runs for `mount -t fusedfs` and /etc/fstab lines, so a
machine mounts the cluster at boot as it mounts its disks (MooseFS, JuiceFS and SeaweedFS do so):

    # /etc/fstab
    mastername:3000  /mnt/fusedfs  fusedfs  _netdev,cache-mib=256,noatime  0 0

mount(8) calls `mount.fusedfs SPEC DIR [-sfnvrw] [-o OPTIONS]`; this turns that into
`fusedfs mount SPEC DIR --daemon ...`: the mount's own options (`wait=S`, `cache-mib=N`, ...,
as `fusedfs mount` spells them, `_` or `-`), the kernel's generic ones (ro, noexec, ...) passed
through, and mount(8)'s own (`_netdev`, `nofail`, `x-systemd.*`, ...) left to it. An unknown
option is an error, not silently dropped (unless -s, sloppy, as mount(8) defines it).
"""

from __future__ import annotations

import sys

from fusedfs.errors import FsError

# `fusedfs mount`'s options: those taking a value, and flags.
VALUE_OPTIONS = (
    "wait", "attr-timeout", "negative-timeout", "cache-mib", "cache-dir", "writeback-mib", "metrics", "secret-file",
)  # fmt: skip
FLAG_OPTIONS = ("no-short-circuit",)
# Generic options the kernel applies to a FUSE mount (those libfuse 3 takes; it refuses
# relatime, nodiratime and lazytime, and suid/dev do not lift FUSE's nosuid,nodev).
KERNEL_OPTIONS = frozenset({"ro", "rw", "noexec", "exec", "nosuid", "nodev", "noatime", "sync", "async", "dirsync"})
_OPPOSITE = {"ro": "rw", "rw": "ro", "noexec": "exec", "exec": "noexec", "sync": "async", "async": "sync"}
_DEFAULTS = {"rw", "exec", "async"}
# Options for mount(8) itself and systemd: not ours to act on.
USERSPACE_OPTIONS = frozenset(
    {"defaults", "_netdev", "auto", "noauto", "user", "nouser", "users", "owner", "group", "nofail"}
)
USERSPACE_PREFIXES = ("x-", "comment=")


def mount_args(argv: list[str]) -> list[str] | None:
    """The `fusedfs` arguments for a helper call `SPEC DIR [-sfnvrw] [-o OPTIONS]` (None: -f,
    a fake mount: nothing to do). FsError (EINVAL) for what cannot be done."""
    positional: list[str] = []
    options: list[str] = []
    sloppy = fake = False
    args = iter(argv)
    for arg in args:
        if arg in ("-o", "-t", "-N"):
            value = next(args, None)
            if value is None:
                raise FsError(22, f"{arg} needs a value")
            if arg == "-o":
                options += [o for o in value.split(",") if o]
            elif arg == "-N":
                raise FsError(22, "mounting in another namespace (-N) is not supported")
        elif arg.startswith("-o") and len(arg) > 2:
            options += [o for o in arg[2:].split(",") if o]
        elif arg.startswith("-") and len(arg) > 1:
            for flag in arg[1:]:
                if flag not in "sfnvrw":
                    raise FsError(22, f"unknown flag -{flag}")
                sloppy |= flag == "s"
                fake |= flag == "f"
                if flag in "rw":
                    options.append("ro" if flag == "r" else "rw")
        else:
            positional.append(arg)
    if len(positional) != 2:
        raise FsError(22, "usage: mount.fusedfs MASTER MOUNTPOINT [-sfnvrw] [-o OPTIONS]")
    if fake:
        return None
    ours: list[str] = []
    kernel: list[str] = []
    for option in options:
        key, has_value, value = option.partition("=")
        name = key.replace("_", "-")
        if option in USERSPACE_OPTIONS or option.startswith(USERSPACE_PREFIXES):
            continue
        if option in KERNEL_OPTIONS:
            kernel.append(option)
        elif name in VALUE_OPTIONS and has_value and value:
            ours += [f"--{name}", value]
        elif name in FLAG_OPTIONS and not has_value:
            ours.append(f"--{name}")
        elif not sloppy:
            known = ", ".join([f"{o}=..." for o in VALUE_OPTIONS] + list(FLAG_OPTIONS) + sorted(KERNEL_OPTIONS))
            raise FsError(22, f"unknown mount option {option!r} (fusedfs takes: {known})")
    spec, mountpoint = positional
    return ["mount", spec, mountpoint, "--daemon", *ours, *(["-o", ",".join(kernel)] if kernel else [])]


def kernel_options(options: list[str]) -> frozenset[str]:
    """The kernel options to mount with, of these (comma-separated lists too) given in order:
    of two opposites the last wins, as with mount(8). FsError (EINVAL) for one it does not take."""
    chosen: set[str] = set()
    for option in (o for given in options for o in given.split(",") if o):
        if option not in KERNEL_OPTIONS:
            raise FsError(
                22, f"unknown kernel mount option {option!r} (fusedfs takes: {', '.join(sorted(KERNEL_OPTIONS))})"
            )
        chosen.discard(_OPPOSITE.get(option, ""))
        chosen.add(option)
    return frozenset(chosen - _DEFAULTS)


def main() -> int:
    from fusedfs.cli import main as fusedfs_main

    try:
        args = mount_args(sys.argv[1:])
    except FsError as e:
        print(f"mount.fusedfs: error: {e.message}", file=sys.stderr)
        return 1
    return 0 if args is None else fusedfs_main(args)


if __name__ == "__main__":
    sys.exit(main())
