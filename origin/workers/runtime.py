"""How the origin process hosts the durability machinery: reports of bad fragments from the
read path, the node directory kept in sync with registrations, and the background workers."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from origin.config import NodeSpec, OriginConfig
from origin.ec_reader import BadFragmentReporter
from origin.errors import OriginError
from origin.metadata.fragments import (
    FragmentRef,
    NodeRow,
    enqueue_repairs,
    list_nodes,
    lost_node_ids,
)
from origin.nodeclient import NodeClient
from origin.nodehealth import NodeHealth
from origin.workers.base import Closeable, ClusterContext
from origin.workers.compactor import Compactor
from origin.workers.gc import GarbageCollector
from origin.workers.reconstructor import Reconstructor
from origin.workers.scrubber import Scrubber

log = logging.getLogger("cdn.origin.workers")

MAX_PENDING_REPORTS = 256


def bad_fragment_reporter(pool: asyncpg.Pool) -> BadFragmentReporter:
    """Queue fragments a reader found corrupt or missing, without delaying the read (a
    bounded number of reports in flight; beyond that they are dropped — the scrubber finds
    them again)."""
    pending: set[asyncio.Task[int]] = set()

    def report(object_id: str, segment: int, index: int, kind: str) -> None:
        if len(pending) >= MAX_PENDING_REPORTS:
            return
        task = asyncio.ensure_future(
            enqueue_repairs(pool, [FragmentRef(object_id, segment, index)], kind))
        pending.add(task)

        def done(t: asyncio.Task[int]) -> None:
            pending.discard(t)
            if not t.cancelled() and isinstance(t.exception(), OriginError):
                log.warning("could not queue repair of %s/%d/%d: %s", object_id, segment,
                            index, t.exception())

        task.add_done_callback(done)

    return report


async def refresh_node_directory(pool: asyncpg.Pool, nodes: NodeClient, health: NodeHealth,
                                 zones: dict[str, str], lost_after: float) -> list[NodeRow]:
    """Nodes that registered themselves become eligible at once; lost ones are never placed
    on again (their fragments are the reconstructor's business). Returns the rows read (the
    probe round compares their disks with what the nodes answered: ``disk_probe``)."""
    rows = await list_nodes(pool)
    lost = set(lost_node_ids(rows, lost_after))
    for row in rows:
        if row.node_id in lost:
            if row.node_id in zones:
                del zones[row.node_id]
                health.remove(row.node_id)
            continue
        nodes.add_node(NodeSpec(row.node_id, row.zone, row.address))
        if zones.get(row.node_id) != row.zone:
            zones[row.node_id] = row.zone
            health.add(row.node_id)
    return rows


class BackgroundWorkers:
    """The four workers as tasks of the origin process (one ``Closeable`` each)."""

    def __init__(self, config: OriginConfig, ctx: ClusterContext) -> None:
        self.reconstructor = Reconstructor(ctx, bytes_per_second=config.repair_rate)
        self.scrubber = Scrubber(ctx, bytes_per_second=config.scrub_rate)
        self.gc = GarbageCollector(ctx, grace=config.gc_grace,
                                   dead_ratio=config.compact_dead_ratio)
        self.compactor = Compactor(ctx, grace=config.gc_grace,
                                   dead_ratio=config.compact_dead_ratio,
                                   drain=config.compact_drain)
        interval = config.worker_interval
        # Repair reacts fastest; scrubbing and reclaiming space can wait.
        self._loops = [Closeable(self.reconstructor, interval),
                       Closeable(self.scrubber, interval * 5),
                       Closeable(self.gc, interval * 2),
                       Closeable(self.compactor, interval * 2)]

    async def close(self) -> None:
        for loop in self._loops:
            await loop.close()
