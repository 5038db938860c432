"""The `fusedfs` command: one entry point for every part.

    fusedfs master [--listen HOST:PORT] [--data DIR]     the metadata server
    fusedfs keeper MASTER [--listen HOST:PORT] [--data DIR]   a chunk server
    fusedfs client MASTER upload|download|ls|rm|mkdir|status ...
    fusedfs mount MASTER MOUNTPOINT                      the cluster as a directory
    fusedfs up [--data DIR] [--mount DIR]                master + 3 keepers on loopback, mounted

A mistake on the command line, or any failure, is one readable line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from fusedfs.chunks import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_GOAL, MiB
from fusedfs.client import cli as client_cli
from fusedfs.datadir import lock_data_dir
from fusedfs.errors import FsError
from fusedfs.grpcutil import read_secret, use_secret
from fusedfs.keeper.diskwatch import FAIL_AFTER, STALL_AFTER
from fusedfs.mount.helper import KERNEL_OPTIONS, kernel_options


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _add_metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (a master: also its status page at /;"
        " default: none)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fusedfs", description="A replicated distributed file system.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    sub = parser.add_subparsers(dest="part", metavar="COMMAND", required=True, parser_class=_Parser)

    master = sub.add_parser("master", help="run the master (namespace and chunk placement)")
    master.add_argument("--listen", default="0.0.0.0:3000", metavar="HOST:PORT", help="default 0.0.0.0:3000")
    master.add_argument(
        "--data",
        type=Path,
        default=Path("fusedfs-master"),
        metavar="DIR",
        help="metadata folder (default ./fusedfs-master)",
    )
    master.add_argument("--goal", type=int, default=3, help="copies of every chunk (default 3)")
    master.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE // MiB,
        metavar="MiB",
        help=f"chunk size for new files (default {DEFAULT_CHUNK_SIZE // MiB})",
    )
    master.add_argument(
        "--dead-after",
        type=_positive,
        default=3.0,
        metavar="SECONDS",
        help="silence after which a keeper is dead (default 3)",
    )
    master.add_argument(
        "--gc-grace",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="keep unreferenced chunks this long for reads in progress (default 60)",
    )
    master.add_argument(
        "--upload-lease",
        type=_positive,
        default=3600.0,
        metavar="SECONDS",
        help="how long an unfinished upload's chunks are kept (default 3600)",
    )
    master.add_argument(
        "--trash-hours",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="keep deleted and replaced files this long, to restore with `fusedfs client MASTER trash` "
        "(default 24; 0: no trash)",
    )
    master.add_argument(
        "--repair-jobs", type=int, default=4, metavar="N", help="concurrent repair copies per keeper (default 4)"
    )
    master.add_argument(
        "--metadata-copies-every",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="send a copy of the metadata to 3 keepers this often, when it changed (default 600; 0: never)",
    )
    master.add_argument(
        "--reserve",
        type=int,
        default=256,
        metavar="MiB",
        help="room to keep on the metadata's disk: below it only deletions are taken (default 256)",
    )
    master.add_argument(
        "--restore-from",
        metavar="KEEPER[,KEEPER...]",
        help="first fetch the newest metadata copy from these keepers (HOST:PORT, comma-separated: give every "
        "keeper you have, the one with the most changes is taken) into an empty --data",
    )
    _add_metrics_option(master)
    master.set_defaults(run=run_master)

    keeper = sub.add_parser("keeper", help="run a keeper (chunk server)")
    keeper.add_argument("master", metavar="MASTER", help="the master's HOST[:PORT]")
    keeper.add_argument("--listen", default="0.0.0.0:3001", metavar="HOST:PORT", help="default 0.0.0.0:3001")
    keeper.add_argument("--advertise", metavar="HOST:PORT", help="address others reach this keeper at")
    keeper.add_argument(
        "--failure-domain",
        default=socket.gethostname(),
        metavar="NAME",
        help="keepers that die together share one (default: this machine's name); "
        "a chunk's copies go to as many domains as there are",
    )
    keeper.add_argument(
        "--data",
        type=Path,
        default=Path("fusedfs-keeper"),
        metavar="DIR",
        help="chunk folder (default ./fusedfs-keeper)",
    )
    keeper.add_argument("--heartbeat", type=_positive, default=1.0, metavar="SECONDS", help="default 1")
    keeper.add_argument(
        "--reserve", type=int, default=256, metavar="MiB", help="disk space to leave free (default 256)"
    )
    keeper.add_argument(
        "--scrub-interval",
        type=float,
        default=7 * 24 * 3600,
        metavar="SECONDS",
        help="time of one full background pass re-checking every chunk (default a week; 0 turns it off)",
    )
    keeper.add_argument(
        "--disk-timeout",
        type=_positive,
        default=FAIL_AFTER,
        metavar="SECONDS",
        help=f"how long the disk may leave an operation unanswered before the keeper leaves the cluster "
        f"until it answers, and its chunks are copied elsewhere (default {FAIL_AFTER:g}; it takes no new "
        f"chunks after {STALL_AFTER:g})",
    )
    _add_metrics_option(keeper)
    keeper.set_defaults(run=run_keeper)

    client_cli.add_parser(sub)

    mount = sub.add_parser("mount", help="mount the cluster as a directory (foreground until unmounted)")
    mount.add_argument("master", metavar="MASTER", help="the master's HOST[:PORT]")
    mount.add_argument("mountpoint", metavar="MOUNTPOINT", type=Path)
    mount.add_argument(
        "--wait",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="how long an operation waits for an unreachable cluster before EIO (default 30)",
    )
    mount.add_argument(
        "--attr-timeout",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long the kernel may cache attributes and names (default 1)",
    )
    mount.add_argument(
        "--negative-timeout",
        type=float,
        default=0.2,
        metavar="SECONDS",
        help="how long the kernel may remember that a name does not exist (default 0.2; 0 never)",
    )
    mount.add_argument("--cache-mib", type=int, default=80, metavar="MiB", help="read cache size (default 80)")
    mount.add_argument(
        "--no-short-circuit",
        dest="short_circuit",
        action="store_false",
        help="ask every keeper for its chunks over the network, even one on this machine "
        "(by default a keeper's chunks on this machine are read straight from its disk)",
    )
    mount.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        metavar="DIR",
        help=f"where written data waits for upload, in a folder per mount (default {default_cache_dir()})",
    )
    mount.add_argument(
        "--writeback-mib",
        type=int,
        default=1024,
        metavar="MiB",
        help="written data the cache folder may hold before writers wait for uploads (default 1024)",
    )
    mount.add_argument(
        "--daemon", action="store_true", help="go to the background once mounted (logging to CACHE_DIR/mount.log)"
    )
    mount.add_argument(
        "-o",
        dest="kernel_options",
        action="append",
        default=[],
        metavar="OPTIONS",
        help=f"the kernel's mount options, comma-separated (the last of two opposites wins): "
        f"{', '.join(sorted(KERNEL_OPTIONS))}",
    )
    _add_metrics_option(mount)
    mount.set_defaults(run=run_mount)

    up = sub.add_parser("up", help="run master + 3 keepers on loopback (the embedded default)")
    up.add_argument(
        "--data",
        type=Path,
        default=Path("fusedfs-data"),
        metavar="DIR",
        help="folder for all data (default ./fusedfs-data)",
    )
    up.add_argument("--port", type=int, default=3000, help="master port; keepers use the next ones (default 3000)")
    up.add_argument("--keepers", type=int, default=3, help="how many keepers (default 3)")
    up.add_argument(
        "--mount",
        default="fusedfs-mnt",  # (a str: Path("") is ".", and '' mounted over the current folder)
        metavar="DIR",
        help="where to mount it (default ./fusedfs-mnt; '' to not mount)",
    )
    up.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve the cluster's status page at http://HOST:PORT/ and the master's metrics at /metrics",
    )
    up.set_defaults(run=run_up)
    for part in ("master", "keeper", "mount", "client"):
        sub.choices[part].add_argument(
            "--secret-file",
            type=Path,
            metavar="FILE",
            help="the cluster's secret (the file's first line): every part of a cluster with one must be given "
            "it, and refuses calls without it (default: $FUSEDFS_SECRET_FILE; none)",
        )
    return parser


def _serve_until_signal(stop: object) -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    stop()  # type: ignore[operator]


def run_master(args: argparse.Namespace) -> int:
    from fusedfs.grpcutil import ChannelPool
    from fusedfs.master.cluster import Settings
    from fusedfs.master.metacopy import fetch_newest_copy
    from fusedfs.master.server import MasterServer

    if not 1 <= args.goal <= MAX_GOAL:
        raise FsError(22, f"--goal {args.goal} is out of range (1..{MAX_GOAL})")
    if not 1 <= args.chunk_size <= MAX_CHUNK_SIZE // MiB:
        raise FsError(22, f"--chunk-size {args.chunk_size} is out of range (1..{MAX_CHUNK_SIZE // MiB})")
    settings = Settings(
        goal=args.goal,
        dead_after=args.dead_after,
        chunk_size=args.chunk_size * MiB,
        gc_grace=args.gc_grace,
        upload_lease=args.upload_lease,
        max_jobs_per_keeper=max(1, args.repair_jobs),
        trash_seconds=max(0.0, args.trash_hours) * 3600,
        reserve_bytes=max(0, args.reserve) * MiB,
    )
    lock = lock_data_dir(args.data, "master")
    if args.restore_from:
        keepers = [k.strip() for k in args.restore_from.split(",") if k.strip()]
        keeper, header, applied, failed = fetch_newest_copy(keepers, args.data, ChannelPool())
        for other, why in failed.items():
            logging.getLogger("fusedfs").warning("no metadata copy from keeper %s: %s", other, why)
        logging.getLogger("fusedfs").warning(
            "restored the metadata from keeper %s (the most changes of %d asked): the copy taken at %s and the"
            " %d changes made after it that the keeper holds; changes made after those are lost",
            keeper,
            len(keepers),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(header.taken_ns / 1e9)),
            applied - header.journal_seq,
        )
    server = MasterServer(args.data, args.listen, settings, copy_every=args.metadata_copies_every)
    if args.metrics:
        from fusedfs.metrics import serve_metrics, status_gauges
        from fusedfs.statusview import status_page

        serve_metrics(
            args.metrics,
            lambda: status_gauges(server.service.status(), time.time_ns()),
            lambda: status_page(server.service.status(), time.time()),
        )
    server.start()
    logging.getLogger("fusedfs").info("master listening on %s (data in %s, goal %d)", args.listen, args.data, args.goal)
    _serve_until_signal(server.stop)
    lock.close()
    return 0


def run_keeper(args: argparse.Namespace) -> int:
    from fusedfs.client.cli import master_address
    from fusedfs.keeper.chunkstore import ChunkStore
    from fusedfs.keeper.node import KeeperNode

    lock = lock_data_dir(args.data, "keeper")
    store = ChunkStore(args.data, reserve_bytes=args.reserve * MiB)
    node = KeeperNode(
        master_address(args.master),
        store,
        args.listen,
        args.advertise,
        args.heartbeat,
        scrub_interval=args.scrub_interval,
        failure_domain=args.failure_domain,
        disk_timeout=args.disk_timeout,
    )
    if args.metrics:
        from fusedfs.metrics import keeper_gauges, serve_metrics

        serve_metrics(args.metrics, lambda: keeper_gauges(node.health()))
    node.start()
    _serve_until_signal(node.stop)
    lock.close()
    return 0


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or ("/var/cache" if os.geteuid() == 0 else "~/.cache")
    return Path(base).expanduser() / "fusedfs"


def run_mount(args: argparse.Namespace) -> int:
    from fusedfs.client.cli import master_address
    from fusedfs.mount.main import MountOptions, clear_dead_mount
    from fusedfs.mount.main import run_mount as mount

    kernel = kernel_options(args.kernel_options)
    clear_dead_mount(args.mountpoint)
    if not args.mountpoint.is_dir():
        raise FsError(20, f"mount point {args.mountpoint} is not a directory")
    if os.path.ismount(args.mountpoint):
        raise FsError(16, f"{args.mountpoint} is already a mount point")
    if args.daemon and os.fork():
        # Parent: report success once the child has mounted, or its failure.
        deadline = time.monotonic() + args.wait + 30  # (the child waits up to --wait for the master)
        while not os.path.ismount(args.mountpoint):
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid or time.monotonic() > deadline:
                log_path = args.cache_dir / "mount.log"
                raise FsError(5, f"mounting {args.mountpoint} failed; see {log_path}, or run without --daemon")
            time.sleep(0.05)
        return 0
    if args.daemon:
        os.setsid()
        # Let go of the caller's terminal and pipes (a caller waiting for their end would hang).
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        log_path = args.cache_dir / "mount.log"
        with open(os.devnull, "rb") as null, open(log_path, "ab") as log_file:
            os.dup2(null.fileno(), 0)
            os.dup2(log_file.fileno(), 1)
            os.dup2(log_file.fileno(), 2)
    options = MountOptions(
        master=master_address(args.master),
        mountpoint=args.mountpoint,
        wait=args.wait,
        attr_timeout=args.attr_timeout,
        negative_timeout=args.negative_timeout,
        read_cache_bytes=args.cache_mib << 20,
        cache_dir=args.cache_dir,
        writeback_bytes=args.writeback_mib << 20,
        short_circuit=args.short_circuit,
        kernel_options=kernel,
        metrics=args.metrics,
    )
    return mount(options)


def run_up(args: argparse.Namespace) -> int:
    from fusedfs.local import run_local_cluster

    return run_local_cluster(args.data, args.port, args.keepers, Path(args.mount) if args.mount else None, args.metrics)


FSCK_COULD_NOT_CHECK = 8


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # `kill -USR1 PID` writes every thread's stack to stderr (the log): a stuck process shows where.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Servers log their life; the client speaks only through its result (and warnings).
    quiet = args.part == "client"
    logging.getLogger("fusedfs").setLevel(logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO)
    try:
        # (`up` takes none, but runs its parts with this environment: it must speak as they do)
        secret_file = getattr(args, "secret_file", None) or os.environ.get("FUSEDFS_SECRET_FILE")
        if secret_file:
            use_secret(read_secret(Path(secret_file)))
        return int(args.run(args))
    except FsError as e:
        print(f"fusedfs: error: {e.message}", file=sys.stderr)
        # fsck's 1 says chunks are lost; not being able to check at all is fsck(8)'s "operational error".
        return FSCK_COULD_NOT_CHECK if args.part == "client" and getattr(args, "command", "") == "fsck" else 1
    except ValueError as e:  # bad addresses and similar argument mistakes found late
        print(f"fusedfs: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`status | head`): say nothing, as other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (nor at Python's exit)
        return 141
    except OSError as e:
        print(f"fusedfs: error: {e.strerror or e}{': ' + str(e.filename) if e.filename else ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
