"""The mount's name cache: listing after repeated lookups, expiry, and our own changes."""

from __future__ import annotations

import time

import pytest

from fusedfs.mount import dircache, operations
from fusedfs.mount.dircache import BIG_FOLDER_PAUSE, DirCache, WholeListing
from fusedfs.rpc import master_pb2 as mp


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def attr(inode: int, size: int = 0) -> mp.Attr:
    return mp.Attr(inode=inode, size=size)


def test_a_folder_is_listed_after_two_lookups_and_entries_expire() -> None:
    clock = Clock()
    cache = DirCache(ttl=1.0, clock=clock)
    assert not cache.worth_listing(1)
    assert cache.worth_listing(1)  # the second lookup in the folder within the ttl
    assert not cache.worth_listing(1)  # just listed
    cache.fill(1, [(b"a", attr(10)), (b"b", attr(11))], fetched=clock.now, generation=cache.generation)
    clock.now += 0.4
    hit = cache.get(1, b"a")
    assert hit is not None and hit[0].inode == 10 and abs(hit[1] - 0.6) < 1e-9  # only what is left
    assert cache.get(1, b"missing") is None and cache.get(2, b"a") is None
    clock.now += 0.7
    assert cache.get(1, b"a") is None  # older than the kernel's own timeout: never handed out
    # A folder too big to list whole: its first pages are not listed again every second.
    assert not cache.worth_listing(1) and cache.worth_listing(1)  # (listed again once the ttl is over)
    cache.listed_in_part(1)
    for _ in range(3):
        clock.now += BIG_FOLDER_PAUSE / 3 - 1
        assert not cache.worth_listing(1) and not cache.worth_listing(1)
    clock.now += 4
    assert not cache.worth_listing(1) and cache.worth_listing(1)


def test_our_changes_remove_what_they_touch_and_stale_listings_are_refused() -> None:
    clock = Clock()
    cache = DirCache(ttl=1.0, clock=clock)
    cache.fill(1, [(b"a", attr(10)), (b"b", attr(11))], clock.now, cache.generation)
    cache.fill(2, [(b"hardlink-of-a", attr(10))], clock.now, cache.generation)
    cache.forget_name(1, b"a")  # unlinked here: its other names' link count changed too
    assert cache.get(1, b"a") is None and cache.get(2, b"hardlink-of-a") is None
    assert cache.get(1, b"b") is not None
    cache.forget_inode(11)  # written here: size and times changed
    assert cache.get(1, b"b") is None
    started = cache.generation
    cache.forget_name(3, b"x")  # a change while a listing was under way ...
    cache.fill(3, [(b"x", attr(12))], clock.now, started)  # ... so that listing is not used
    assert cache.get(3, b"x") is None


def test_files_opened_in_the_folders_order_have_the_next_small_ones_named_ahead() -> None:
    clock = Clock()
    cache = DirCache(ttl=1.0, clock=clock)

    def ref(chunk: str) -> mp.ChunkRef:
        return mp.ChunkRef(chunk_id=chunk, length=10)

    listing = [(b"a", 10, ref("ca")), (b"b", 11, ref("cb")), (b"big", 12, None), (b"c", 13, ref("cc"))]
    cache.remember_order(1, [*listing, (b"d", 14, ref("cd"))])
    assert not cache.files_opened_lately()
    assert cache.ahead(10, 2) == []  # one open tells nothing yet
    assert cache.files_opened_lately()  # (so listings now bring the small files' chunks)
    clock.now += 11
    assert not cache.files_opened_lately()
    assert [(i, r.chunk_id) for i, r in cache.ahead(11, 2)] == [(13, "cc")]  # (big has no small chunk)
    assert [(i, r.chunk_id) for i, r in cache.ahead(12, 2)] == [(13, "cc"), (14, "cd")]
    assert cache.ahead(10, 2) == []  # back to the start: not in order
    assert cache.ahead(99, 2) == []  # not from a listing
    cache.remember_order(1, [(b"x", 20, ref("cx"))])  # listed again: the old order is gone
    assert cache.ahead(11, 2) == []
    assert cache.ahead(20, 2) == []
    assert cache.ahead(20, 2) == []  # (a second open of the same file is not "the next one")
    for folder in range(100, 120):  # only the last few folders' orders are kept
        names = [b"f", b"g", b"h"]
        cache.remember_order(folder, [(name, i * 1000 + folder, ref(f"c{i}-{folder}")) for i, name in enumerate(names)])
    assert cache.ahead(119, 1) == [] and [r.chunk_id for _, r in cache.ahead(1119, 1)] == ["c2-119"]
    assert cache.ahead(100, 1) == [] and cache.ahead(1100, 1) == []  # folder 100's order was dropped


