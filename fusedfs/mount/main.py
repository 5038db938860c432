"""`fusedfs mount MASTER MOUNTPOINT`: mounts in the foreground until unmounted or signalled."""

from __future__ import annotations

import logging
import signal

import pyfuse3
import trio

from fusedfs.client.master import MasterClient
from fusedfs.mount.operations import Operations

log = logging.getLogger(__name__)


def mount_options(fsname: str) -> set[str]:
    options = set(pyfuse3.default_options)
    options.discard("default_permissions")
    # The kernel checks permissions against our attributes; other users may enter (as on any disk).
    options |= {f"fsname={fsname}", "subtype=fusedfs", "default_permissions", "allow_other"}
    return options


async def _serve(ops: Operations) -> None:
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
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def run_mount(master: str, mountpoint: str, wait: float = 30.0, attr_timeout: float = 1.0, cache_mib: int = 80) -> int:
    client = MasterClient(master, wait=wait)
    ops = Operations(client, attr_timeout=attr_timeout, cache_bytes=cache_mib << 20)
    pyfuse3.init(ops, mountpoint, mount_options(f"fusedfs:{master}"))
    log.info("mounted %s at %s", master, mountpoint)
    try:
        trio.run(_serve, ops)
    finally:
        pyfuse3.close(unmount=True)
        client.pool.close()
        log.info("unmounted %s", mountpoint)
    return 0
