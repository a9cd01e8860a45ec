"""The reconstructor: rebuild missing or corrupt fragments onto healthy nodes.

Work is derived from the metadata each pass, never from memory, so it is resumable by
construction (a restarted reconstructor, or ``cdn repair`` run after a crash, picks up exactly
what is still wrong):

* segments queued in ``repair_queue`` (a reader or the scrubber found a bad fragment),
* segments of objects with ``missing_fragments > 0`` (a PUT met its quorum without them),
* segments with a fragment on a lost node (marked lost, or silent for ``lost_after``).

For each segment every recorded fragment is read back and verified (a queued report may be
stale: compaction may have moved it, a node may be back), bad ones are decided by
``plan_segment_repair``, the missing indexes are recomputed from ``k`` good ones, stored on
nodes chosen by ``choose_repair_targets`` (healthy, not already holding this segment, zones
evened out), and swapped into the map by ``apply_repair`` in one transaction that changes a
row only if it still points where it did when the pass read it. Bytes read and written go
through one ``RateLimiter``; ``concurrency`` segments are rebuilt at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from origin.erasure import ErasureError, cached_scheme
from origin.layout import FragmentLocation, fragment_id
from origin.metadata import fragments as fmeta
from origin.nodeclient import NodeRequestError
from origin.placement import Candidate, choose_repair_targets
from origin.workers.base import ClusterContext, RateLimiter
from origin.workers.planning import plan_segment_repair

log = logging.getLogger("cdn.origin.reconstructor")


@dataclass
class ReconstructorStats:
    segments_examined: int = 0
    segments_repaired: int = 0
    segments_unrepairable: int = 0
    segments_deferred: int = 0     # waiting for a down node, or no target node available
    fragments_rebuilt: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def throughput_mb_s(self) -> float:
        return self.bytes_written / 1e6 / self.seconds if self.seconds else 0.0


class Reconstructor:
    name = "reconstructor"

    def __init__(self, ctx: ClusterContext, *, bytes_per_second: float = 50e6,
                 concurrency: int = 4, batch: int = 500) -> None:
        self.ctx = ctx
        self.limiter = RateLimiter(bytes_per_second)
        self.concurrency = concurrency
        self.batch = batch
        self.progress = ReconstructorStats()  # of the pass in progress (exposed to callers)

    async def run_once(self, *, max_batches: int = 1000) -> ReconstructorStats:
        """Repair until nothing is left to do (or only deferred work remains)."""
        stats = self.progress = ReconstructorStats()
        started = time.monotonic()
        seen: set[tuple[str, int]] = set()
        for _ in range(max_batches):
            lost = await self.ctx.lost_nodes()
            todo = [s for s in await fmeta.segments_to_repair(self.ctx.pool, lost, self.batch)
                    if s not in seen]
            if not todo:
                break
            seen.update(todo)
            gate = asyncio.Semaphore(self.concurrency)
            usable = await self.ctx.usable_nodes()  # once per batch, not per segment

            await asyncio.gather(*(self._bounded(gate, item, set(lost), usable, stats)
                                   for item in todo))
        stats.seconds = time.monotonic() - started
        return stats

    async def _bounded(self, gate: asyncio.Semaphore, item: tuple[str, int], lost: set[str],
                       usable: dict[str, str], stats: ReconstructorStats) -> None:
        async with gate:
            await self._repair_segment(item[0], item[1], lost, usable, stats)

    async def _repair_segment(self, object_id: str, segment: int, lost: set[str],
                              usable: dict[str, str], stats: ReconstructorStats) -> None:
        stats.segments_examined += 1
        state = await fmeta.load_segment(self.ctx.pool, object_id, segment)
        if state is None:
            await fmeta.drop_queued(self.ctx.pool, object_id, segment)
            return
        scheme = cached_scheme(state.ndata, state.nparity, state.segment_size, state.ec_type)
        length = scheme.segment_length(segment, state.size)
        good: dict[int, bytes] = {}
        bad: set[int] = set()
        unreachable: set[int] = set()

        async def fetch(index: int, loc: FragmentLocation) -> None:
            if loc.node_id in lost:
                bad.add(index)
                return
            await self.limiter.acquire(loc.length)
            try:
                good[index] = await self.ctx.nodes.get_fragment(
                    loc, fragment_id(object_id, segment, index))
                stats.bytes_read += loc.length
            except NodeRequestError as exc:
                (bad if exc.kind in ("corrupt", "not-found") else unreachable).add(index)

        await asyncio.gather(*(fetch(i, loc) for i, loc in state.locations.items()))
        plan = plan_segment_repair(scheme.fragments_per_segment, state.locations, bad,
                                   unreachable)
        if not plan.wanted:
            await fmeta.drop_queued(self.ctx.pool, object_id, segment)
            return
        if len(plan.good) < scheme.ndata:
            if unreachable:
                stats.segments_deferred += 1  # a down node may come back with what we need
            else:
                stats.segments_unrepairable += 1
                stats.errors.append(f"{object_id}/{segment}: only {len(plan.good)} good")
            await fmeta.note_failed_attempt(self.ctx.pool, object_id, segment)
            return
        try:
            rebuilt = scheme.rebuild({i: good[i] for i in sorted(plan.good)[: scheme.ndata]},
                                     list(plan.wanted), length)
        except ErasureError as exc:
            stats.segments_unrepairable += 1
            stats.errors.append(f"{object_id}/{segment}: {exc}")
            return
        holders = {i: state.locations[i].node_id for i in plan.good}
        holders.update({i: state.locations[i].node_id for i in unreachable})
        targets = choose_repair_targets(f"{object_id}/{segment}", holders, plan.wanted,
                                        [Candidate(n, z) for n, z in usable.items()])
        replaced: dict[int, tuple[FragmentLocation | None, FragmentLocation]] = {}
        for index, node_id in targets.items():
            payload = rebuilt[index]
            await self.limiter.acquire(len(payload))
            try:
                new = await self.ctx.nodes.put_fragment(
                    node_id, fragment_id(object_id, segment, index), payload)
            except NodeRequestError as exc:
                stats.errors.append(f"{object_id}/{segment}#{index} -> {node_id}: {exc}")
                continue
            stats.bytes_written += len(payload)
            replaced[index] = (state.locations.get(index), new)
        if not replaced:
            stats.segments_deferred += 1
            return
        changed = await fmeta.apply_repair(
            self.ctx.pool, object_id, segment, replaced,
            (state.ec_type, state.ndata, state.nparity, state.segment_size))
        if changed > 0:
            stats.fragments_rebuilt += changed
            stats.segments_repaired += 1
        if len(replaced) < len(plan.wanted):
            stats.segments_deferred += 1
