"""A ``ClusterContext`` for command-line tools (``cdn repair``, ``cdn fsck``): everything
comes from the metadata store (nodes register their address there), one health probe round
decides which nodes are up. That round records the nodes' disks as an origin's rounds do
(``origin/disk_probe.py``), so fsck counts a replaced disk's fragments as missing even when
the node sends no heartbeat and no origin has probed it since."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import asyncpg

from origin.config import NodeSpec
from origin.disk_probe import DiskProbe
from origin.metadata import db
from origin.metadata.fragments import list_nodes
from origin.nodeclient import NodeClient
from origin.nodehealth import NodeHealth
from origin.workers.base import ClusterContext


class ToolError(Exception):
    """The tool cannot do its work (e.g. the metadata store is unreachable); printed as one
    line, never as a traceback."""


@contextlib.asynccontextmanager
async def cluster_context(database_url: str, *, node_timeout: float = 10.0,
                          lost_after: float = 3600.0) -> AsyncIterator[ClusterContext]:
    try:
        pool = await db.create_pool(database_url, max_size=8)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ValueError) as exc:
        raise ToolError(f"cannot reach the metadata store at {database_url!r}: {exc}") from None
    try:
        await db.migrate(pool)
        rows = await list_nodes(pool)
        specs = {r.node_id: NodeSpec(r.node_id, r.zone, r.address) for r in rows}
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            nodes = NodeClient(session, specs, node_timeout)
            health = NodeHealth(specs)
            await DiskProbe().record(pool, await health.probe_all(nodes.probe), rows)
            try:
                yield ClusterContext(pool, nodes, health, lost_after)
            finally:
                await nodes.close()
    finally:
        await pool.close()