def add(cache: DirCache, folder: int, name: bytes, before: int, after: int, others: int = 0) -> None:
    """Our add of `name`, as Operations._add_name does it; `others`: changes of ours that ran
    meanwhile (each a forget_name)."""
    began = cache.begin_change(folder)
    cache.forget_name(folder, name)
    for i in range(others):
        cache.forget_name(folder, b"other%d" % i)
    cache.forget_name(folder, name)
    cache.end_change(folder, began, 2, (before, after), added=name)


def rename(cache: DirCache, old: tuple[int, bytes], new: tuple[int, bytes], proofs: list[tuple[int, int]]) -> None:
    """Our rename of old to new (each (folder, name)), as Operations.rename does it; proofs: each
    folder's ctime before and after, as the reply says (one folder, or the old one and the new)."""
    one_folder = old[0] == new[0]
    began = [cache.begin_change(old[0])] + ([] if one_folder else [cache.begin_change(new[0])])
    for _ in range(2):  # (before the master call and after it)
        cache.forget_name(*old)
        cache.forget_name(*new)
    if one_folder:
        cache.end_change(old[0], began[0], 4, proofs[0], added=new[1], removed=old[1])
    else:
        cache.end_change(old[0], began[0], 2, proofs[0], removed=old[1])
        cache.end_change(new[0], began[1], 2, proofs[1], added=new[1])


def test_a_folder_made_here_answers_missing_names_while_every_add_proves_it_unchanged() -> None:
    clock = Clock()
    cache = DirCache(ttl=1.0, clock=clock)
    assert not cache.known_missing(5, b"a", 0.2)  # never made here: ask the master
    cache.made_folder(mp.Attr(inode=5, ctime_ns=1000))
    assert cache.known_missing(5, b"a", 0.2)
    assert not cache.known_missing(5, b"a", 0.0)  # --negative-timeout 0: never
    add(cache, 5, b"a", before=1000, after=1001)
    assert not cache.known_missing(5, b"a", 0.2) and cache.known_missing(5, b"b", 0.2)
    clock.now += 0.3  # the last proof is older than the negative timeout: ask the master
    assert not cache.known_missing(5, b"b", 0.2)
    add(cache, 5, b"b", before=1001, after=1002)  # ... but the next add proves it again
    assert cache.known_missing(5, b"c", 0.2)
    # Someone else changed the folder in between: its ctime moved on without us.
    add(cache, 5, b"c", before=1005, after=1006)
    assert not cache.known_missing(5, b"d", 0.2)
    add(cache, 5, b"d", before=1006, after=1007)  # once forgotten, stays forgotten
    assert not cache.known_missing(5, b"e", 0.2)


def test_other_changes_of_ours_end_the_knowledge() -> None:
    cache = DirCache(ttl=1.0, clock=Clock())
    cache.made_folder(mp.Attr(inode=5, ctime_ns=1000))
    cache.forget_name(5, b"moved-in")  # a rename or link into the folder, an unlink
    assert not cache.known_missing(5, b"moved-in", 0.2)
    cache.made_folder(mp.Attr(inode=6, ctime_ns=1000))
    add(cache, 6, b"a", before=1000, after=1002, others=1)  # a concurrent change of ours
    assert not cache.known_missing(6, b"b", 0.2)
    cache.made_folder(mp.Attr(inode=7, ctime_ns=1000))
    began = cache.begin_change(7)
    assert not cache.known_missing(7, b"a", 0.2)  # while an add is under way: ask the master
    cache.end_change(7, began, 2, None, added=b"a")  # it failed (EEXIST: we were wrong, or EIO)
    assert not cache.known_missing(7, b"b", 0.2)


