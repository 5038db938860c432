"""`fusedfs mount MASTER MOUNTPOINT`: mounts in the foreground until unmounted or signalled."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import inspect
import logging
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from fusedfs.client.master import MasterClient
from fusedfs.datadir import lock_data_dir
from fusedfs.errors import FsError
from fusedfs.metrics import serve_metrics
from fusedfs.mount.operations import Operations, translate_errors
from fusedfs.mount.writeback import WriteBack, left_behind
from fusedfs.rpc import common_pb2 as cp

log = logging.getLogger(__name__)
_HANDLER_CODE = translate_errors(Operations.read).__code__  # the wrapper around every request handler


def mount_options(fsname: str, kernel_options: frozenset[str] = frozenset()) -> set[str]:
    options = set(pyfuse3.default_options)
    options.discard("default_permissions")
    # The kernel checks permissions against our attributes; other users may enter (as on any disk).
    # Reads do not update atime (a master change per file read; JuiceFS's default too): noatime
    # says so to programs that look (it showed relatime, which they take to mean it is kept).
    options |= {f"fsname={fsname}", "subtype=fusedfs", "default_permissions", "allow_other", "noatime"}
    return options | kernel_options


def _as_in_mount_table(path: str) -> str:
    """A path as /proc/*/mounts and mountinfo write it (whitespace and backslashes octal-escaped)."""
    for raw, code in (("\\", "\\134"), (" ", "\\040"), ("\t", "\\011"), ("\n", "\\012")):
        path = path.replace(raw, code)
    return path


def clear_dead_mount(mountpoint: Path) -> bool:
    """A fusedfs mount whose process died leaves "Transport endpoint is not connected" at its
    mount point; this takes it away (lazily: a program still inside gets errors, not a hang),
    so that mounting there again just works. True if there was one."""
    try:
        os.stat(mountpoint)
        return False
    except OSError as e:
        if e.errno != errno.ENOTCONN:
            return False
    real = os.path.realpath(mountpoint)
    ours = any(
        fields[1] == _as_in_mount_table(real) and fields[2] == "fuse.fusedfs"
        for fields in (line.split() for line in Path("/proc/self/mounts").read_text().splitlines())
        if len(fields) > 2
    )
    if not ours:  # another file system's: not ours to take away
        return False
    log.warning("%s: a fusedfs mount whose process ended is still there; unmounting it first", mountpoint)
    subprocess.run(["fusermount3", "-u", "-z", real], check=False, capture_output=True)
    return True


READ_AHEAD_KIB = 1024


def raise_read_ahead(real_mountpoint: Path, kib: int = READ_AHEAD_KIB) -> None:
    """Lets the kernel read ahead `kib` on this mount instead of 128 KiB. A sequential reader
    then arrives as 1 MiB requests instead of 128 KiB ones: an eighth of the trips through the
    mount (cold sequential read of 1 GiB: 291-321 MiB/s before, 348-357 after). Only root may;
    elsewhere the default stays (logged) and reads are only slower.
    The path must be resolved before mounting: touching the mountpoint now would wait for this
    very daemon, which is why the device comes from /proc/self/mountinfo."""
    escaped = _as_in_mount_table(str(real_mountpoint))
    devices = [
        fields[2]
        for fields in (line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines())
        if len(fields) > 4 and fields[4] == escaped
    ]
    if not devices:
        log.info("kept the kernel's read-ahead for %s: not in /proc/self/mountinfo", real_mountpoint)
        return
    try:
        Path(f"/sys/class/bdi/{devices[-1]}/read_ahead_kb").write_text(f"{kib}\n")
    except OSError as e:
        log.info("kept the kernel's read-ahead for %s: %s", real_mountpoint, e)


async def _read_ahead_after_init(ops: Operations, real_mountpoint: Path) -> None:
    # The kernel sets the read-ahead from the reply to FUSE_INIT, which is sent right after
    # ops.init() returns, while this task still waits.
    await ops.initialized.wait()
    raise_read_ahead(real_mountpoint)


def _task_tree(task: trio.lowlevel.Task, depth: int = 0) -> list[str]:
    frames = [f"{f.f_code.co_name}:{lineno}" for f, lineno in task.iter_await_frames()]
    lines = [f"{'  ' * depth}{task.name}: {' > '.join(frames)}"]
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            lines += _task_tree(child, depth + 1)
    return lines


def _await_chain(coro: Any) -> list[str]:
    chain = []
    while coro is not None and hasattr(coro, "cr_frame") and coro.cr_frame is not None:
        chain.append(f"{coro.cr_code.co_name}:{coro.cr_frame.f_lineno}")
        coro = coro.cr_await
    return chain


async def _dump_tasks_on_sigusr1() -> None:
    """`kill -USR1 <mount pid>` logs what every request in progress is waiting for."""
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            root = trio.lowlevel.current_root_task()
            lines = _task_tree(root) if root is not None else []
            # pyfuse3 runs handlers below compiled frames that the task tree cannot see through.
            for coro in gc.get_objects():
                if inspect.iscoroutine(coro) and coro.cr_code is _HANDLER_CODE and coro.cr_frame is not None:
                    lines.append(f"request: {' > '.join(_await_chain(coro))}")
            log.warning("tasks in progress:\n%s", "\n".join(lines))


async def _serve(ops: Operations, real_mountpoint: Path) -> None:
    async with trio.open_nursery() as nursery:
        ops.nursery = nursery

        async def on_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    log.info("signal received: saving open files and unmounting")
                    await ops.flush_all()
                    pyfuse3.terminate()
                    return

        nursery.start_soon(on_signals)
        nursery.start_soon(ops.keep_session)
        nursery.start_soon(_dump_tasks_on_sigusr1)
        nursery.start_soon(_read_ahead_after_init, ops, real_mountpoint)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()
    with contextlib.suppress(FsError):
        await ops.announce(ending=True, wait=2)


@dataclass(frozen=True)
class MountOptions:
    master: str
    mountpoint: Path
    wait: float = 30.0  # seconds an operation waits for an unreachable cluster before EIO
    attr_timeout: float = 1.0  # seconds the kernel may cache attributes and names
    # Seconds the kernel may remember that a name is missing: programs look a name up several
    # times before creating it (cp: 4 times), yet another mount's new file shows soon.
    negative_timeout: float = 0.2
    read_cache_bytes: int = 80 << 20
    cache_dir: Path = Path("/var/cache/fusedfs")  # this mount uses a folder of its own in it
    writeback_bytes: int = 1 << 30
    short_circuit: bool = True  # read the chunks of keepers on this machine from their disk
    kernel_options: frozenset[str] = frozenset()  # ro, noexec, ... (helper.KERNEL_OPTIONS)
    metrics: str | None = None  # HOST:PORT to serve Prometheus metrics at


def _keep_malloc_from_hoarding() -> None:
    """Chunk-sized buffers are allocated by gRPC's threads and freed by ours. By default glibc
    gives each thread an arena of its own, and freed chunk memory stays spread over them: the
    RSS creeps up under parallel readers. Two arenas keep it down (4 readers: 242 MiB, was 257).
    (A fixed mmap threshold kept it lower still, but cost a fifth of the write speed.)"""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_arena_max = -8  # from <malloc.h>
    libc.mallopt(m_arena_max, 2)


def run_mount(options: MountOptions) -> int:
    _keep_malloc_from_hoarding()
    client = MasterClient(options.master, wait=options.wait)
    try:  # Nothing is mounted unless the master answers (as MooseFS's mfsmount): a mount that
        # answers every request with EIO from the start helps nobody, and looks mounted.
        client.call("GetConfig", cp.Empty())
    except FsError as e:
        client.pool.close()
        raise FsError(e.errno, f"not mounted: {e.message}") from None
    session_id = uuid.uuid4().hex
    writeback = WriteBack(options.cache_dir / f"mount-{session_id}", options.writeback_bytes)
    lock = lock_data_dir(writeback.folder, "mount")  # (held while this mount lives: see left_behind)
    for folder, files, size in left_behind(options.cache_dir, writeback.folder):
        log.warning(
            "%s was left by a mount that did not unmount: %d slot file(s), %.1f MiB written and never closed "
            "or fsynced, so not on the cluster (file INODE-SLOT holds what was written into that chunk's range "
            "of the inode, and zeros where its data was not fetched); "
            "delete it when you no longer need it",
            folder,
            files,
            size / 2**20,
        )
    real_mountpoint = options.mountpoint.resolve()
    ops = Operations(
        client,
        session_id,
        writeback,
        options.attr_timeout,
        options.read_cache_bytes,
        options.negative_timeout,
        options.short_circuit,
        str(real_mountpoint),
    )
    if options.metrics:
        serve_metrics(options.metrics, ops.gauges)
    pyfuse3.init(ops, str(options.mountpoint), mount_options(f"fusedfs:{options.master}", options.kernel_options))
    log.info("mounted %s at %s (write-back cache in %s)", options.master, options.mountpoint, writeback.folder)
    try:
        trio.run(_serve, ops, real_mountpoint)
    finally:
        pyfuse3.close(unmount=True)
        ops.shared.transfer.close()
        client.pool.close()
        if not writeback.close():
            log.error("written data that could not be uploaded is left in %s", writeback.folder)
        lock.close()
        log.info("unmounted %s", options.mountpoint)
    return 0
