"""The storage nodes the origin knows and the volumes it has written to."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from origin.config import NodeSpec
from origin.metadata.db import translate_db_errors


@translate_db_errors
async def upsert_nodes(pool: asyncpg.Pool, nodes: Iterable[NodeSpec]) -> None:
    """Record the configured nodes (zone and address may change between restarts)."""
    specs = sorted(nodes, key=lambda n: n.node_id)
    await pool.execute(
        """INSERT INTO nodes (id, zone, address)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
           ON CONFLICT (id) DO UPDATE SET zone = EXCLUDED.zone, address = EXCLUDED.address""",
        [n.node_id for n in specs], [n.zone for n in specs], [n.url for n in specs])


@translate_db_errors
async def touch_nodes(pool: asyncpg.Pool, node_ids: list[str]) -> None:
    """Set ``last_seen`` of nodes that just answered a health probe."""
    if node_ids:
        await pool.execute("UPDATE nodes SET last_seen = now() WHERE id = ANY($1::text[])",
                           node_ids)