def test_a_folder_stays_known_through_our_renames_that_prove_it_unchanged() -> None:
    """pip, rsync, editors and git write a file under a temporary name and rename it into place:
    the folder stays known whole, and the next file's names are answered missing here."""
    cache = DirCache(ttl=1.0, clock=Clock())
    cache.made_folder(mp.Attr(inode=5, ctime_ns=1000))
    add(cache, 5, b"x.pyc.tmp", before=1000, after=1001)
    rename(cache, (5, b"x.pyc.tmp"), (5, b"x.pyc"), [(1001, 1002)])
    assert cache.known_missing(5, b"x.pyc.tmp", 0.2) and cache.known_missing(5, b"y.pyc", 0.2)
    assert not cache.known_missing(5, b"x.pyc", 0.2)
    add(cache, 5, b"y.pyc.tmp", before=1002, after=1003)  # (the rename left the ctime it made)
    assert not cache.known_missing(5, b"y.pyc.tmp", 0.2)
    # Across folders: the name leaves one and joins the other.
    cache.made_folder(mp.Attr(inode=6, ctime_ns=2000))
    rename(cache, (5, b"x.pyc"), (6, b"moved"), [(1003, 1004), (2000, 2001)])
    assert cache.known_missing(5, b"x.pyc", 0.2) and not cache.known_missing(6, b"moved", 0.2)
    assert cache.known_missing(6, b"other", 0.2)
    # Into a known folder from one not known: it still learns the name.
    rename(cache, (9, b"far"), (6, b"near"), [(500, 501), (2001, 2002)])
    assert not cache.known_missing(6, b"near", 0.2) and cache.known_missing(6, b"far", 0.2)
    # Two names of one file: nothing changed (the ctimes did not move), both names stay.
    add(cache, 6, b"hard", before=2002, after=2003)
    rename(cache, (6, b"near"), (6, b"hard"), [(2003, 2003)])
    assert not cache.known_missing(6, b"near", 0.2) and not cache.known_missing(6, b"hard", 0.2)
    # Another mount changed the folder before our rename: its ctime moved on without us.
    rename(cache, (5, b"y.pyc.tmp"), (5, b"y.pyc"), [(1009, 1010)])
    assert not cache.known_missing(5, b"z", 0.2)


def test_a_folder_stays_known_through_our_changes_to_its_attributes_that_prove_it_unchanged() -> None:
    """rsync makes a folder, then sets its mode: its names are still all known."""
    cache = DirCache(ttl=1.0, clock=Clock())
    cache.made_folder(mp.Attr(inode=5, ctime_ns=1000))
    cache.end_change(5, cache.begin_change(5), 0, (1000, 1001))
    add(cache, 5, b"a", before=1001, after=1002)
    assert cache.known_missing(5, b"b", 0.2) and not cache.known_missing(5, b"a", 0.2)
    cache.end_change(5, cache.begin_change(5), 0, (1005, 1006))  # another mount's change came first
    assert not cache.known_missing(5, b"b", 0.2)


def test_a_folder_stays_known_through_our_removals_that_prove_it_unchanged() -> None:
    cache = DirCache(ttl=1.0, clock=Clock())
    cache.made_folder(mp.Attr(inode=5, ctime_ns=1000))
    add(cache, 5, b"4913", before=1000, after=1001)  # (vim's probe file)
    began = cache.begin_change(5)
    cache.forget_name(5, b"4913")
    cache.forget_name(5, b"4913")
    cache.end_change(5, began, 2, (1001, 1002), removed=b"4913")
    assert cache.known_missing(5, b"4913", 0.2) and cache.known_missing(5, b"other", 0.2)
    began = cache.begin_change(5)
    cache.end_change(5, began, 2, (1007, 1008), removed=b"x")  # another mount's change came first
    assert not cache.known_missing(5, b"other", 0.2)


