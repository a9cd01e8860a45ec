"""The durable purge log in PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg

from control.purge_request import PurgeRequest


def event_from_row(row: asyncpg.Record) -> dict[str, Any]:
    """The wire form shared by the Redis message and the catch-up endpoint."""
    return {
        "seq": row["seq"],
        "tags": list(row["tags"]),
        "urls": list(row["urls"]),
        "prefixes": list(row["prefixes"]),
        "soft": row["soft"],
        "created_at": row["created_at"].timestamp(),
    }


async def append(pool: asyncpg.Pool, request: PurgeRequest) -> dict[str, Any]:
    """Write the purge; once this returns (the transaction committed) it is durable."""
    row = await pool.fetchrow(
        """INSERT INTO purge_log (tags, urls, prefixes, soft, requested_by)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING seq, tags, urls, prefixes, soft, created_at""",
        list(request.tags), list(request.urls), list(request.prefixes), request.soft,
        request.requested_by,
    )
    return event_from_row(row)


async def read_after(pool: asyncpg.Pool, after: int, limit: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT seq, tags, urls, prefixes, soft, created_at FROM purge_log
           WHERE seq > $1 ORDER BY seq LIMIT $2""",
        after, limit,
    )
    return [event_from_row(r) for r in rows]


async def last_seq(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT COALESCE(max(seq), 0) FROM purge_log"))
