"""The scrubber: re-read every record on every node at a bounded rate and queue repairs.

Per node, per volume, the node walks its records in pages (``GET /volumes/{v}/records
?verify=1``: the payload CRC-32 of every record is checked on the node, so the scrub costs
disk reads, not payload bytes on the network), and the scrubber paces the pages to
``bytes_per_second``. The node answers every record's header (offset, fragment id, length,
error), with counts of what it walked (``walked``, ``walked_bytes``) and where to go on. A
record whose checksum fails, or an unreadable span, is looked up in the fragment map by
location and queued in ``repair_queue``; the reconstructor then rewrites it elsewhere, so a
flipped bit is healed before a reader has to route around it.

It also checks the other direction: every fragment row pointing at a node must point inside a
volume that node still has. Rows that point at a vanished volume (a wiped or replaced disk) are
queued too, once a second listing of the node's volumes, taken after the query, confirms them (a
PUT committed between the first listing and the query points past its sizes). (A node that
heartbeats has normally queued them already: a fresh disk numbers its volumes above its
predecessor's and the heartbeat that reports the new disk queues the old one's rows,
``metadata/node_disks.py``.) And since a node of a build before disk identities, given a fresh
disk, numbered its volumes from 1 again, a row of the old disk could point inside a new volume
of the same number and look present by size: so the walk asks for every record
header, not only the failed ones (the node's ``errors_only``; about 100 bytes of JSON per
record, against fragments of kilobytes or more), and after each page the rows pointing into
the part it walked are matched against them, record start and fragment id
(``planning.rows_without_their_record``); one with no record of its own is queued as
missing. Left alone, such a row hid a lost fragment from fsck (which trusts the rows) and kept
the volume it points into from ever being collected.

Where a node's walk stopped is saved in ``worker_progress`` so a restart resumes instead of
starting over.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import asyncpg

from origin.layout import fragment_id
from origin.metadata import fragments as fmeta
from origin.metadata.db import translate_db_errors
from origin.nodeclient import NodeRequestError
from origin.workers.base import ClusterContext, RateLimiter
from origin.workers.planning import rows_without_their_record

log = logging.getLogger("cdn.origin.scrubber")


@dataclass
class ScrubStats:
    nodes: int = 0
    volumes: int = 0
    records: int = 0
    bytes_verified: int = 0
    corrupt_records: int = 0
    missing_fragments: int = 0
    repairs_queued: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Scrubber:
    name = "scrubber"

    def __init__(self, ctx: ClusterContext, *, bytes_per_second: float = 20e6,
                 page_bytes: int = 4 << 20) -> None:
        self.ctx = ctx
        self.limiter = RateLimiter(bytes_per_second)
        self.page_bytes = page_bytes

    async def run_once(self, nodes: list[str] | None = None) -> ScrubStats:
        stats = ScrubStats()
        started = time.monotonic()
        targets = nodes if nodes is not None else sorted(await self.ctx.usable_nodes())
        for node_id in targets:
            try:
                await self.scrub_node(node_id, stats)
                stats.nodes += 1
            except NodeRequestError as exc:
                stats.errors.append(str(exc))
        stats.seconds = time.monotonic() - started
        return stats

    async def scrub_node(self, node_id: str, stats: ScrubStats) -> None:
        sizes = await self._volume_sizes(node_id)
        absent = await fmeta.fragments_absent_from(self.ctx.pool, node_id, sizes)
        if absent:
            # A PUT committed after the listing points past the sizes it gave. Every row the
            # query saw was durable on the node before the query ran (data before metadata),
            # so a listing taken now covers those rows: what it still misses is missing.
            now_absent = set(await fmeta.fragments_absent_from(
                self.ctx.pool, node_id, await self._volume_sizes(node_id)))
            absent = [ref for ref in absent if ref in now_absent]
        if absent:
            stats.missing_fragments += len(absent)
            stats.repairs_queued += await fmeta.enqueue_repairs(self.ctx.pool, absent,
                                                                "missing-on-node")
        position = await _load_position(self.ctx.pool, node_id)
        for volume in sorted(sizes):
            if position and volume < position[0]:
                continue
            offset = position[1] if position and volume == position[0] else 0
            position = None
            stats.volumes += 1
            listed_size = sizes[volume]
            while offset is not None:
                await self.limiter.acquire(self.page_bytes)
                page = await self.ctx.nodes.scan_volume(node_id, volume, offset,
                                                        self.page_bytes, verify=True)
                if page is None:
                    break  # deleted since the listing (GC, compactor): nothing to verify
                records = page["records"]
                # the rows of the part this page walked, checked page by page so a scrub
                # holds one page's headers and rows, not a whole volume's (about a million
                # records in a 1 GiB volume of 4 KiB objects)
                end = page["next_offset"]
                await self._check_rows(node_id, volume, records,
                                       range(offset, min(end or listed_size, listed_size)),
                                       stats)
                if "walked" in page:
                    stats.records += int(page["walked"])
                    stats.bytes_verified += int(page["walked_bytes"])
                else:  # a node of an older build: every record listed, no counts
                    stats.records += len(records)
                    stats.bytes_verified += sum(int(rec["length"]) for rec in records)
                for rec in records:
                    if rec["error"]:
                        await self._report(node_id, volume, rec, stats)
                offset = end
                await _save_position(self.ctx.pool, node_id, volume, offset)
        await _save_position(self.ctx.pool, node_id, 0, 0)  # a full pass: start over next time

    async def _check_rows(self, node_id: str, volume: int, records: list[dict],
                          walked: range, stats: ScrubStats) -> None:
        """Queue the fragments whose rows point into ``walked`` (the part of the volume that
        ``records`` cover, within its listed size) at no record of theirs
        (``rows_without_their_record``: a wiped disk's reused volume numbers)."""
        if not walked:
            return
        headers: dict[int, str] = {}
        unreadable: list[range] = []
        for rec in records:
            start = int(rec["offset"])
            if rec["error"] == "corrupt-record":
                unreadable.append(range(start, start + int(rec["length"])))
            else:
                headers[start] = rec["fragment_id"]
        placed = await fmeta.placed_fragments(self.ctx.pool, node_id, volume,
                                              walked.start, walked.stop)
        rows = [(offset, fragment_id(ref.object_id, ref.segment, ref.frag_index))
                for offset, ref in placed]
        by_id = {fid: ref for (_offset, fid), (_o, ref) in zip(rows, placed, strict=True)}
        lost = rows_without_their_record(rows, headers, unreadable, walked)
        if lost:
            log.warning("scrub: %s volume %d: %d fragment rows point at no record of theirs",
                        node_id, volume, len(lost))
            stats.missing_fragments += len(lost)
            stats.repairs_queued += await fmeta.enqueue_repairs(
                self.ctx.pool, [by_id[fid] for fid in lost], "missing-on-node")

    async def _volume_sizes(self, node_id: str) -> dict[int, int]:
        return {int(v["volume"]): int(v["size"])
                for v in await self.ctx.nodes.list_volumes(node_id)}

    async def _report(self, node_id: str, volume: int, rec: dict, stats: ScrubStats) -> None:
        stats.corrupt_records += 1
        start = int(rec["offset"])
        stop = start + (int(rec["length"]) if rec["error"] == "corrupt-record" else 1)
        refs = await fmeta.fragments_in_range(self.ctx.pool, node_id, volume, start, stop)
        log.warning("scrub: %s volume %d offset %d: %s (%d fragment rows)", node_id, volume,
                    start, rec["error"], len(refs))
        stats.repairs_queued += await fmeta.enqueue_repairs(self.ctx.pool, refs, rec["error"])


@translate_db_errors
async def _load_position(pool: asyncpg.Pool, node_id: str) -> tuple[int, int] | None:
    raw = await pool.fetchval(
        "SELECT position FROM worker_progress WHERE worker = 'scrubber' AND scope = $1",
        node_id)
    if raw is None:
        return None
    data = raw if isinstance(raw, dict) else json.loads(raw)
    return int(data["volume"]), int(data["offset"])


@translate_db_errors
async def _save_position(pool: asyncpg.Pool, node_id: str, volume: int,
                         offset: int | None) -> None:
    if offset is None:
        return
    await pool.execute(
        """INSERT INTO worker_progress (worker, scope, position) VALUES ('scrubber', $1, $2)
           ON CONFLICT (worker, scope) DO UPDATE SET position = EXCLUDED.position,
                                                     updated = now()""",
        node_id, {"volume": volume, "offset": offset})
