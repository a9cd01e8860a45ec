"""The garbage collector: reclaim records no metadata references, once they are old enough.

What is garbage. Records of overwritten and deleted objects, fragments of PUTs that failed
or whose origin crashed before the metadata commit, copies left behind by repair and
compaction. A record is garbage when no row of any reference table points at its
``(node, volume, offset)`` (``origin.metadata.fragments``: ``fragments``, multipart parts,
object versions — any table with those three columns) AND its volume is older than
``grace`` seconds (default 72 h; the volume's age is the time since its last append, measured
on the node's own clock, so no record in it is younger).

Why the grace period makes this safe with uploads in flight. A PUT writes fragments first
and inserts the rows that reference them last; in between, its fragments are unreferenced and
indistinguishable from garbage. Two rules close that window:

1. ``ECWriter.write`` refuses to finish a PUT that took longer than ``max_write_seconds``, and
   the metadata commit follows immediately; so a fragment can become referenced only within
   ``max_write_seconds`` (+ the commit's own few seconds) of being written.
2. Configuration requires ``grace >= 2 × max_write_seconds``.

So when the collector sees a record unreferenced in a volume older than ``grace``, the PUT that
wrote it started more than ``grace`` ago, is past its deadline, and can never commit: the
record is garbage for good. The second half of ``grace`` is margin for the commit itself, for
clock drift between the node (which measures age) and nothing else — ages are never compared
across machines — and for a reference check that raced a commit: the check is repeated right
before a volume is deleted. Repair and compaction write their copies into the *active* volume
(young by definition) and reference them within one short transaction (the reconstructor
applies a chunk of ``2 × concurrency`` segments at a time).

Multipart uploads and versions. Every uploaded part is an ``objects`` row (kind 'part') whose
``fragments`` rows are committed when the part's PUT finishes (same deadline as any PUT), so
the parts of an upload still in progress — for days, until it is completed, aborted or
expired — are referenced all along; completion writes no data (``object_parts`` names the part
rows). A re-uploaded part number deletes the previous part row: its records become garbage.
Noncurrent versions keep their rows until deleted or expired; delete markers own no data;
CopyObject / UploadPartCopy / storage-class changes write new blobs under the PUT deadline.
``test_workers.py`` checks that GC and compaction leave an in-progress upload's parts alone.

What the collector does. For every volume on every usable node older than ``grace`` it walks
the record headers, asks the metadata which offsets are referenced, and lets ``plan_volume``
decide: delete a volume with no live record (after re-checking that no row references it), seal
an active volume holding old garbage (so it can be reclaimed next pass), or record the volume's
dead bytes for the compactor, which rewrites volumes past its dead-space threshold.

Never beside a compactor. A volume's work, from the walk to the delete, runs under its
``volume_lock``, the compactor's lock (``origin.metadata.volume_locks``). A volume a
compactor holds is skipped and counted in ``volumes_busy``: once that compactor has repointed
every row to its copies, the old volume holds nothing live, and a collector walking it then
would delete it during the compactor's drain, under readers still holding the old map (and
the compactor's copy source would vanish if it were still copying). Likewise a compactor
skips a volume this collector holds. A later pass sees what the holder left. The lock is
confirmed right before the delete (``VolumeLock.confirm``): a lock lost meanwhile (its
session ended) gives the volume up, counted in ``volumes_lock_lost``, with nothing deleted.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from origin.metadata import fragments as fmeta
from origin.metadata.volume_locks import VolumeLock
from origin.nodeclient import NodeRequestError
from origin.workers.base import ClusterContext, RateLimiter, under_volume_lock
from origin.workers.planning import (
    RecordFact,
    VolumeAction,
    VolumeFacts,
    VolumePlan,
    may_hold_garbage,
    plan_volume,
)

log = logging.getLogger("cdn.origin.gc")

DEFAULT_GRACE = 72 * 3600.0


@dataclass
class GCStats:
    volumes_checked: int = 0
    volumes_deleted: int = 0
    volumes_busy: int = 0  # skipped: a compactor or another GC holds the volume's lock
    volumes_lock_lost: int = 0  # given up (nothing deleted): the lock ended mid-work
    volumes_sealed: int = 0
    volumes_to_compact: int = 0
    dead_bytes_found: int = 0
    bytes_freed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


async def volume_records(ctx: ClusterContext, node_id: str, volume: int,
                         limiter: RateLimiter | None = None,
                         page_bytes: int = 64 << 20) -> list[RecordFact] | None:
    """Every record header of one volume (no payload verification); ``None`` when the node
    no longer has it (``NodeClient.scan_volume``)."""
    found: list[RecordFact] = []
    offset: int | None = 0
    while offset is not None:
        if limiter is not None:
            await limiter.acquire(4096)
        page = await ctx.nodes.scan_volume(node_id, volume, offset, page_bytes, verify=False)
        if page is None:
            return None
        found.extend(RecordFact(int(r["offset"]), r["fragment_id"], int(r["length"]),
                                r["error"]) for r in page["records"])
        offset = page["next_offset"]
    return found


async def plan_node_volume(ctx: ClusterContext, facts: VolumeFacts, *, grace: float,
                           dead_ratio: float) -> VolumePlan:
    """``plan_volume`` for one listed volume; ``GONE`` when the node no longer has it (another
    worker deleted it since it was listed): nothing is left in it to collect, and the node's
    other volumes still need their pass. Callers hold the volume's ``volume_lock``."""
    if not may_hold_garbage(facts, grace=grace):
        return VolumePlan(VolumeAction.TOO_YOUNG)
    records = await volume_records(ctx, facts.node_id, facts.volume)
    if records is None:
        return VolumePlan(VolumeAction.GONE)
    referenced = await fmeta.referenced_offsets(ctx.pool, facts.node_id, facts.volume)
    return plan_volume(facts, records, referenced, grace=grace, dead_ratio=dead_ratio)


