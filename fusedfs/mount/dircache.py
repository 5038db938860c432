"""Names this mount has seen recently, so that many lookups in one folder cost one listing.

`ls`, `stat` over a folder, `cp -r` and `rsync` look up every name of a folder one by one: one
master round trip each. Once two names of a folder have been looked up within the cache time,
the mount lists the folder (a page of names with attributes per call) and answers the next
lookups from that listing, as MooseFS's directory entry cache does.

Only names that exist are answered from here (a name missing from the cache is asked of the
master), and an entry is never older than the kernel's own attribute timeout when handed out:
other mounts' changes show as quickly as without this cache. This mount's own changes remove or
replace the entries they touch at once. Pure bookkeeping, no I/O.

A folder this mount made, or listed from its first page to its last while its ctime stood
still (WholeListing), is known whole: a missing name there is answered here, with no round trip
(a new file's name is always missing first; `git gc` looks for each of the 256 folders of loose
objects in turn, several times over). A folder's ctime grows with every change of its names.
The reply to each add, rename or removal of a name, or change of the folder's attributes,
carries its ctime just before: when that is the ctime we last saw, nobody else changed the
folder in between. So files written under a temporary name and renamed into place (pip, rsync,
editors, git), rsync setting the folder's mode and an editor removing its probe file keep it
known; so does a GetAttr of the folder that shows the ctime we know. Any other change (another
mount's, or a concurrent change of ours) ends the knowledge; a change the master refused
without making it (ENOTEMPTY) leaves it as it was. A missing name is answered only within the
negative timeout of the last proof, and the kernel told to remember it only for what is left of
that, so another mount's new name shows as quickly as the kernel's own negative cache allows
(`--negative-timeout`): past it, the next miss asks for the folder's attributes, which prove
every name missing there for the next negative timeout.

A listing also remembers the folder's order and, for small files, their only chunk: when files
are opened one after the other in that order (`cp -r`, `tar c`, `grep -r` from the mount),
`ahead()` names the next few small files' chunks, to be fetched before they are opened. These
are hints: open() still asks the master for the file's chunks, and a chunk id always names the
same bytes, so a stale hint only costs a fetch. Chunks make a listing about 4 times bigger
(8.2 instead of 3.4 ms for 500 files), so they are asked for only while files are being opened
on this mount (`ls -l`, `find` and `du` open none).

Attributes also say whether an inode has extended attributes (WithoutXattrs): `ls -l` asks for
every file's security.selinux, and the kernel caches no extended attribute.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fusedfs.rpc import master_pb2 as mp

LISTING_LOOKUPS = 2  # lookups in a folder (within the ttl) after which it is listed
# Seconds a folder too big to list whole is not listed again: its first pages seldom hold the
# names looked up next (`find` in a folder of 100,000 names relisted 5,000 of them every second).
BIG_FOLDER_PAUSE = 300.0
ORDERS_KEPT = 16  # folders whose order (and small files' chunks) is remembered
# Folders whose recent lookups and listing are tracked before those past the ttl are let go (a
# mount walking a big tree kept an entry for every folder it ever looked a name up in).
FOLDERS_TRACKED = 10_000
OPENS_REMEMBERED = 10.0  # seconds after an open during which listings carry chunks
# Folders known whole, the most recently proved: as many as a copy makes ahead of filling them
# (rsync makes a tree's folders first: with 64, those of a 78-folder tree were forgotten before
# their files came, and 1,192 of its lookups went to the master, 294 with 1,024).
KNOWN_FOLDERS = 1024
KNOWN_NAMES = 100_000  # names of one folder known whole; past that, it is no longer tracked
KNOWN_NAMES_IN_ALL = 200_000  # names of all of them (~20 MiB): the least recently proved go first
MISSED_NAMES = 1024  # missing names answered in a folder known from a listing (.git/objects: 256)


@dataclass
class _Order:
    """A listed folder's names in order, and the small files' only chunks."""

    names: list[bytes]
    inodes: list[int]
    small: dict[bytes, tuple[int, mp.ChunkRef]]  # name -> (inode, its only chunk)
    last_opened: int = -2  # position of the last name opened here


@dataclass
class _Known:
    """A folder this mount knows whole: every name it has."""

    names: set[bytes]
    ctime_ns: int  # the folder's ctime when those were all its names
    proved: float  # when that was last proved
    changing: int = 0  # changes of ours under way (begin_change)
    changes: int = 0  # name changes of ours here since the first of them began
    # The missing names answered here: any (None: a folder made here), or those a lookup here
    # found missing (a folder listed), so that a name never looked up on this mount is asked
    # of the master, and shows at once once another mount has made it (close-to-open).
    missed: set[bytes] | None = None

    def size(self) -> int:
        """Names kept: those it has, and those missing that are answered."""
        return len(self.names) + (len(self.missed) if self.missed is not None else 0)

    def answers(self, name: bytes) -> bool:
        """Whether a lookup of the name, missing, may be answered here (while proved)."""
        if self.changing or name in self.names:
            return False
        return self.missed is None or name in self.missed


@dataclass
class _Entry:
    attr: mp.Attr
    fetched: float


class WithoutXattrs:
    """Inodes whose attributes said, less than their cache time ago, that they have no extended
    attributes: asked for one, the mount answers ENODATA without a round trip (`ls -l` of 10,000
    files took 11 s, a master call per file). Another mount's new attribute shows within the
    attribute timeout, as its other changes do; this mount's own changes forget the inode."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._until: OrderedDict[int, float] = OrderedDict()  # inode -> until when, the latest last

    def saw(self, attr: mp.Attr, ttl: float) -> None:
        """Attributes fresh for ttl seconds more."""
        if not attr.HasField("has_xattrs"):
            return
        if attr.has_xattrs:
            self._until.pop(attr.inode, None)
            return
        self._until[attr.inode] = self.clock() + ttl
        self._until.move_to_end(attr.inode)
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)

    def none(self, inode: int) -> bool:
        """Known, for now, to have no extended attribute."""
        until = self._until.get(inode)
        if until is None:
            return False
        if until <= self.clock():
            del self._until[inode]
            return False
        return True

    def forget(self, inode: int) -> None:
        self._until.pop(inode, None)


