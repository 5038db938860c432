"""An open file's map of slots to chunks: asked a window at a time, and never older than our commits."""

from __future__ import annotations

import random

from fusedfs.mount.chunkmap import WINDOW, Ask, ChunkMap
from fusedfs.rpc import master_pb2 as mp


def refs(*slots: int, version: int = 1) -> list[mp.ChunkRef]:
    return [mp.ChunkRef(index=s, chunk_id=f"{version:016x}") for s in slots]


def test_a_slot_is_asked_with_its_window_and_the_answer_covers_up_to_its_last_chunk() -> None:
    chunk_map = ChunkMap()
    assert not chunk_map.known(5)
    ask = chunk_map.ask(5)
    assert (ask.first, ask.count) == (0, WINDOW)
    # Every other slot has a chunk: WINDOW chunks reach slot 2 * WINDOW - 2.
    chunk_map.put(ask, refs(*range(0, 2 * WINDOW, 2)))
    assert chunk_map.known(5) and chunk_map.ref(5) is None and chunk_map.hole(5)
    assert chunk_map.ref(4) is not None and not chunk_map.hole(4)
    assert chunk_map.known(WINDOW - 1)
    assert not chunk_map.known(WINDOW)  # (its window is not known whole: asked again)
    assert chunk_map.ask(WINDOW + 3) == Ask(WINDOW, WINDOW, 0)


def test_an_answer_with_fewer_chunks_than_asked_covers_every_slot_on() -> None:
    chunk_map = ChunkMap()
    ask = chunk_map.ask(0)
    chunk_map.put(ask, refs(0, 1))
    assert chunk_map.known(10**9) and chunk_map.hole(10**9) and not chunk_map.hole(1)


def test_after_our_commit_only_its_slot_is_asked_again() -> None:
    chunk_map = ChunkMap()
    chunk_map.put(chunk_map.ask(0), refs(*range(10)))
    chunk_map.changed(3)
    assert not chunk_map.known(3) and not chunk_map.hole(3) and chunk_map.known(4)
    ask = chunk_map.ask(3)
    assert (ask.first, ask.count) == (3, 1)
    chunk_map.put(ask, refs(3, version=2))
    assert chunk_map.ref(3) == refs(3, version=2)[0]


def test_an_answer_that_left_before_our_commit_was_seen_does_not_make_its_slot_known() -> None:
    chunk_map = ChunkMap()
    ask = chunk_map.ask(0)  # asked ...
    chunk_map.changed(3)  # ... our commit's answer arrives ...
    chunk_map.put(ask, refs(*range(10)))  # ... then the list, which may predate the commit
    assert not chunk_map.known(3) and chunk_map.known(2)
    assert chunk_map.ask(3) == Ask(3, 1, 1)


def test_a_chunk_we_committed_where_we_know_it_is_stored_reads_without_asking() -> None:
    chunk_map = ChunkMap()
    ask = chunk_map.ask(0)  # asked before the commit ...
    ours = refs(3, version=2)[0]
    chunk_map.committed(3, ours)
    chunk_map.put(ask, refs(*range(10)))  # ... an answer that may predate it does not replace it
    assert chunk_map.known(3) and chunk_map.ref(3) == ours
    later = chunk_map.ask(0)
    chunk_map.committed(4, refs(4, version=2)[0])
    chunk_map.put(chunk_map.ask(4), refs(4, version=3))
    assert chunk_map.ref(4) == refs(4, version=3)[0]  # asked after: the master's word stands
    chunk_map.put(later, refs(*range(10), version=4))
    assert chunk_map.ref(3) == refs(3, version=4)[0]  # (asked after the commit in slot 3)
    assert chunk_map.ref(4) == refs(4, version=3)[0]  # (asked before the one in slot 4)


def test_answers_asked_before_a_reset_are_dropped() -> None:
    chunk_map = ChunkMap()
    ask = chunk_map.ask(0)
    chunk_map.reset()
    chunk_map.put(ask, refs(0))
    assert not chunk_map.known(0)


def answer(master: dict[int, int], ask: Ask) -> list[mp.ChunkRef]:
    """The master's answer to ask, from its file's slot -> chunk version."""
    chunks = sorted(s for s in master if s >= ask.first)[: ask.count or None]
    return [ref for s in chunks for ref in refs(s, version=master[s])]


def test_random_asks_answers_and_commits_never_show_a_slot_older_than_our_last_commit_there() -> None:
    """A master's file and our commits to it, with asks answered at random moments and their
    answers (and our commits' answers) arriving late and out of order: a slot the map knows is
    never older than the last commit of ours it has seen there."""
    rng = random.Random(7)
    slots = 3 * WINDOW
    for _round in range(15):
        master = {s: 1 for s in range(slots) if rng.random() < 0.4}  # slot -> version
        seen = dict.fromkeys(range(slots), 0)  # the version of our last commit seen at each slot
        chunk_map = ChunkMap()
        asked: list[Ask] = []  # sent, not answered by the master yet
        answers: list[tuple[Ask, list[mp.ChunkRef]]] = []  # answered, not arrived yet
        commits: list[tuple[int, int]] = []  # made on the master, their answers not arrived yet

        for _step in range(300):
            action = rng.random()
            if action < 0.25:
                asked.append(chunk_map.ask(rng.randrange(slots)))
            elif action < 0.45 and asked:
                answers.append((ask := asked.pop(rng.randrange(len(asked))), answer(master, ask)))
            elif action < 0.7 and answers:
                chunk_map.put(*answers.pop(rng.randrange(len(answers))))
            elif action < 0.85:
                slot = rng.randrange(slots)
                master[slot] = master.get(slot, 0) + 1
                commits.append((slot, master[slot]))
            elif commits:
                slot, version = commits.pop(rng.randrange(len(commits)))
                seen[slot] = max(seen[slot], version)
                chunk_map.changed(slot)
            elif rng.random() < 0.05:
                chunk_map.reset()
            for slot in range(slots):
                if chunk_map.known(slot):
                    ref = chunk_map.ref(slot)
                    version = int(ref.chunk_id, 16) if ref is not None else 0
                    assert version >= seen[slot], (slot, version, seen[slot])
