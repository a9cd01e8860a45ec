"""Ending the session that holds a volume's lock (``origin.metadata.volume_locks``) from
another connection, as an operator, a failover or a cut connection would."""

from __future__ import annotations

import asyncpg


async def terminate_holder(pool: asyncpg.Pool, node_id: str, volume: int) -> int:
    """``pg_terminate_backend`` of the session holding the lock of ``volume`` on
    ``node_id``; the number of sessions ended."""
    return int(await pool.fetchval(
        """SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_locks
           WHERE locktype = 'advisory' AND granted AND objsubid = 2
             AND classid = hashtext($1)::oid AND objid = $2::oid""", node_id, volume))