class WholeListing:
    """The pages of one listing of a folder from its start: when the last has come and every
    page saw the folder at one ctime (each page is read at one moment, and the ctime moves with
    every change of its names), together they name every name it had then."""

    def __init__(self, cache: DirCache, folder: int) -> None:
        self.cache = cache
        self.folder = folder
        self.generation, self.fetched = cache.generation, cache.clock()
        self.names: list[bytes] = []
        self.ctime_ns: int | None = None
        self.consistent = True

    def page(self, names: Iterable[bytes], folder: mp.Attr | None) -> None:
        """A page, with the folder as the master saw it then (None from a master that does not say)."""
        if folder is None or (self.ctime_ns is not None and folder.ctime_ns != self.ctime_ns):
            self.consistent = False
        else:
            self.ctime_ns = folder.ctime_ns
        self.names.extend(names)

    def complete(self) -> None:
        """The last page has come: the folder is known whole, if the pages agree."""
        if self.consistent and self.ctime_ns is not None:
            self.cache.listed_whole(self.folder, self.names, self.ctime_ns, self.fetched, self.generation)


class DirCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 50_000) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[tuple[int, bytes], _Entry] = {}
        self._names_of: dict[int, set[tuple[int, bytes]]] = {}  # inode -> its cached names
        self._lookups: dict[int, list[float]] = {}  # folder -> recent lookups that went to the master
        self._listed: dict[int, float] = {}  # folder -> when this mount last listed it
        self._tracked_max = FOLDERS_TRACKED  # (past this, those two are trimmed)
        self._orders: dict[int, _Order] = {}  # folder -> its last listing's order, oldest first
        self._placed: dict[int, tuple[int, int]] = {}  # inode -> (folder, position) in those
        self._last_open = -OPENS_REMEMBERED  # when a file was last opened here
        self._known: dict[int, _Known] = {}  # folder -> its names, least recently proved first
        self._known_names = 0  # names in all of them
        self.generation = 0  # bumped by every change made here: a listing begun before is stale
        self.xattrs = WithoutXattrs(clock)

    def get(self, parent: int, name: bytes) -> tuple[mp.Attr, float] | None:
        """A fresh entry and how long it may still be cached, or None."""
        entry = self._entries.get((parent, name))
        if entry is None:
            return None
        left = self.ttl - (self.clock() - entry.fetched)
        if left <= 0:
            self._remove((parent, name))
            return None
        return entry.attr, left

    def worth_listing(self, parent: int) -> bool:
        """Notes a lookup that went to the master; True when the folder should now be listed."""
        now = self.clock()
        if now - self._listed.get(parent, -self.ttl) < self.ttl:
            return False
        recent = [t for t in self._lookups.get(parent, []) if now - t < self.ttl] + [now]
        self._lookups[parent] = recent
        if len(self._lookups) + len(self._listed) > self._tracked_max:
            self._lookups = {f: times for f, times in self._lookups.items() if now - times[-1] < self.ttl}
            self._listed = {f: listed for f, listed in self._listed.items() if now - listed < self.ttl}
            # (No sooner than they have doubled again: a trim costs a pass over them.)
            self._tracked_max = max(FOLDERS_TRACKED, 2 * (len(self._lookups) + len(self._listed)))
        if len(recent) < LISTING_LOOKUPS:
            return False
        self._listed[parent] = now
        del self._lookups[parent]
        return True

    def listed_in_part(self, parent: int) -> None:
        """A listing of the folder stopped short of its end: not worth listing for a while."""
        self._listed[parent] = self.clock() + BIG_FOLDER_PAUSE - self.ttl

    def fill(self, parent: int, entries: Iterable[tuple[bytes, mp.Attr]], fetched: float, generation: int) -> None:
        """Entries from a listing or lookups begun at `fetched`, when the generation was `generation`."""
        if generation != self.generation:  # something changed here meanwhile: the listing may predate it
            return
        for name, attr in entries:
            if len(self._entries) >= self.max_entries:
                self._drop_expired()
                if len(self._entries) >= self.max_entries:
                    return
            key = (parent, name)
            self._remove(key)
            self._entries[key] = _Entry(attr, fetched)
            self._names_of.setdefault(attr.inode, set()).add(key)

    def remember_order(self, parent: int, entries: list[tuple[bytes, int, mp.ChunkRef | None]]) -> None:
        """A complete listing of a folder: (name, inode, only chunk of a small file) in order."""
        self._forget_order(parent)
        if len(self._orders) >= ORDERS_KEPT:
            self._forget_order(next(iter(self._orders)))
        order = _Order([name for name, _, _ in entries], [inode for _, inode, _ in entries], {})
        for position, (name, inode, ref) in enumerate(entries):
            self._placed[inode] = (parent, position)
            if ref is not None:
                order.small[name] = (inode, ref)
        self._orders[parent] = order

    def files_opened_lately(self) -> bool:
        """Whether files are being opened on this mount: listings should carry small files' chunks."""
        return self.clock() - self._last_open < OPENS_REMEMBERED

    def _forget_order(self, parent: int) -> None:
        order = self._orders.pop(parent, None)
        for inode in order.inodes if order is not None else ():
            if self._placed.get(inode, (None,))[0] == parent:
                del self._placed[inode]

    def ahead(self, inode: int, count: int) -> list[tuple[int, mp.ChunkRef]]:
        """The file `inode` is being opened: when it follows the last one opened in its folder's
        order, the (inode, chunk) of the next `count` small files there; otherwise none."""
        self._last_open = self.clock()
        placed = self._placed.get(inode)
        order = self._orders.get(placed[0]) if placed is not None else None
        if placed is None or order is None:
            return []
        position = placed[1]
        in_order, order.last_opened = position == order.last_opened + 1, position
        if not in_order:
            return []
        names = order.names[position + 1 : position + 1 + count]
        return [order.small[name] for name in names if name in order.small]

    def made_folder(self, attr: mp.Attr) -> None:
        """This mount made the folder: it is known whole, empty."""
        self._unknown(attr.inode)
        self._keep_known(attr.inode, _Known(set(), attr.ctime_ns, self.clock()))

    def _keep_known(self, folder: int, known: _Known) -> None:
        """The folder known whole, as the most recently proved; the least recently proved go
        while there are too many folders or names."""
        self._known[folder] = known
        self._known_names += known.size()
        while len(self._known) > KNOWN_FOLDERS or self._known_names > KNOWN_NAMES_IN_ALL:
            self._unknown(next(iter(self._known)))

    def _unknown(self, folder: int) -> None:
        known = self._known.pop(folder, None)
        if known is not None:
            self._known_names -= known.size()

    def known_missing(self, parent: int, name: bytes, within: float) -> float:
        """For how many more seconds the name is missing from a folder known whole, proved
        within `within` s (0: it is not known missing)."""
        known = self._known.get(parent)
        if known is None or not known.answers(name):
            return 0.0
        return max(0.0, within - (self.clock() - known.proved))

    def unproved_missing(self, parent: int, name: bytes) -> bool:
        """Whether the name is missing from a folder known whole whose last proof is too old:
        the folder's attributes would prove it again (proved_unchanged), a round trip for every
        name missing there in the next negative timeout (`git gc` looks for each of the 256
        folders of loose objects in turn, several times over)."""
        known = self._known.get(parent)
        return known is not None and known.answers(name)

    def found_missing(self, parent: int, name: bytes) -> None:
        """The master found no such name in the folder: if it is known whole from a listing,
        the name is answered here from now on."""
        known = self._known.get(parent)
        if known is None or known.missed is None or name in known.names or name in known.missed:
            return
        if len(known.missed) < MISSED_NAMES:
            self._unknown(parent)
            known.missed.add(name)
            self._keep_known(parent, known)

    def proved_unchanged(self, folder: int, ctime_ns: int, fetched: float) -> None:
        """The master saw the folder at ctime_ns in a request sent at `fetched`: when that is
        the ctime of its names known here, nobody changed them since, and they are proved as
        of then; else they are no longer known."""
        known = self._known.get(folder)
        if known is None or known.changing:
            return
        if ctime_ns != known.ctime_ns:
            self._unknown(folder)
        elif fetched > known.proved:
            known.proved = fetched
            del self._known[folder]  # (now the most recently proved)
            self._known[folder] = known

    def listed_whole(self, folder: int, names: Iterable[bytes], ctime_ns: int, fetched: float, generation: int) -> None:
        """A listing of every name of the folder, begun at `fetched` when the generation was
        `generation`, whose pages all saw the folder at ctime_ns: it is known whole (a folder
        made elsewhere, or before this mount started). Unless a change of ours ran meanwhile:
        the listing may predate it."""
        if generation != self.generation:
            return
        known = self._known.get(folder)
        if known is not None and (known.changing or known.proved >= fetched):
            return
        names = set(names)
        if len(names) >= KNOWN_NAMES:
            return
        missed = known.missed if known is not None and known.missed is not None else set()
        self._unknown(folder)
        self._keep_known(folder, _Known(names, ctime_ns, fetched, missed={m for m in missed if m not in names}))

    def begin_change(self, parent: int) -> tuple[_Known, int] | None:
        """Before this mount adds, renames or removes a name in the folder, or changes its
        attributes (and before its forget_name calls)."""
        known = self._known.get(parent)
        if known is None:
            return None
        known.changing += 1
        return known, known.changes

    def end_change(
        self,
        parent: int,
        began: tuple[_Known, int] | None,
        forgets: int,
        proof: tuple[int, int] | None,
        added: bytes | None = None,
        removed: bytes | None = None,
        refused: bool = False,
    ) -> None:
        """After the change, which made `forgets` forget_name calls here (an add 2: one before
        the master call, one after), `added` a name and `removed` one. proof: the folder's ctime
        just before the change and after it, from the reply (None: it failed). The folder stays
        known whole only if that proves nobody changed it since we last saw it, and no other
        change of ours ran here; or if the master refused the change without making it, for a
        reason that says nothing against the names known (`refused`: then as proved before)."""
        if began is None:
            return
        known, changes = began
        known.changing -= 1
        if self._known.get(parent) is not known:
            return
        self._unknown(parent)
        if known.changing or known.changes != changes + forgets:
            return
        if proof is None:
            if refused:
                known.changes = 0
                self._keep_known(parent, known)
            return
        if proof[0] != known.ctime_ns or len(known.names) >= KNOWN_NAMES:
            return
        if proof[1] != proof[0]:  # (else nothing changed: a rename between two names of one file)
            if removed is not None:
                known.names.discard(removed)
            if added is not None:
                known.names.add(added)
        known.ctime_ns = proof[1]
        known.proved = self.clock()
        known.changes = 0
        self._keep_known(parent, known)

    def forget_name(self, parent: int, name: bytes) -> None:
        """The name changed here (removed, replaced or created): the master has the truth."""
        self.generation += 1
        known = self._known.get(parent)
        if known is not None:
            if known.changing:
                known.changes += 1  # end_change tells its own from others
            else:
                self._unknown(parent)  # a change that does not prove itself: ask the master
        entry = self._entries.get((parent, name))
        if entry is not None:
            self.forget_inode(entry.attr.inode)
        self._remove((parent, name))

    def forget_inode(self, inode: int) -> None:
        """The inode changed here (size, times, mode, link count, attributes): all its names go."""
        self.generation += 1
        self.xattrs.forget(inode)
        for key in list(self._names_of.get(inode, ())):
            self._remove(key)

    def _remove(self, key: tuple[int, bytes]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            keys = self._names_of.get(entry.attr.inode)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._names_of[entry.attr.inode]

    def _drop_expired(self) -> None:
        now = self.clock()
        for key in [k for k, e in self._entries.items() if now - e.fetched >= self.ttl]:
            self._remove(key)
