"""The reconstructor: rebuild missing or corrupt fragments onto healthy nodes.

Work is derived from the metadata each pass, never from memory, so it is resumable by
construction (a restarted reconstructor, or ``cdn repair`` run after a crash, picks up exactly
what is still wrong):

* segments queued in ``repair_queue`` (a reader or the scrubber found a bad fragment),
* segments of objects with ``missing_fragments > 0`` (a PUT met its quorum without them),
* segments with a fragment on a lost node (marked lost, or silent for ``lost_after``).

Work is grouped by object: one query loads the fragment rows and queued reports of all the
object's segments in the batch, and one transaction (``apply_repairs``) per chunk of
``2 × concurrency`` segments swaps in their rebuilt fragments, changing a row only if it
still points where the pass read it.

Per segment only what is needed is read (``plan_repair_reads``): the fragments reported bad
are read to confirm the report (a report may be stale), then ``k`` good fragments, data
first, falling back to the next candidate when one is missing, corrupt or unreachable — as
the read path does — instead of every surviving fragment. The missing indexes are recomputed
from those ``k``, stored in parallel on nodes chosen by ``choose_repair_targets`` (healthy,
not already holding this segment, zones evened out). Fragments not read are not re-verified
here; that is the scrubber's job.

Concurrency: ``concurrency`` objects at a time, and at most ``2 × concurrency`` segments in
flight over all of them (bounded memory: about ``k`` fragments + the rebuilt ones per
segment). Every byte read and written goes through one ``RateLimiter``. ``progress`` is the
running pass's stats (``cdn repair`` prints it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from origin.cpu import run_cpu
from origin.erasure import ECScheme, ErasureError, cached_scheme
from origin.layout import fragment_id
from origin.metadata import fragments as fmeta
from origin.nodeclient import NodeRequestError
from origin.placement import Candidate, choose_repair_targets
from origin.workers.base import ClusterContext, RateLimiter
from origin.workers.planning import plan_repair_reads, plan_segment_repair

log = logging.getLogger("cdn.origin.reconstructor")


@dataclass
class ReconstructorStats:
    objects_examined: int = 0
    objects_repaired: int = 0
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
        """Rebuilt bytes written per second."""
        return self.bytes_written / 1e6 / self.seconds if self.seconds else 0.0


@dataclass
class _SegmentOutcome:
    replaced: fmeta.Replacements = field(default_factory=dict)
    done: bool = False       # nothing (more) to do: its queue entries may go
    failed: bool = False     # deferred or unrepairable: count an attempt


class Reconstructor:
    name = "reconstructor"

    def __init__(self, ctx: ClusterContext, *, bytes_per_second: float = 50e6,
                 concurrency: int = 4, batch: int = 500) -> None:
        self.ctx = ctx
        self.limiter = RateLimiter(bytes_per_second)
        self.concurrency = concurrency
        self.batch = batch
        self.progress = ReconstructorStats()  # of the pass in progress (exposed to callers)
        self._started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the running (or last) pass started."""
        return time.monotonic() - self._started

    async def run_once(self, *, max_batches: int = 1000) -> ReconstructorStats:
        """Repair until nothing is left to do (or only deferred work remains)."""
        stats = self.progress = ReconstructorStats()
        self._started = started = time.monotonic()
        seen: set[tuple[str, int]] = set()
        objects = asyncio.Semaphore(self.concurrency)
        segments = asyncio.Semaphore(2 * self.concurrency)
        for _ in range(max_batches):
            lost = await self.ctx.lost_nodes()
            todo = [s for s in await fmeta.segments_to_repair(self.ctx.pool, lost, self.batch)
                    if s not in seen]
            if not todo:
                break
            seen.update(todo)
            by_object: dict[str, list[int]] = defaultdict(list)
            for object_id, segment in todo:
                by_object[object_id].append(segment)
            usable = await self.ctx.usable_nodes()  # once per batch, not per segment
            down = {n for n in self.ctx.nodes.node_ids if not self.ctx.health.is_up(n)}
            await asyncio.gather(*(
                self._bounded(objects, o, sorted(segs), set(lost), down, usable, segments, stats)
                for o, segs in by_object.items()))
            stats.seconds = time.monotonic() - started
        stats.seconds = time.monotonic() - started
        return stats

    async def _bounded(self, gate: asyncio.Semaphore, object_id: str, segments: list[int],
                       lost: set[str], down: set[str], usable: dict[str, str],
                       segment_gate: asyncio.Semaphore, stats: ReconstructorStats) -> None:
        async with gate:
            await self._repair_object(object_id, segments, lost, down, usable, segment_gate,
                                      stats)

    async def _repair_object(self, object_id: str, segments: list[int], lost: set[str],
                             down: set[str], usable: dict[str, str],
                             gate: asyncio.Semaphore, stats: ReconstructorStats) -> None:
        stats.objects_examined += 1
        state = await fmeta.load_object_segments(self.ctx.pool, object_id, segments)
        if state is None:
            await fmeta.drop_queued(self.ctx.pool, object_id, segments)
            return
        scheme = cached_scheme(state.ndata, state.nparity, state.segment_size, state.ec_type)

        async def segment(seg: int) -> tuple[int, _SegmentOutcome]:
            async with gate:
                return seg, await self._repair_segment(state, scheme, seg, lost, down, usable,
                                                       stats)

        # Applied a chunk at a time: a stored copy is unreferenced (GC-able once its volume
        # ages past the grace period) only until its chunk's transaction, never for the
        # duration of a whole large object.
        step = 2 * self.concurrency
        repaired = False
        for first in range(0, len(segments), step):
            chunk = segments[first: first + step]
            outcomes = dict(await asyncio.gather(*(segment(s) for s in chunk)))
            await fmeta.drop_queued(self.ctx.pool, object_id,
                                    [s for s, o in outcomes.items() if o.done and not o.replaced])
            await fmeta.note_failed_attempt(self.ctx.pool, object_id,
                                            [s for s, o in outcomes.items() if o.failed])
            replaced = {s: o.replaced for s, o in outcomes.items() if o.replaced}
            if not replaced:
                continue
            changed = await fmeta.apply_repairs(self.ctx.pool, object_id, replaced,
                                                state.scheme)
            if changed < 0:
                return
            if changed > 0:
                stats.fragments_rebuilt += changed
                stats.segments_repaired += len(replaced)
                repaired = True
        if repaired:
            stats.objects_repaired += 1

    async def _read_good(self, state: fmeta.ObjectSegments, seg: int, lost: set[str],
                         down: set[str], stats: ReconstructorStats
                         ) -> tuple[dict[int, bytes], set[int], set[int]]:
        """``(good payloads, bad indexes, unreachable indexes)``: the reported fragments
        checked, then — if anything needs rebuilding — good ones read until ``k`` (data
        first)."""
        locations = state.locations[seg]
        plan = plan_repair_reads(state.ndata, {i: loc.node_id for i, loc in locations.items()},
                                 state.suspects.get(seg, ()), lost, down)
        good: dict[int, bytes] = {}
        bad: set[int] = set(plan.on_lost)
        unreachable: set[int] = set()

        async def fetch(index: int) -> None:
            loc = locations[index]
            await self.limiter.acquire(loc.length)
            try:
                good[index] = await self.ctx.nodes.get_fragment(
                    loc, fragment_id(state.object_id, seg, index))
                stats.bytes_read += loc.length
            except NodeRequestError as exc:
                (bad if exc.kind in ("corrupt", "not-found") else unreachable).add(index)

        await asyncio.gather(*(fetch(i) for i in plan.verify))
        if not plan_segment_repair(state.ndata + state.nparity, locations, bad,
                                   unreachable).wanted:
            return good, bad, unreachable  # a stale report: nothing to rebuild, read no more
        candidates = list(plan.order)
        while len(good) < state.ndata and candidates:
            wave = candidates[: state.ndata - len(good)]
            del candidates[: len(wave)]
            await asyncio.gather(*(fetch(i) for i in wave))
        return good, bad, unreachable

    async def _repair_segment(self, state: fmeta.ObjectSegments, scheme: ECScheme, seg: int,
                              lost: set[str], down: set[str], usable: dict[str, str],
                              stats: ReconstructorStats) -> _SegmentOutcome:
        stats.segments_examined += 1
        object_id = state.object_id
        locations = state.locations[seg]
        good, bad, unreachable = await self._read_good(state, seg, lost, down, stats)
        plan = plan_segment_repair(scheme.fragments_per_segment, locations, bad, unreachable)
        if not plan.wanted:
            return _SegmentOutcome(done=True)
        if len(good) < scheme.ndata:
            if unreachable:
                stats.segments_deferred += 1  # a down node may come back with what we need
            else:
                stats.segments_unrepairable += 1
                stats.errors.append(f"{object_id}/{seg}: only {len(good)} good")
            return _SegmentOutcome(failed=True)
        length = scheme.segment_length(seg, state.size)
        try:
            rebuilt = await run_cpu(length, scheme.rebuild, good, list(plan.wanted), length)
        except ErasureError as exc:
            stats.segments_unrepairable += 1
            stats.errors.append(f"{object_id}/{seg}: {exc}")
            return _SegmentOutcome(failed=True)
        holders = {i: locations[i].node_id for i in plan.good}
        holders.update({i: locations[i].node_id for i in unreachable})
        targets = choose_repair_targets(f"{object_id}/{seg}", holders, plan.wanted,
                                        [Candidate(n, z) for n, z in usable.items()])
        outcome = _SegmentOutcome()

        async def store(index: int, node_id: str) -> None:
            payload = rebuilt[index]
            await self.limiter.acquire(len(payload))
            try:
                new = await self.ctx.nodes.put_fragment(
                    node_id, fragment_id(object_id, seg, index), payload)
            except NodeRequestError as exc:
                stats.errors.append(f"{object_id}/{seg}#{index} -> {node_id}: {exc}")
                return
            stats.bytes_written += len(payload)
            outcome.replaced[index] = (locations.get(index), new)

        await asyncio.gather(*(store(i, n) for i, n in targets.items()))
        if len(outcome.replaced) < len(plan.wanted):
            stats.segments_deferred += 1
            outcome.failed = not outcome.replaced
        return outcome
