"""The compactor: rewrite volumes whose dead space passed a threshold.

For a sealed volume older than the GC grace period whose plan says ``COMPACT``, the live
records (referenced by some row) are copied by the node itself into its active volume
(``POST /volumes/{v}/relocate``: each record is read and checksum-verified, then appended with
group commit), every row pointing at an old location is repointed, one transaction per
``batch`` copied (``relocate_references``: conditional on the old location, all reference
tables), and only then, after ``drain`` seconds, is the old volume deleted — and only if no
row references it any more (re-checked right before the delete).

Reads concurrent with compaction stay correct: a reader that loaded the map before the
repointing reads the old record, which stays on disk for ``drain`` seconds; one that loaded it
after reads the copy. A reader that is slower still finds the old volume gone, which counts
as one missing fragment: it reads a parity fragment instead and reports it; the reconstructor
then sees the row already points at a good copy and drops the report. A record that fails
verification during the copy is not copied; its row keeps the old location and the volume is
kept until the reconstructor has moved that fragment.

One worker per volume at a time, across processes (every origin's compactor and GC, ``cdn
repair --gc/--compact``): the volume's work, from the walk to the delete, runs under its
``volume_lock`` (a PostgreSQL advisory lock that ends with the holder's transaction or
session, so a crashed worker blocks nobody). A compactor that finds the lock taken (another
compactor, or a GC walking or deleting the volume) skips the volume and counts it in
``volumes_busy``; a later pass sees what the holder left (the volume gone, or still worth
compacting). A GC likewise leaves alone a volume this compactor holds, so it cannot delete
it during the drain, while readers holding the old map still read it.

The lock is confirmed (``VolumeLock.confirm``: its session alive and holding it) before each
chunk's rows are repointed and before the delete after the drain. A lock lost meanwhile (its
session terminated, the server restarted, the connection cut) ends the volume's work, counted
in ``volumes_lock_lost``: no more rows move and nothing is deleted; the copies already made
and not referenced are garbage for the GC, and rows already repointed point at good copies.
A GC that took the lock since may be walking the volume; this compactor no longer touches it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from origin.metadata import fragments as fmeta
from origin.metadata.volume_locks import VolumeLock
from origin.nodeclient import NodeRequestError
from origin.workers.base import ClusterContext, RateLimiter, under_volume_lock
from origin.workers.gc import DEFAULT_GRACE, delete_if_unreferenced, plan_node_volume, volume_facts
from origin.workers.planning import VolumeAction, VolumeFacts, may_hold_garbage

log = logging.getLogger("cdn.origin.compactor")


@dataclass
class CompactionStats:
    volumes_compacted: int = 0
    volumes_busy: int = 0  # skipped: another compactor or a GC holds the volume's lock
    volumes_lock_lost: int = 0  # given up (no more rows moved, nothing deleted): lock ended
    records_moved: int = 0
    records_failed: int = 0
    bytes_moved: int = 0
    bytes_freed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Compactor:
    name = "compactor"

    def __init__(self, ctx: ClusterContext, *, grace: float = DEFAULT_GRACE,
                 dead_ratio: float = 0.5, drain: float = 10.0,
                 bytes_per_second: float = 50e6, batch: int = 256) -> None:
        self.ctx = ctx
        self.grace = grace
        self.dead_ratio = dead_ratio
        self.drain = drain
        self.limiter = RateLimiter(bytes_per_second)
        self.batch = batch

    async def run_once(self) -> CompactionStats:
        stats = CompactionStats()
        started = time.monotonic()
        for node_id in sorted(await self.ctx.usable_nodes()):
            try:
                for raw in await self.ctx.nodes.list_volumes(node_id):
                    await self.compact_volume(node_id, raw, stats)
            except NodeRequestError as exc:
                stats.errors.append(str(exc))
        stats.seconds = time.monotonic() - started
        return stats

    async def compact_volume(self, node_id: str, raw: dict, stats: CompactionStats) -> None:
        facts = volume_facts(node_id, raw)
        if not may_hold_garbage(facts, grace=self.grace):
            return  # no lock, no walk
        await under_volume_lock(self.ctx.pool, node_id, facts.volume, stats,
                                lambda lock: self._compact_held(facts, stats, lock),
                                who="compactor")

    async def _compact_held(self, facts: VolumeFacts, stats: CompactionStats,
                            lock: VolumeLock) -> None:
        node_id = facts.node_id
        plan = await plan_node_volume(self.ctx, facts, grace=self.grace,
                                      dead_ratio=self.dead_ratio)
        if plan.action is VolumeAction.DELETE:
            stats.bytes_freed += await delete_if_unreferenced(self.ctx, lock)
            return
        if plan.action is not VolumeAction.COMPACT:
            return
        failed = 0
        for start in range(0, len(plan.live), self.batch):
            chunk = plan.live[start: start + self.batch]
            await self.limiter.acquire(sum(r.size for r in chunk))
            answer = await self.ctx.nodes.relocate(node_id, facts.volume, [
                {"offset": r.offset, "length": r.length, "fragment_id": r.fragment_id}
                for r in chunk])
            moves = [(int(m["from"]), int(m["volume"]), int(m["offset"]))
                     for m in answer["moved"]]
            await lock.confirm()  # lost: these copies stay unreferenced (the GC takes them)
            await fmeta.relocate_references(self.ctx.pool, node_id, facts.volume, moves)
            stats.records_moved += len(moves)
            stats.bytes_moved += sum(int(m["length"]) for m in answer["moved"])
            failed += len(answer["failed"])
        stats.records_failed += failed
        if failed:
            stats.errors.append(f"{node_id} volume {facts.volume}: {failed} records unreadable,"
                                f" kept until repaired")
            return
        await asyncio.sleep(self.drain)  # readers holding the old map finish with the old copy
        freed = await delete_if_unreferenced(self.ctx, lock)
        if freed:
            stats.volumes_compacted += 1
            stats.bytes_freed += freed