def test_folders_known_whole_are_forgotten_least_recently_proved_first_past_the_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rsync makes a tree's folders before it fills them: each must still be known when its
    files come (a proof renews a folder's place); past the number of folders or of names in
    all, the one proved longest ago goes (it is asked of the master again)."""
    monkeypatch.setattr(dircache, "KNOWN_FOLDERS", 3)
    monkeypatch.setattr(dircache, "KNOWN_NAMES_IN_ALL", 4)
    cache = DirCache(ttl=1.0, clock=Clock())
    for folder in (5, 6, 7):
        cache.made_folder(mp.Attr(inode=folder, ctime_ns=1000))
    add(cache, 5, b"a", before=1000, after=1001)  # 5 proved last now
    cache.made_folder(mp.Attr(inode=8, ctime_ns=1000))  # a fourth: 6 goes
    assert [bool(cache.known_missing(f, b"x", 0.2)) for f in (5, 6, 7, 8)] == [True, False, True, True]
    add(cache, 7, b"a", before=1000, after=1001)
    add(cache, 7, b"b", before=1001, after=1002)
    add(cache, 8, b"a", before=1000, after=1001)  # 4 names in all: still within
    assert [bool(cache.known_missing(f, b"x", 0.2)) for f in (5, 7, 8)] == [True, True, True]
    add(cache, 8, b"b", before=1001, after=1002)  # a fifth: 5 (proved longest ago) goes
    assert [bool(cache.known_missing(f, b"x", 0.2)) for f in (5, 7, 8)] == [False, True, True]
    assert not cache.known_missing(8, b"b", 0.2)
    cache.forget_name(7, b"c")  # (a change that ends a folder's knowledge gives its names back)
    add(cache, 8, b"c", before=1002, after=1003)
    add(cache, 8, b"d", before=1003, after=1004)
    assert cache.known_missing(8, b"x", 0.2)


def test_a_change_the_master_refused_without_making_it_keeps_the_knowledge() -> None:
    """git tries to remove each folder of loose objects (ENOTEMPTY): .git/objects stays known.
    An add refused with EEXIST (the name is there: we were wrong) or an error after which the
    change may have been made (EIO) ends it."""
    clock = Clock()
    cache = DirCache(ttl=1.0, clock=clock)
    cache.made_folder(mp.Attr(inode=5, ctime_ns=1000))
    add(cache, 5, b"00", before=1000, after=1001)
    clock.now += 0.1
    began = cache.begin_change(5)
    cache.forget_name(5, b"00")
    cache.forget_name(5, b"00")
    cache.end_change(5, began, 2, None, removed=b"00", refused=True)
    assert cache.known_missing(5, b"01", 0.2) == pytest.approx(0.1)  # (as proved before)
    assert not cache.known_missing(5, b"00", 0.2)
    began = cache.begin_change(5)
    cache.forget_name(5, b"01")
    cache.forget_name(5, b"01")
    cache.end_change(5, began, 2, None, added=b"01")
    assert not cache.known_missing(5, b"02", 0.2)


def test_a_rename_that_fails_ends_the_knowledge() -> None:
    cache = DirCache(ttl=1.0, clock=Clock())
    cache.made_folder(mp.Attr(inode=5, ctime_ns=1000))
    began = cache.begin_change(5)
    assert not cache.known_missing(5, b"a", 0.2)  # while it is under way: ask the master
    cache.end_change(5, began, 4, None, added=b"b", removed=b"a")
    assert not cache.known_missing(5, b"a", 0.2) and not cache.known_missing(5, b"c", 0.2)


def test_inodes_without_extended_attributes_are_known_for_their_attributes_cache_time() -> None:
    clock = Clock()
    cache = DirCache(ttl=1.0, clock=clock)
    known = cache.xattrs
    known.saw(mp.Attr(inode=10, has_xattrs=False), ttl=1.0)
    known.saw(mp.Attr(inode=11, has_xattrs=True), ttl=1.0)
    known.saw(mp.Attr(inode=12), ttl=1.0)  # not said: not known
    assert known.none(10) and not known.none(11) and not known.none(12)
    clock.now += 0.6
    assert known.none(10)
    known.saw(mp.Attr(inode=10, has_xattrs=True), ttl=1.0)  # it has one now
    assert not known.none(10)
    known.saw(mp.Attr(inode=10, has_xattrs=False), ttl=0.3)  # from a listing with 0.3 s left
    clock.now += 0.31
    assert not known.none(10)  # no longer than the attributes themselves
    known.saw(mp.Attr(inode=10, has_xattrs=False), ttl=1.0)
    cache.forget_inode(10)  # we set one (or changed the inode otherwise): ask the master
    assert not known.none(10)
    for inode in range(100, 100 + known.max_entries + 5):  # bounded, the oldest go first
        known.saw(mp.Attr(inode=inode, has_xattrs=False), ttl=1.0)
    assert not known.none(100) and known.none(100 + known.max_entries + 4)


def test_a_missing_name_is_answered_for_what_is_left_of_the_negative_timeout() -> None:
    clock = Clock()
    cache = DirCache(ttl=1.0, clock=clock)
    cache.made_folder(mp.Attr(inode=5, ctime_ns=1000))
    clock.now += 0.15  # (the kernel then remembers the miss only until the proof is 0.2 s old)
    assert cache.known_missing(5, b"a", 0.2) == pytest.approx(0.05)


def test_a_folder_listed_whole_is_known_and_its_attributes_prove_it_again() -> None:
    """A folder made elsewhere (`git gc` looks for each of .git/objects/00 to ff, several times
    over): once listed from its first page to its last, all at one ctime of the folder, the
    names the master has since found missing are answered here; a GetAttr showing that ctime
    again proves them again. A name never looked up here is asked of the master: another
    mount may have just made it (close-to-open)."""
    clock = Clock()
    cache = DirCache(ttl=1.0, clock=clock)
    listing = WholeListing(cache, 5)
    listing.page([b"a", b"b"], mp.Attr(inode=5, ctime_ns=1000))
    listing.page([b"c"], mp.Attr(inode=5, ctime_ns=1000))
    cache.found_missing(5, b"x")
    assert not cache.known_missing(5, b"x", 0.2)  # (until the last page came)
    listing.complete()
    assert not cache.known_missing(5, b"x", 0.2) and not cache.unproved_missing(5, b"x")  # never looked up
    cache.found_missing(5, b"x")
    cache.found_missing(5, b"c")  # (a name it has: another mount removed it; the next proof shows it)
    assert cache.known_missing(5, b"x", 0.2) and not cache.known_missing(5, b"c", 0.2)
    assert not cache.unproved_missing(5, b"c") and not cache.known_missing(5, b"y", 0.2)
    clock.now += 0.3  # the proof is older than the negative timeout: the folder's attributes ...
    assert not cache.known_missing(5, b"x", 0.2) and cache.unproved_missing(5, b"x")
    cache.proved_unchanged(5, 1000, clock.now - 0.001)  # ... show the same ctime: proved again
    assert cache.known_missing(5, b"x", 0.2) == pytest.approx(0.199)
    cache.proved_unchanged(5, 1000, clock.now - 0.5)  # (an older proof changes nothing)
    assert cache.known_missing(5, b"x", 0.2) == pytest.approx(0.199)
    clock.now += 0.3
    cache.proved_unchanged(5, 1001, clock.now)  # another mount changed it: no longer known
    assert not cache.known_missing(5, b"x", 0.2) and not cache.unproved_missing(5, b"x")
    cache.proved_unchanged(5, 1000, clock.now)  # (and a folder not known stays so)
    assert not cache.known_missing(5, b"x", 0.2)


def test_a_listing_proves_nothing_when_its_pages_disagree_or_a_change_of_ours_ran_meanwhile() -> None:
    cache = DirCache(ttl=1.0, clock=Clock())
    # The folder changed between two pages: a name may have moved behind the cursor.
    listing = WholeListing(cache, 5)
    listing.page([b"a"], mp.Attr(inode=5, ctime_ns=1000))
    listing.page([b"b"], mp.Attr(inode=5, ctime_ns=1001))
    listing.complete()
    cache.found_missing(5, b"x")
    assert not cache.known_missing(5, b"x", 0.2)
    # A master that does not say the folder's ctime.
    listing = WholeListing(cache, 6)
    listing.page([b"a"], None)
    listing.complete()
    cache.found_missing(6, b"x")
    assert not cache.known_missing(6, b"x", 0.2)
    # This mount changed a name while the listing ran: the listing may predate it.
    listing = WholeListing(cache, 7)
    listing.page([b"a"], mp.Attr(inode=7, ctime_ns=1000))
    cache.forget_name(7, b"new")
    listing.complete()
    cache.found_missing(7, b"x")
    assert not cache.known_missing(7, b"x", 0.2)
    # A change of ours under way in a folder known whole: the listing leaves it to that change.
    cache.made_folder(mp.Attr(inode=8, ctime_ns=1000))
    began = cache.begin_change(8)
    listing = WholeListing(cache, 8)
    listing.page([], mp.Attr(inode=8, ctime_ns=1000))
    listing.complete()
    cache.proved_unchanged(8, 1000, cache.clock())
    assert not cache.known_missing(8, b"x", 0.2)
    cache.forget_name(8, b"a")
    cache.forget_name(8, b"a")
    cache.end_change(8, began, 2, (1000, 1001), added=b"a")
    assert cache.known_missing(8, b"x", 0.2) and not cache.known_missing(8, b"a", 0.2)


def test_missing_names_answered_in_a_listed_folder_are_bounded_and_counted_among_all_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dircache, "MISSED_NAMES", 2)
    monkeypatch.setattr(dircache, "KNOWN_NAMES_IN_ALL", 4)
    cache = DirCache(ttl=1.0, clock=Clock())
    for folder in (5, 6):
        listing = WholeListing(cache, folder)
        listing.page([b"a"], mp.Attr(inode=folder, ctime_ns=1000))
        listing.complete()
    for name in (b"x", b"y", b"z"):
        cache.found_missing(5, name)
    assert [bool(cache.known_missing(5, n, 0.2)) for n in (b"x", b"y", b"z")] == [True, True, False]
    cache.found_missing(6, b"x")  # 5 names in all (a, x, y; a, x): 5, proved longest ago, goes
    assert not cache.known_missing(5, b"x", 0.2) and cache.known_missing(6, b"x", 0.2)


def test_attributes_kept_fresh_go_with_their_timeout_and_past_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The folders' and closed files' attributes a mount keeps for the kernel's next getattr:
    every folder listed or changed was kept until a getattr took it, so a long-lived mount
    walking many folders (rsync, find) grew without end."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(operations, "FRESH_ATTRS_MAX", 3)
    kept: dict[int, tuple[mp.Attr, float]] = {}
    operations.keep_fresh(kept, 1, attr(1), now[0] - 2, timeout=1)  # (already too old)
    for inode in (2, 3, 4):
        operations.keep_fresh(kept, inode, attr(inode), now[0], timeout=1)
    assert list(kept) == [2, 3, 4]
    operations.keep_fresh(kept, 5, attr(5), now[0], timeout=1)  # past the bound: the oldest goes
    assert list(kept) == [3, 4, 5]
    now[0] += 0.6
    operations.keep_fresh(kept, 3, attr(3, size=9), now[0], timeout=1)  # (again: to the end)
    now[0] += 0.6
    operations.keep_fresh(kept, 6, attr(6), now[0], timeout=1)  # 4 and 5 are past the timeout
    assert list(kept) == [3, 6] and kept[3][0].size == 9


def test_the_folders_whose_lookups_are_counted_are_let_go_past_the_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mount walking a big tree kept an entry for every folder it ever looked a name up in."""
    monkeypatch.setattr(dircache, "FOLDERS_TRACKED", 10)
    clock = Clock()
    cache = DirCache(ttl=1.0, clock=clock)
    cache.worth_listing(1)
    cache.listed_in_part(2)  # (too big to list: paused longer than the ttl)
    for folder in range(100, 300):  # one lookup each, a second apart
        clock.now += 1
        assert not cache.worth_listing(folder)
        assert len(cache._lookups) + len(cache._listed) <= 11
    assert not cache.worth_listing(2) and not cache.worth_listing(2)  # still paused (BIG_FOLDER_PAUSE)
    assert not cache.worth_listing(5) and cache.worth_listing(5)  # (and counting goes on)
