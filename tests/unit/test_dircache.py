"""The mount's name cache: listing after repeated lookups, expiry, and our own changes."""

from __future__ import annotations

from fusedfs.mount.dircache import DirCache
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
