"""`fusedfs client MASTER COMMAND ...`: use the cluster without mounting it."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from fusedfs.chunks import MAX_CHUNK_SIZE, MAX_GOAL, MiB
from fusedfs.client.files import FileClient
from fusedfs.client.master import MasterClient
from fusedfs.client.salvage import salvage
from fusedfs.errors import FsError
from fusedfs.grpcutil import format_address, parse_address
from fusedfs.names import NAME_MAX
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import master_pb2 as mp
from fusedfs.statusview import size_text, status_text

DEFAULT_MASTER_PORT = 3000


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("client", help="upload, download and list without mounting")
    parser.add_argument("master", metavar="MASTER", help="the master's HOST[:PORT] (port 3000 by default)")
    parser.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for an unreachable cluster before failing (default 30)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = commands.add_parser("upload", help="store a local file (or - for stdin; -r: a folder) as NAME")
    up.add_argument("name", metavar="NAME", help="path in the file system, e.g. /a/b.txt")
    up.add_argument("path", metavar="PATH", nargs="?", help="local file (default: NAME's last part; - reads stdin)")
    up.add_argument("-r", "--recursive", action="store_true", help="PATH is a folder: store all it holds under NAME")
    down = commands.add_parser("download", help="fetch NAME into a local file (or - for stdout; -r: a folder)")
    down.add_argument("name", metavar="NAME")
    down.add_argument("path", metavar="PATH", nargs="?", help="local file (default: NAME's last part; - is stdout)")
    down.add_argument("-r", "--recursive", action="store_true", help="NAME is a folder: fetch all it holds into PATH")
    ls = commands.add_parser("ls", help="list a directory")
    ls.add_argument("name", metavar="DIR", nargs="?", default="/")
    rm = commands.add_parser("rm", help="remove a file or an empty directory")
    rm.add_argument("name", metavar="NAME")
    mkdir = commands.add_parser("mkdir", help="create a directory (and missing parents with -p)")
    mkdir.add_argument("name", metavar="DIR")
    mkdir.add_argument("-p", "--parents", action="store_true")
    status = commands.add_parser("status", help="keepers and chunk health")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    info = commands.add_parser("info", help="a file's chunks and the keepers holding each")
    info.add_argument("name", metavar="NAME")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    fsck = commands.add_parser(
        "fsck",
        help="the files with chunks below the goal, lost ones first, then unavailable ones (on keepers that are"
        " down); exit status 1 if any chunk is lost or unavailable, 8 if the master could not be asked",
    )
    fsck.add_argument("--limit", type=int, default=1000, help="files to list at most (default 1000)")
    fsck.add_argument("--json", action="store_true", help="machine-readable output")
    du = commands.add_parser(
        "du", help="what a folder holds, all the way down, and each folder in it (at once, from the master)"
    )
    du.add_argument("name", metavar="DIR", nargs="?", default="/")
    du.add_argument("--limit", type=int, default=50, help="folders to list at most, the biggest first (default 50)")
    du.add_argument("--json", action="store_true", help="machine-readable output")
    goal = commands.add_parser(
        "goal",
        help="copies kept of a file's chunks, or of what is made in a folder: show it, or set it "
        "(-r: and of everything below; 'default': the cluster's again)",
    )
    goal.add_argument("name", metavar="PATH")
    goal.add_argument("goal", metavar="COPIES", nargs="?", help=f"1 to {MAX_GOAL}, or default")
    goal.add_argument("-r", "--recursive", action="store_true", help="also everything below the folder")
    chunk_size = commands.add_parser(
        "chunksize",
        help="the chunk size of files made in a folder: show it, or set it in MiB (-r: and of every folder "
        "below; 'default': the cluster's again). Small chunks suit databases: each change copies less",
    )
    chunk_size.add_argument("name", metavar="PATH")
    chunk_size.add_argument("size", metavar="MiB", nargs="?", help=f"1 to {MAX_CHUNK_SIZE // MiB}, or default")
    chunk_size.add_argument("-r", "--recursive", action="store_true", help="also every folder below")
    quota = commands.add_parser(
        "quota",
        help="a folder's quota: what it holds against its limits; or set them (--entries, --size; 0: no limit) "
        "or take them away (--clear). A change that would pass one is refused: 'Disk quota exceeded'",
    )
    quota.add_argument("name", metavar="DIR")
    quota.add_argument("--entries", type=int, metavar="N", help="files, folders and links below it, at most")
    quota.add_argument("--size", metavar="SIZE", help="bytes of its files at most: 500M, 20G, 2T, ... (binary)")
    quota.add_argument("--clear", action="store_true", help="no quota on the folder any more")
    snapshot = commands.add_parser(
        "snapshot",
        help="make DEST a copy of SOURCE (a file, or a folder with all it holds) as it is now, at once and at "
        "no cost of space: the copy shares the source's chunks until either changes",
    )
    snapshot.add_argument("name", metavar="SOURCE")
    snapshot.add_argument("destination", metavar="DEST", help="must not exist yet; its folder must")
    drain = commands.add_parser(
        "drain", help="empty a keeper before taking it away: its chunks are copied to the others (see status)"
    )
    drain.add_argument(
        "keeper", metavar="KEEPER", help="its id (or 8 or more of its first characters) or HOST:PORT, as status shows"
    )
    drain.add_argument("--undo", action="store_true", help="stop draining it")
    repair = commands.add_parser(
        "repair",
        help="piece a file's lost chunks together from the copies keepers set aside as damaged (kept a week): "
        "each comes back whole when every block is intact in some copy (exit status 1 if one could not)",
    )
    repair.add_argument("name", metavar="PATH")
    repair.add_argument(
        "--zeros",
        action="store_true",
        help="also put back the chunks that cannot come back whole: what is intact, zeros elsewhere (the file "
        "reads again, with those bytes lost)",
    )
    trash = commands.add_parser("trash", help="deleted files kept for restoring: list, restore, purge")
    actions = trash.add_subparsers(dest="trash_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="what the trash holds at PATH or under it, newest first")
    listing.add_argument("name", metavar="PATH", nargs="?", default="/")
    listing.add_argument("--limit", type=int, default=1000, help="files to list at most (default 1000)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    restore = actions.add_parser(
        "restore",
        help="put back the newest file deleted at PATH and the newest of each under it, "
        "with the folders they were in (or, with --inode, that one file, at PATH if given)",
    )
    restore.add_argument("name", metavar="PATH", nargs="?", default="")
    restore.add_argument("--inode", type=int, default=0, help="the file's inode, as `trash list` shows it")
    purge = actions.add_parser("purge", help="free what was at PATH or under it (/: everything) now")
    purge.add_argument("name", metavar="PATH", nargs="?", default="")
    purge.add_argument("--inode", type=int, default=0, help="only this file")
    parser.set_defaults(run=run)


SNAPSHOT_WAIT = 600.0  # seconds a snapshot may take (a big tree: a hard link per chunk on each keeper)


def master_address(text: str) -> str:
    host, port = parse_address(text, DEFAULT_MASTER_PORT)
    return format_address(host, port)


def run(args: argparse.Namespace) -> int:
    master = MasterClient(master_address(args.master), wait=args.wait)
    files = FileClient(master)
    name = getattr(args, "name", "/")
    named = (
        "upload", "download", "rm", "mkdir", "ls", "info", "trash", "du", "goal", "chunksize", "snapshot", "quota",
        "repair",
    )  # fmt: skip
    if args.command in named and name and name[0] != "/":
        name = "/" + name
    if args.command == "upload" and args.recursive:
        _upload_tree(files, name, args.path or os.path.basename(name.rstrip("/")))
    elif args.command == "download" and args.recursive:
        _download_tree(files, name, args.path or os.path.basename(name.rstrip("/")) or ".")
    elif args.command == "upload":
        local = args.path or os.path.basename(name)
        with _open_local(local, "rb") as source:
            total = os.fstat(source.fileno()).st_size if local != "-" else None
            mode = stat.S_IMODE(os.fstat(source.fileno()).st_mode) if local != "-" else 0o644
            with _progress(total, f"upload {name}") as progress:
                attr = files.upload(source, name, mode=mode, progress=progress)
        print(f"uploaded {name} ({size_text(attr.size)})", file=sys.stderr)
    elif args.command == "download":
        local = args.path or os.path.basename(name.rstrip("/"))
        total = files.stat(name).size
        _download(files, name, local, total)
    elif args.command == "ls":
        for entry, attr in files.listdir(name):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(attr.mtime_ns / 1e9))
            suffix = "/" if stat.S_ISDIR(attr.mode) else ""
            print(f"{stat.filemode(attr.mode)} {attr.size:>14} {when} {os.fsdecode(entry)}{suffix}")
    elif args.command == "rm":
        files.remove(name)
    elif args.command == "mkdir":
        (files.makedirs if args.parents else files.mkdir)(name)
    elif args.command == "status":
        _status(master, args.json)
    elif args.command == "info":
        _info(files, name, args.json)
    elif args.command == "fsck":
        return _fsck(master, args.limit, args.json)
    elif args.command == "trash":
        return _trash(master, args, name)
    elif args.command == "repair":
        return _repair(files, name, args.zeros)
    elif args.command == "du":
        _du(master, name, args.limit, args.json)
    elif args.command == "goal":
        _goal(master, name, args.goal, args.recursive)
    elif args.command == "chunksize":
        _chunk_size(files, name, args.size, args.recursive)
    elif args.command == "quota":
        _quota(master, name, args.entries, args.size, args.clear)
    elif args.command == "snapshot":
        destination = args.destination if args.destination.startswith("/") else "/" + args.destination
        request = mp.SnapshotRequest(source=name, destination=destination)
        reply = master.call("Snapshot", request, wait=max(master.wait, SNAPSHOT_WAIT))
        made = f"{reply.files} files, {reply.folders} folders, {reply.chunks} chunks"
        print(f"{destination}: a snapshot of {name} ({made})")
    elif args.command == "drain":
        reply = master.call("Drain", mp.DrainRequest(keeper=args.keeper, undo=args.undo))
        if args.undo:
            print(f"keeper {reply.keeper_id} at {reply.address} is no longer draining")
        else:
            print(
                f"keeper {reply.keeper_id} at {reply.address} is draining: its chunks are being copied to other"
                " keepers, and it gets no new ones; `status` says when it is safe to stop"
            )
    return 0


def _goal(master: MasterClient, path: str, copies: str | None, recursive: bool) -> None:
    if copies is None:
        if recursive:
            raise FsError(errno.EINVAL, "-r sets a goal: give COPIES too")
        reply = master.call("GetGoal", mp.PathRequest(path=path))
        whose = "its own" if reply.own else "the cluster's"
        print(f"{path}: {_copies(reply.goal)} ({whose}; the cluster's is {reply.cluster_goal})")
        return
    if copies != "default" and not (copies.isdigit() and 1 <= int(copies) <= MAX_GOAL):
        raise FsError(errno.EINVAL, f"goal {copies!r}: give 1 to {MAX_GOAL} copies, or default")
    number = 0 if copies == "default" else int(copies)
    changed = master.call("SetGoal", mp.SetGoalRequest(path=path, goal=number, recursive=recursive))
    what = _copies(number) if number else "the cluster's goal"
    print(
        f"{path}: {what} for {changed.files} file(s) and {changed.folders} folder(s); "
        f"their {changed.chunks} chunk(s) are being copied or trimmed to it"
    )


def _quota(master: MasterClient, path: str, entries: int | None, size: str | None, clear: bool) -> None:
    if clear and (entries is not None or size is not None):
        raise FsError(errno.EINVAL, "--clear takes the quota away: give no limits with it")
    reply = master.call("GetQuota", mp.PathRequest(path=path))
    if clear or entries is not None or size is not None:
        given = reply.max_entries if entries is None else entries, reply.max_bytes if size is None else parse_size(size)
        limits = (0, 0) if clear else given
        if min(limits) < 0:
            raise FsError(errno.EINVAL, f"a limit must be 0 (none) or more, not {min(limits)}")
        reply = master.call("SetQuota", mp.SetQuotaRequest(path=path, max_entries=limits[0], max_bytes=limits[1]))
    entries_limit = f" of {reply.max_entries:,}" if reply.max_entries else ""
    size_limit = f" of {size_text(reply.max_bytes)}" if reply.max_bytes else ""
    none = "" if reply.max_entries or reply.max_bytes else " (no quota)"
    print(f"{path}: {reply.entries:,}{entries_limit} entries, {size_text(reply.bytes)}{size_limit}{none}")


def parse_size(text: str) -> int:
    """Bytes in '500M', '20G', '2TiB', '4096' (binary units); EINVAL otherwise."""
    units = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40, "P": 50}
    number = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = number[-1:] if number[-1:].isalpha() else ""
    digits = number[: len(number) - len(unit)]
    if unit not in units or not digits.replace(".", "", 1).isdigit():
        raise FsError(errno.EINVAL, f"size {text!r}: give a number of bytes, or one with K, M, G, T or P")
    return int(float(digits) * (1 << units[unit]))


def _chunk_size(files: FileClient, path: str, size: str | None, recursive: bool) -> None:
    master = files.master
    if size is None:
        if recursive:
            raise FsError(errno.EINVAL, "-r sets a chunk size: give MiB too")
        attr, cluster = files.stat(path), master.call("GetConfig", cp.Empty()).chunk_size
        if not stat.S_ISDIR(attr.mode):
            print(f"{path}: {size_text(attr.chunk_size)} chunks (fixed when it was made)")
            return
        whose = "its own" if attr.chunk_size else "the cluster's"
        chosen = size_text(attr.chunk_size or cluster)
        print(f"{path}: {chosen} chunks for files made in it ({whose}; the cluster's is {size_text(cluster)})")
        return
    most = MAX_CHUNK_SIZE // MiB
    if size != "default" and not (size.isdigit() and 1 <= int(size) <= most):
        raise FsError(errno.EINVAL, f"chunk size {size!r}: give 1 to {most} MiB, or default")
    number = 0 if size == "default" else int(size) * MiB
    reply = master.call("SetChunkSize", mp.SetChunkSizeRequest(path=path, chunk_size=number, recursive=recursive))
    what = f"{size_text(number)} chunks" if number else "the cluster's chunk size"
    print(f"{path}: {what} for files made from now on in {reply.folders} folder(s) (files made before keep theirs)")


def _copies(count: int) -> str:
    return f"{count} cop{'y' if count == 1 else 'ies'}"


def _du(master: MasterClient, path: str, limit: int, as_json: bool) -> None:
    reply = master.call("Usage", mp.PathRequest(path=path))

    def usage(u: mp.SpaceUsage) -> dict[str, int]:
        return {f.name: getattr(u, f.name) for f in u.DESCRIPTOR.fields}

    if as_json:
        folders = [{"name": os.fsdecode(f.name), **usage(f.usage)} for f in reply.folders]
        report = {"path": path, "total": usage(reply.total), "folders": folders, "others": usage(reply.others)}
        print(json.dumps({**report, "goal": reply.goal}, indent=2))
        return

    def line(u: mp.SpaceUsage, what: str) -> str:
        return f"{size_text(u.bytes):>10} {u.files:>10} files {u.folders:>8} folders  {what}"

    for f in reply.folders[: max(0, limit)]:
        print(line(f.usage, os.fsdecode(f.name) + "/"))
    if len(reply.folders) > limit:
        print(f"({len(reply.folders) - limit} smaller folders not listed)")
    if reply.folders and reply.others.files:
        print(line(reply.others, "(the other entries here)"))
    t = reply.total
    print(
        f"{path}: {size_text(t.bytes)} in {t.files} files and {t.folders} folders; {t.chunks} chunks,"
        f" {size_text(t.kept_bytes)} on the keepers with every copy (the cluster's goal: {reply.goal})"
    )


def _trash(master: MasterClient, args: argparse.Namespace, path: str) -> int:
    if args.trash_action == "list":
        listed = master.call("ListTrash", mp.ListTrashRequest(path=path, limit=max(1, args.limit)))
        if args.json:
            entries = [
                {
                    "path": os.fsdecode(e.path),
                    "inode": e.inode,
                    "size": e.size,
                    "deleted_ns": e.deleted_ns,
                    "expires_ns": e.expires_ns,
                }
                for e in listed.entries
            ]
            report = {"entries": entries, "files": listed.files, "bytes": listed.bytes, "truncated": listed.truncated}
            print(json.dumps(report, indent=2))
            return 0
        print(f"{'DELETED':<16} {'FREED IN':>8} {'SIZE':>10} {'INODE':>10}  PATH")
        for e in listed.entries:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.deleted_ns / 1e9))
            left = max(0.0, e.expires_ns / 1e9 - time.time()) / 3600
            print(f"{when:<16} {left:>7.1f}h {size_text(e.size):>10} {e.inode:>10}  {os.fsdecode(e.path)}")
        if listed.truncated:
            print(f"(only the newest {len(listed.entries)} are listed)")
        print(
            f"{listed.files} files, {size_text(listed.bytes)} in the trash" + (f" under {path}" if path != "/" else "")
        )
        return 0
    if not path and not args.inode:
        raise FsError(errno.EINVAL, f"trash {args.trash_action} needs a PATH or --inode")
    if args.trash_action == "purge":
        purged = master.call("PurgeTrash", mp.PurgeTrashRequest(path=path, inode=args.inode))
        print(f"purged {purged.files} files ({size_text(purged.bytes)}): their space is freed within minutes")
        return 0
    reply = master.call("RestoreTrash", mp.RestoreTrashRequest(path=path, inode=args.inode))
    for e in reply.restored:
        print(f"restored {os.fsdecode(e.path)}")
    for e in reply.skipped:
        print(
            f"skipped {os.fsdecode(e.path)}: that name is taken now (put it elsewhere with"
            f" `trash restore --inode {e.inode} NEW-PATH`)"
        )
    if not reply.restored and not reply.skipped:
        print(f"nothing in the trash at {path or f'inode {args.inode}'}")
    return 0 if reply.restored and not reply.skipped else 1


def _info(files: FileClient, name: str, as_json: bool) -> None:
    attr = files.stat(name)
    goal = files.master.call("GetGoal", mp.PathRequest(path=name)).goal
    chunks = []
    if stat.S_ISREG(attr.mode):
        reply = files.master.call("GetChunks", mp.GetChunksRequest(inode=attr.inode))
        chunks = [
            {
                "index": c.index,
                "chunk_id": c.chunk_id,
                "length": c.length,
                "copies": len(c.replicas),
                "keepers": [r.address for r in c.replicas],
                "lost": c.lost,
            }
            for c in reply.chunks
        ]
    if as_json:
        print(
            json.dumps({"path": name, "inode": attr.inode, "size": attr.size, "goal": goal, "chunks": chunks}, indent=2)
        )
        return
    kind = "directory" if stat.S_ISDIR(attr.mode) else "symlink" if stat.S_ISLNK(attr.mode) else "file"
    print(f"{name}: {kind}, inode {attr.inode}, {size_text(attr.size)}, {attr.nlink} link(s)")
    for c in chunks:
        health = (
            "LOST, no keeper has it: `repair` may piece it together"
            if c["lost"]
            else "unavailable: its keepers are down"
            if not c["copies"]
            else "below goal"
            if c["copies"] < goal
            else "ok"
        )
        where = ", ".join(c["keepers"]) or "-"
        size = size_text(c["length"])
        print(f"  chunk {c['index']:>5} {c['chunk_id']} {size:>10}  {c['copies']}/{goal} ({health}): {where}")
    if chunks:
        lost = sum(1 for c in chunks if c["lost"])
        down = sum(1 for c in chunks if not c["copies"] and not c["lost"])
        below = sum(1 for c in chunks if 0 < c["copies"] < goal)
        if lost or down or below:
            print(f"{len(chunks)} chunks: {lost} LOST, {down} unavailable, {below} below the goal of {goal}")
        else:
            print(f"{len(chunks)} chunks, all at the goal of {goal}")


def _repair(files: FileClient, name: str, zeros: bool) -> int:
    attr = files.stat(name)
    if not stat.S_ISREG(attr.mode):
        raise FsError(errno.EINVAL, f"{name} is not a file")
    reply = files.master.call("GetChunks", mp.GetChunksRequest(inode=attr.inode))
    lost = [ref for ref in reply.chunks if ref.lost]
    if not lost:
        print(f"{name}: no chunk is lost, nothing to repair")
        return 0
    status: mp.StatusReply = files.master.call("Status", cp.Empty())
    keepers = [files.transfer.keeper(k.address) for k in status.keepers if k.alive]
    failed = 0
    for ref in lost:
        found = salvage(ref, keepers)
        start = ref.index * attr.chunk_size
        at = f"{name}: chunk {ref.index} ({size_text(ref.length)} at byte {start:,})"
        if found.whole:
            news = f"whole again, from {found.copies} damaged copies"
        else:
            zeroed = sum(length for _, length in found.missing)
            where = ", ".join(f"byte {start + o:,} ({size_text(n)})" for o, n in found.missing[:5])
            news = (
                f"none of the {len(keepers)} keepers up has a damaged copy of it (they keep them a week)"
                if not found.copies
                else f"{size_text(zeroed)} intact in none of its {found.copies} damaged copies, at {where}"
                + (" ..." if len(found.missing) > 5 else "")
            )
            failed += 1
            if not zeros:
                print(f"{at}: {news}; left as it is (--zeros puts it back with zeros there)")
                continue
            news += "; put back with zeros there"
        chunk = files.transfer.write(ref.index, found.data[: ref.length], attr.goal)
        chunk.replaces = ref.chunk_id  # (ESTALE if the file was written there meanwhile: that stands)
        request = mp.CommitChunksRequest(inode=attr.inode, size=reply.attr.size, chunks=[chunk])
        if found.whole:
            request.mtime_ns = reply.attr.mtime_ns  # (its bytes are as they were)
        files.master.call("CommitChunks", request)
        print(f"{at}: {news}")
    return 1 if failed else 0


def _fsck(master: MasterClient, limit: int, as_json: bool) -> int:
    reply = master.call("Damaged", mp.DamagedRequest(limit=max(1, limit)))
    if as_json:
        files = [
            {
                "path": os.fsdecode(f.path),
                "inode": f.inode,
                "lost_chunks": f.lost_chunks,
                "unavailable_chunks": f.unavailable_chunks,
                "under_replicated_chunks": f.under_replicated_chunks,
            }
            for f in reply.files
        ]
        print(
            json.dumps(
                {
                    "files": files,
                    "lost_chunks": reply.lost_chunks,
                    "unavailable_chunks": reply.unavailable_chunks,
                    "under_replicated_chunks": reply.under_replicated_chunks,
                    "truncated": reply.truncated,
                },
                indent=2,
            )
        )
    else:
        for f in reply.files:
            counts = [
                (f.lost_chunks, "LOST"),
                (f.unavailable_chunks, "unavailable"),
                (f.under_replicated_chunks, "below the goal"),
            ]
            what = ", ".join(f"{n} chunks {state}" for n, state in counts if n)
            print(f"{os.fsdecode(f.path) or f'(unlinked, still open: inode {f.inode})'}: {what}")
        if reply.truncated:
            print(f"(only the first {len(reply.files)} damaged files are listed)")
        if reply.lost_chunks or reply.unavailable_chunks:
            print(
                f"DAMAGED: {reply.lost_chunks} chunks lost (no keeper holds them), {reply.unavailable_chunks}"
                f" unavailable (only on keepers that are down), {reply.under_replicated_chunks} below the goal"
            )
            print(
                "(unavailable chunks come back with their keepers; a chunk whose copies were all found damaged"
                " may be pieced together from them: `repair PATH`)"
            )
        elif reply.under_replicated_chunks:
            print(
                f"HEALTHY, but {reply.under_replicated_chunks} chunks are below the goal (the master is copying them)"
            )
        else:
            print("HEALTHY: every chunk at the goal")
    return 1 if reply.lost_chunks or reply.unavailable_chunks else 0


def _download(files: FileClient, name: str, local: str, total: int) -> None:
    if local == "-":
        with _progress(None, f"download {name}") as progress:
            files.download(name, sys.stdout.buffer, progress=progress)
        return
    with _progress(total, f"download {name}") as progress:
        _fetch(files, name, local, total, progress)
    print(f"downloaded {name} to {local} ({size_text(total)})", file=sys.stderr)


PART_SUFFIX = ".fusedfs-part"  # a download's file until it is whole


def _fetch(
    files: FileClient,
    name: str,
    local: str,
    total: int,
    progress: Callable[[int], None],
    attr: mp.Attr | None = None,
) -> None:
    """NAME into the local file: into a temporary name first, so that a failed download never
    leaves a truncated file behind."""
    folder, base = os.path.split(local)
    if len(os.fsencode(base)) + len(PART_SUFFIX) > NAME_MAX:  # (a 255-byte name: "File name too long")
        base = f".{os.getpid()}-{threading.get_ident()}"
    partial = os.path.join(folder, base + PART_SUFFIX)
    try:
        with open(partial, "wb") as sink:
            if total:
                # Reserve the space up front: fails early on a full disk, and the kernel's block
                # allocation is cheaper in one go than page by page.
                os.posix_fallocate(sink.fileno(), 0, total)
            files.download(name, sink, progress=progress, attr=attr)  # type: ignore[arg-type]
        os.replace(partial, local)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


TREE_PARALLEL = 4  # files of a folder moved at once (each moves its chunks `parallel` at a time)


def _upload_tree(files: FileClient, name: str, local: str) -> None:
    """The local folder and everything in it, stored under NAME (folders made as needed)."""
    root = Path(local)
    if not root.is_dir():
        raise FsError(errno.ENOTDIR, f"{local} is not a folder (upload without -r stores one file)")
    regular: list[tuple[str, Path, int, int, mp.Attr]] = []  # (name, local path, size, mode, its folder)
    skipped = 0
    made: dict[str, mp.Attr] = {}  # local folder -> the folder made for it (each made from its parent's)
    for folder, subfolders, names in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        here = name.rstrip("/") + ("" if relative == "." else "/" + relative)
        if relative == ".":
            attr = files.makedirs(here or "/")
        else:
            attr = files.folder_in(made[os.path.dirname(folder)], os.fsencode(os.path.basename(folder)))
        made[folder] = attr
        for entry in sorted(names):
            st = os.lstat(os.path.join(folder, entry))
            if stat.S_ISREG(st.st_mode):
                regular.append((f"{here}/{entry}", Path(folder) / entry, st.st_size, stat.S_IMODE(st.st_mode), attr))
            else:
                skipped += 1
        skipped += sum(1 for d in subfolders if os.path.islink(os.path.join(folder, d)))  # (not followed)

    def one(item: tuple[str, Path, int, int, mp.Attr], progress: Callable[[int], None]) -> None:
        with open(item[1], "rb") as source:
            files.upload(source, item[0], mode=item[3], progress=progress, parent=item[4])

    _in_parallel(regular, one, f"upload {name}", f"uploaded {local} to {name}", skipped)


def _download_tree(files: FileClient, name: str, local: str) -> None:
    """The folder NAME and everything in it, into the local folder (made as needed)."""
    top = files.stat(name)
    if not stat.S_ISDIR(top.mode):
        raise FsError(errno.ENOTDIR, f"{name} is not a folder (download without -r fetches one file)")
    regular: list[tuple[str, Path, int, int, mp.Attr]] = []  # (name, local path, size, mode, its attributes)
    skipped = 0
    pending = [(name.rstrip("/"), Path(local), top)]
    while pending:  # (by inode from the top: names need not be UTF-8, as a path in a request must)
        folder, into, folder_attr = pending.pop()
        into.mkdir(parents=True, exist_ok=True)
        for entry, attr in files.entries(folder_attr):
            child, target = f"{folder}/{os.fsdecode(entry)}", into / os.fsdecode(entry)
            if stat.S_ISDIR(attr.mode):
                pending.append((child, target, attr))
            elif stat.S_ISREG(attr.mode):
                regular.append((child, target, attr.size, stat.S_IMODE(attr.mode), attr))
            else:
                skipped += 1

    def one(item: tuple[str, Path, int, int, mp.Attr], progress: Callable[[int], None]) -> None:
        _fetch(files, item[0], str(item[1]), item[2], progress, attr=item[4])
        os.chmod(item[1], item[3])

    _in_parallel(regular, one, f"download {name}", f"downloaded {name} to {local}", skipped)


Item = TypeVar("Item", bound=tuple[Any, ...])  # (name, local path, size, ...)


def _in_parallel(
    items: list[Item],
    move: Callable[[Item, Callable[[int], None]], None],
    label: str,
    summary: str,
    skipped: int,
) -> None:
    """move(item, progress) for every item, TREE_PARALLEL at once, under one progress bar, then
    the summary line; the first failure ends it (files not begun are left; those moved stay)."""
    total = sum(item[2] for item in items)
    with _progress(total, label) as progress, ThreadPoolExecutor(TREE_PARALLEL) as pool:
        lock = threading.Lock()

        def counted(n: int) -> None:
            with lock:
                progress(n)

        moving = [pool.submit(move, item, counted) for item in items]
        try:
            for one in moving:
                one.result()
        except BaseException:
            for one in moving:
                one.cancel()
            raise
    note = f"; {skipped} symlinks and special files left out" if skipped else ""
    print(f"{summary}: {len(items)} files, {size_text(total)}{note}", file=sys.stderr)


@contextlib.contextmanager
def _open_local(path: str, mode: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer if "r" in mode else sys.stdout.buffer
        return
    with open(path, mode) as f:
        yield f  # type: ignore[misc]


@contextlib.contextmanager
def _progress(total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr) as bar:
        yield bar.update


def _status(master: MasterClient, as_json: bool) -> None:
    reply: mp.StatusReply = master.call("Status", cp.Empty())
    if as_json:
        print(
            json.dumps(
                {
                    "keepers": [
                        {
                            "id": k.keeper_id,
                            "address": k.address,
                            "alive": k.alive,
                            "capacity_bytes": k.capacity_bytes,
                            "used_bytes": k.used_bytes,
                            "free_bytes": k.free_bytes,
                            "chunks": k.chunks,
                            "load": k.load,
                            "seconds_since_heartbeat": round(k.seconds_since_heartbeat, 3),
                            "scrub_checked": k.scrub_checked,
                            "scrub_bad": k.scrub_bad,
                            "damaged_copies": k.damaged_copies,
                            "failure_domain": k.failure_domain,
                            "draining": k.draining,
                            "chunks_to_move": k.chunks_to_move,
                            "disk_stalled_seconds": round(k.disk_stalled_seconds, 3),
                        }
                        for k in reply.keepers
                    ],
                    "chunks": {
                        "total": reply.chunks.total,
                        "under_replicated": reply.chunks.under_replicated,
                        "over_replicated": reply.chunks.over_replicated,
                        "lost": reply.chunks.lost,
                        "unavailable": reply.chunks.unavailable,
                        "repairs_in_flight": reply.chunks.repairs_in_flight,
                        "garbage": reply.chunks.garbage,
                        "misplaced": reply.chunks.misplaced,
                        "pending": reply.chunks.pending,
                    },
                    "files": reply.files,
                    "directories": reply.directories,
                    "goal": reply.goal,
                    "chunk_size": reply.chunk_size,
                    "mounts": reply.mounts,
                    "connected_mounts": [
                        {
                            "host": m.info.host,
                            "mount_point": m.info.mount_point,
                            "pid": m.info.pid,
                            "version": m.info.version,
                            "mounted_ns": m.info.mounted_ns,
                            "writeback_bytes": m.info.writeback_bytes,
                            "failed_saves": m.info.failed_saves,
                            "open_files": m.open_files,
                            "silent_seconds": round(m.silent_seconds, 3),
                        }
                        for m in reply.connected_mounts
                    ],
                    "open_orphans": reply.open_orphans,
                    "cluster_id": reply.cluster_id,
                    "metadata_copy_taken_ns": reply.metadata_copy_taken_ns,
                    "metadata_copy_keepers": reply.metadata_copy_keepers,
                    "metadata_changes_unsent": reply.metadata_changes_unsent,
                    "trash_files": reply.trash_files,
                    "trash_bytes": reply.trash_bytes,
                    "trash_hours": reply.trash_hours,
                    "metadata_room_bytes": reply.metadata_room_bytes,
                    "metadata_reserve_bytes": reply.metadata_reserve_bytes,
                },
                indent=2,
            )
        )
        return
    print(status_text(reply, time.time()))
