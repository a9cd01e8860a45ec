"""Row-level steps shared by every transaction that replaces or removes object versions.

Run inside a caller's transaction, after it took the key's advisory lock (``lock_key``). They
never touch bytes: removing a row lets its fragments' rows cascade away, and the bytes become
garbage for the collector, exactly as an overwrite always did.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

DELETE_MARKER_SCHEME = ("", 0, 0, 0)  # (ec_type, ndata, nparity, segment_size): no data


async def lock_key(conn: asyncpg.Connection, bucket: str, key: str) -> None:
    """Serialise writers of one key (unrelated keys only collide on a 64-bit hash clash)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                       f"{bucket}/{key}")


async def purge_rows(conn: asyncpg.Connection, ids: Sequence[str]) -> None:
    """Delete object rows and, for completed multipart objects, the part rows they were
    assembled from (fragments cascade with each)."""
    if not ids:
        return
    parts = await conn.fetch(
        "SELECT part_object_id FROM object_parts WHERE object_id = ANY($1::uuid[])", list(ids))
    await conn.execute("DELETE FROM objects WHERE id = ANY($1::uuid[])", list(ids))
    if parts:
        await conn.execute("DELETE FROM objects WHERE id = ANY($1::uuid[])",
                           [r["part_object_id"] for r in parts])


async def make_room(conn: asyncpg.Connection, bucket: str, key: str, version_id: str) -> None:
    """Before a new latest version of ``bucket/key`` is inserted: a 'null' version (what an
    unversioned or suspended bucket writes) replaces the previous 'null' version; whatever
    was latest becomes noncurrent."""
    if version_id == "null":
        old = await conn.fetch(
            """SELECT id FROM objects WHERE bucket = $1 AND key = $2 AND version_id = 'null'
               AND kind = 'object'""", bucket, key)
        await purge_rows(conn, [str(r["id"]) for r in old])
    await conn.execute(
        """UPDATE objects SET is_latest = false, noncurrent_since = now()
           WHERE bucket = $1 AND key = $2 AND is_latest""", bucket, key)


async def insert_delete_marker(
    conn: asyncpg.Connection, bucket: str, key: str, version_id: str
) -> None:
    """A delete marker becomes the latest version (call ``make_room`` first)."""
    ec_type, ndata, nparity, segment = DELETE_MARKER_SCHEME
    await conn.execute(
        """INSERT INTO objects (id, bucket, key, size, etag, content_type, ec_type, ec_ndata,
               ec_nparity, segment_size, version_id, delete_marker)
           VALUES ($1, $2, $3, 0, '', '', $4, $5, $6, $7, $8, true)""",
        uuid.uuid4(), bucket, key, ec_type, ndata, nparity, segment, version_id)


async def promote_newest(conn: asyncpg.Connection, bucket: str, key: str) -> None:
    """After the latest version was removed: the newest remaining version becomes latest."""
    await conn.execute(
        """UPDATE objects SET is_latest = true, noncurrent_since = NULL WHERE id = (
               SELECT id FROM objects WHERE bucket = $1 AND key = $2 AND kind = 'object'
               ORDER BY seq DESC LIMIT 1)
           AND NOT EXISTS (SELECT 1 FROM objects WHERE bucket = $1 AND key = $2
                           AND is_latest)""", bucket, key)
