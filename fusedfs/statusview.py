"""The cluster's status as people read it: the text `fusedfs client MASTER status` prints, which
the master's status page (`--metrics`, at /) also shows, refreshed every few seconds."""

from __future__ import annotations

import html
from collections.abc import Iterable

from fusedfs.rpc import master_pb2 as mp

PAGE_REFRESH = 5  # seconds between the status page's reloads


def size_text(n: float) -> str:
    """Bytes as people read them: 0 B, 1.5 KiB ... 2.0 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def age_text(seconds: float) -> str:
    """A span as people read it: 45s, 12m, 3h02m, 2d04h."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02}m"
    return f"{s // 86400}d{s % 86400 // 3600:02}h"


def status_page(reply: mp.StatusReply, now: float) -> str:
    """status_text as a web page that reloads itself."""
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{PAGE_REFRESH}"><title>fusedfs cluster {reply.cluster_id}</title>'
        "</head><body><h1>fusedfs</h1>"
        f"<pre>{html.escape(status_text(reply, now))}</pre>"
        '<p><a href="/metrics">metrics</a> (Prometheus)</p></body></html>'
    )


def status_text(reply: mp.StatusReply, now: float) -> str:
    """What `status` prints: a line per keeper, then chunk health, files, trash and metadata
    copies; now: seconds since the epoch."""
    lines: list[str] = []
    header = (
        "KEEPER", "ADDRESS", "DOMAIN", "STATE", "CAPACITY", "USED", "FREE", "CHUNKS", "LOAD", "SEEN", "SCRUBBED", "BAD",
        "DAMAGED",
    )  # fmt: skip
    lines.append("{:<12} {:<22} {:<12} {:<7} {:>10} {:>10} {:>10} {:>7} {:>4} {:>6} {:>9} {:>4} {:>7}".format(*header))
    for k in reply.keepers:
        state = "DEAD" if not k.alive else ("drained" if not k.chunks_to_move else "drain") if k.draining else "up"
        if k.alive and k.disk_stalled_seconds:
            state = "STALLED"
        lines.append(
            f"{k.keeper_id[:12]:<12} {k.address:<22} {k.failure_domain[:12]:<12} {state:<7} "
            f"{size_text(k.capacity_bytes):>10} "
            f"{size_text(k.used_bytes):>10} {size_text(k.free_bytes):>10} {k.chunks:>7} {k.load:>4} "
            f"{k.seconds_since_heartbeat:>5.1f}s {k.scrub_checked:>9} {k.scrub_bad:>4} {k.damaged_copies:>7}"
        )
    for k in reply.keepers:
        if k.alive and k.disk_stalled_seconds:
            lines.append(
                f"keeper {k.keeper_id} at {k.address}: its disk has not answered for {k.disk_stalled_seconds:.0f} s; "
                "it takes no new chunks, and leaves the cluster if that lasts a minute"
            )
        if k.draining and k.alive:
            others = sum(o.alive and not o.draining for o in reply.keepers)
            short = (
                f" (only {others} other keepers for a goal of {reply.goal}: it finishes once another keeper joins)"
                if others < reply.goal
                else ""
            )
            lines.append(
                f"keeper {k.keeper_id} at {k.address}: "
                + (
                    f"draining, {k.chunks_to_move} of its chunks still to be copied elsewhere{short}"
                    if k.chunks_to_move
                    else "drained: every chunk it holds has the goal's worth of copies elsewhere, safe to stop"
                )
            )
    c = reply.chunks
    lines.append(
        f"\nchunks: {c.total} in files, goal {reply.goal} copies: {c.under_replicated} under-replicated, "
        f"{c.over_replicated} over-replicated, {c.lost} lost, {c.unavailable} unavailable"
        + (" (their keepers are down)" if c.unavailable else "")
        + f", {c.repairs_in_flight} repairs in flight, "
        f"{c.garbage} garbage, {c.pending} reserved for uploads"
        + (f", {c.misplaced} on too few machines (failure domains)" if c.misplaced else "")
    )
    lines.append(
        f"files: {reply.files}, directories: {reply.directories}; mounts: {reply.mounts}, "
        f"unlinked files held open: {reply.open_orphans}; cluster {reply.cluster_id}"
    )
    if reply.connected_mounts:
        lines.append(_mounts_table(reply.connected_mounts, now))
    if reply.trash_hours:
        lines.append(
            f"trash: {reply.trash_files} deleted files, {size_text(reply.trash_bytes)}, kept {reply.trash_hours:g} h"
            " (fusedfs client MASTER trash list)"
        )
    else:
        lines.append("trash: off (deleted files are freed at once)")
    if reply.metadata_copy_taken_ns:
        age = max(0.0, now - reply.metadata_copy_taken_ns / 1e9)
        lines.append(
            f"metadata copy: taken {age:.0f} s ago, on {reply.metadata_copy_keepers} keepers;"
            f" changes since: {reply.metadata_changes_unsent or 'none'} not on them yet"
        )
    else:
        lines.append("metadata copy: none yet (see fusedfs master --metadata-copies-every)")
    room, reserve = reply.metadata_room_bytes, reply.metadata_reserve_bytes
    lines.append(
        f"metadata disk: room for {size_text(room)} more (reserve {size_text(reserve)})"
        + (": LOW, only deletions are taken until there is room" if room < reserve else "")
    )
    return "\n".join(lines)


def _mounts_table(mounts: Iterable[mp.MountStatus], now: float) -> str:
    """A line per mount: where, which process, since when, what it has open, what it holds that
    is not on the cluster yet, how many of its closes and fsyncs failed, when it was last heard."""
    lines = ["{:>8} {:<8} {:>6} {:>6} {:>10} {:>6} {:>6}  {}".format(
        "PID", "VERSION", "UP", "OPEN", "UNSAVED", "FAILED", "SEEN", "MOUNT"
    )]  # fmt: skip
    for m in mounts:
        i = m.info
        where = f"{i.host}:{i.mount_point}" if i.host else "(a mount that does not say)"
        up = age_text(now - i.mounted_ns / 1e9) if i.mounted_ns else "?"
        lines.append(
            f"{i.pid or '?':>8} {i.version[:8] or '?':<8} {up:>6} {m.open_files:>6} "
            f"{size_text(i.writeback_bytes):>10} {i.failed_saves:>6} {m.silent_seconds:>5.1f}s  {where}"
        )
    return "\n".join(lines)