def volume_facts(node_id: str, raw: dict) -> VolumeFacts:
    return VolumeFacts(node_id, int(raw["volume"]), int(raw["size"]), bool(raw["active"]),
                       float(raw["age"]))


async def delete_if_unreferenced(ctx: ClusterContext, lock: VolumeLock) -> int:
    """Delete the locked volume only if no row references it at this moment and its lock is
    still held (``VolumeLockLost`` otherwise); bytes freed (0 if not)."""
    node_id, volume = lock.node_id, lock.volume
    if await fmeta.count_references(ctx.pool, node_id, volume):
        return 0
    await lock.confirm()
    try:
        freed = await ctx.nodes.delete_volume(node_id, volume)
    except NodeRequestError as exc:
        if exc.kind == "not-found":
            freed = 0
        else:
            raise
    await fmeta.forget_volume(ctx.pool, node_id, volume)
    return freed


class GarbageCollector:
    name = "gc"

    def __init__(self, ctx: ClusterContext, *, grace: float = DEFAULT_GRACE,
                 dead_ratio: float = 0.5) -> None:
        self.ctx = ctx
        self.grace = grace
        self.dead_ratio = dead_ratio

    async def run_once(self) -> GCStats:
        stats = GCStats()
        started = time.monotonic()
        for node_id in sorted(await self.ctx.usable_nodes()):
            try:
                await self._collect_node(node_id, stats)
            except NodeRequestError as exc:
                stats.errors.append(str(exc))
        stats.seconds = time.monotonic() - started
        return stats

    async def _collect_node(self, node_id: str, stats: GCStats) -> None:
        for raw in await self.ctx.nodes.list_volumes(node_id):
            await self.collect_volume(volume_facts(node_id, raw), stats)

    async def collect_volume(self, facts: VolumeFacts, stats: GCStats) -> None:
        if not may_hold_garbage(facts, grace=self.grace):
            return  # no lock, no walk
        await under_volume_lock(self.ctx.pool, facts.node_id, facts.volume, stats,
                                lambda lock: self._collect_held(facts, stats, lock), who="gc")

    async def _collect_held(self, facts: VolumeFacts, stats: GCStats, lock: VolumeLock) -> None:
        node_id = facts.node_id
        plan = await plan_node_volume(self.ctx, facts, grace=self.grace,
                                      dead_ratio=self.dead_ratio)
        if plan.action in (VolumeAction.TOO_YOUNG, VolumeAction.GONE):
            return
        stats.volumes_checked += 1
        stats.dead_bytes_found += plan.dead_bytes
        await fmeta.record_volume_check(self.ctx.pool, node_id, facts.volume, facts.size,
                                        plan.dead_bytes)
        if plan.action is VolumeAction.DELETE:
            freed = await delete_if_unreferenced(self.ctx, lock)
            if freed:
                stats.volumes_deleted += 1
                stats.bytes_freed += freed
        elif plan.action is VolumeAction.SEAL:
            await self.ctx.nodes.seal_volume(node_id)
            stats.volumes_sealed += 1
        elif plan.action is VolumeAction.COMPACT:
            stats.volumes_to_compact += 1
