"""Whole files in and out of the cluster, streamed: at most `parallel` chunks in memory at once.

Uploads cut the source into chunk-sized pieces, store several at once, and commit the file with
one PutFile call, so the new file appears (or replaces the old one) only when every chunk is
stored. Downloads fetch several chunks at once, each from a different keeper, and write them in
order. All-zero chunks are not stored (they read back as holes).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from fusedfs.chunks import all_zeros, chunk_count
from fusedfs.client.master import MasterClient
from fusedfs.client.transfer import ChunkTransfer
from fusedfs.errors import FsError
from fusedfs.names import split_path
from fusedfs.rpc import common_pb2 as cp
from fusedfs.rpc import master_pb2 as mp

ROOT = 1
DEFAULT_PARALLEL = 4
Progress = Callable[[int], None]


def _no_progress(_: int) -> None:
    pass


class FileClient:
    def __init__(self, master: MasterClient, parallel: int = DEFAULT_PARALLEL, short_circuit: bool = True) -> None:
        """short_circuit: read the chunks of keepers on this machine straight from their disk."""
        self.master = master
        self.transfer = ChunkTransfer(master, short_circuit=short_circuit)
        self.parallel = parallel

    # --- names -----------------------------------------------------------------------------------

    def stat(self, path: str) -> mp.Attr:
        return self.master.call("ResolvePath", mp.PathRequest(path=path))

    def makedirs(self, path: str) -> mp.Attr:
        """Creates path and any missing parents (like mkdir -p); returns the directory's attributes."""
        attr = self.master.call("GetAttr", mp.InodeRequest(inode=ROOT))
        for name in split_path(path):
            attr = self.folder_in(attr, name)
        return attr

    def folder_in(self, parent: mp.Attr, name: bytes) -> mp.Attr:
        """The folder `name` in folder `parent`, made if missing."""
        try:
            attr = self.master.call(
                "MakeDir",
                mp.MakeNodeRequest(parent=parent.inode, name=name, mode=0o755, uid=os.getuid(), gid=os.getgid()),
            ).attr
        except FsError as e:
            if e.errno != errno.EEXIST:
                raise
            attr = self.master.call("Lookup", mp.EntryRequest(parent=parent.inode, name=name))
        if not stat.S_ISDIR(attr.mode):
            raise FsError(errno.ENOTDIR, f"{name.decode(errors='replace')} is not a directory")
        return attr

    def mkdir(self, path: str) -> mp.Attr:
        parent, name = self._parent(path)
        return self.master.call(
            "MakeDir", mp.MakeNodeRequest(parent=parent.inode, name=name, mode=0o755, uid=os.getuid(), gid=os.getgid())
        ).attr

    def remove(self, path: str) -> None:
        parent, name = self._parent(path)
        attr = self.master.call("Lookup", mp.EntryRequest(parent=parent.inode, name=name))
        method = "RemoveDir" if stat.S_ISDIR(attr.mode) else "Unlink"
        self.master.call(method, mp.EntryRequest(parent=parent.inode, name=name))

    def listdir(self, path: str) -> Iterator[tuple[bytes, mp.Attr]]:
        """Entries of a directory, fetched a page at a time."""
        attr = self.stat(path)
        if not stat.S_ISDIR(attr.mode):
            yield os.fsencode(path.rstrip("/").rsplit("/", 1)[-1]), attr
            return
        yield from self.entries(attr)

    def entries(self, folder: mp.Attr) -> Iterator[tuple[bytes, mp.Attr]]:
        """Entries of the folder, fetched a page at a time (names as bytes: any a mount made)."""
        attr, after = folder, 0
        while True:
            reply = self.master.call("ReadDir", mp.ReadDirRequest(inode=attr.inode, after=after))
            for entry in reply.entries:
                yield entry.name, entry.attr
                after = entry.cursor
            if not reply.more:
                return

    def _parent(self, path: str, create: bool = False) -> tuple[mp.Attr, bytes]:
        parts = split_path(path)
        if not parts:
            raise FsError(errno.EINVAL, "the root has no parent")
        parent_path = "/" + "/".join(p.decode() for p in parts[:-1])
        parent = self.makedirs(parent_path) if create else self.stat(parent_path)
        if not stat.S_ISDIR(parent.mode):
            raise FsError(errno.ENOTDIR, f"{parent_path} is not a directory")
        return parent, parts[-1]

    # --- contents --------------------------------------------------------------------------------

    def upload(
        self,
        source: BinaryIO,
        path: str,
        mode: int = 0o644,
        progress: Progress = _no_progress,
        chunk_size: int | None = None,
        parent: mp.Attr | None = None,
    ) -> mp.Attr:
        """Stores everything readable from source as the file at path (missing folders are made;
        or in folder `parent`, when the caller has it, under path's last name).

        Chunks are the folder's chunk size (its own, or the cluster's) unless chunk_size says otherwise.
        """
        if parent is None:
            parent, name = self._parent(path, create=True)
        else:
            name = split_path(path)[-1]
        if chunk_size is None:
            chunk_size = parent.chunk_size or self.master.call("GetConfig", cp.Empty()).chunk_size
        committed: list[mp.NewChunk] = []
        in_flight: deque[Future[mp.NewChunk]] = deque()
        size = 0
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="upload") as pool:
            try:
                index = 0
                while True:
                    data = _read_full(source, chunk_size)
                    if not data:
                        break
                    size += len(data)
                    if not all_zeros(data):
                        in_flight.append(pool.submit(self.transfer.write, index, data, parent.goal))
                    else:
                        progress(len(data))
                    index += 1
                    while len(in_flight) >= self.parallel:
                        committed.append(_done(in_flight.popleft(), progress))
                while in_flight:
                    committed.append(_done(in_flight.popleft(), progress))
            except BaseException:
                # Release what this upload already stored, so it is collected now, not at lease end.
                for future in in_flight:
                    future.cancel()
                stored = [c.chunk_id for c in committed]
                stored += [f.result().chunk_id for f in in_flight if not f.cancelled() and f.exception() is None]
                self.transfer.abandon(stored)
                raise
        request = mp.PutFileRequest(
            parent=parent.inode,
            name=name,
            mode=mode,
            uid=os.getuid(),
            gid=os.getgid(),
            size=size,
            chunk_size=chunk_size,
            chunks=committed,
        )
        try:
            return self.master.call("PutFile", request)
        except FsError:
            self.transfer.abandon([c.chunk_id for c in committed])
            raise

    def download(
        self, path: str, sink: BinaryIO, progress: Progress = _no_progress, attr: mp.Attr | None = None
    ) -> int:
        """Writes the file at path (or the one `attr` is of, when the caller has it) to sink;
        returns the number of bytes written."""
        attr = attr if attr is not None else self.stat(path)
        if stat.S_ISDIR(attr.mode):
            raise FsError(errno.EISDIR, f"{path} is a directory")
        if not stat.S_ISREG(attr.mode):
            raise FsError(errno.EINVAL, f"{path} is not a regular file")
        reply = self.master.call("GetChunks", mp.GetChunksRequest(inode=attr.inode))
        attr, chunk_size = reply.attr, reply.attr.chunk_size
        refs = {ref.index: ref for ref in reply.chunks}
        written = 0

        def fetch(index: int) -> list[memoryview]:
            slot = min(chunk_size, attr.size - index * chunk_size)
            ref = refs.get(index)
            parts = self.transfer.read_parts(attr.inode, ref) if ref is not None else []
            got = sum(len(p) for p in parts)
            if got < slot:  # a hole, or a chunk shorter than its slot: zeros
                parts.append(memoryview(bytes(slot - got)))
            return parts

        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="download") as pool:
            pending: deque[Future[list[memoryview]]] = deque()
            indexes = iter(range(chunk_count(attr.size, chunk_size)))
            try:
                for index in indexes:
                    pending.append(pool.submit(fetch, index))
                    if len(pending) >= self.parallel:
                        written += _write(sink, pending.popleft().result(), progress)
                while pending:
                    written += _write(sink, pending.popleft().result(), progress)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        return written


def _read_full(source: BinaryIO, size: int) -> bytes:
    """Reads size bytes, or fewer only at the end (pipes return short reads)."""
    data = source.read(size)
    if not data or len(data) == size:
        return data or b""
    parts = [data]
    got = len(data)
    while got < size:
        more = source.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _done(future: Future[mp.NewChunk], progress: Progress) -> mp.NewChunk:
    chunk = future.result()
    progress(chunk.length)
    return chunk


def _write(sink: BinaryIO, parts: list[memoryview], progress: Progress) -> int:
    size = 0
    for part in parts:
        sink.write(part)
        size += len(part)
    progress(size)
    return size
