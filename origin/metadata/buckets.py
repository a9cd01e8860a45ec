"""Buckets: create, look up, list, delete (only when empty)."""

from __future__ import annotations

from typing import Any

import asyncpg

from origin.errors import BucketAlreadyExists, BucketNotEmpty, NoSuchBucket
from origin.metadata.db import translate_db_errors
from origin.metadata.models import Bucket


def _bucket(row: asyncpg.Record) -> Bucket:
    return Bucket(row["name"], row["owner"], row["public_read"], row["created"],
                  row["versioning"], row["lifecycle"])


_COLUMNS = "name, owner, public_read, created, versioning, lifecycle"


@translate_db_errors
async def create_bucket(pool: asyncpg.Pool, name: str, owner: str, public_read: bool) -> bool:
    """Create ``name`` for ``owner``; ``False`` if ``owner`` already had it (S3 us-east-1
    answers 200 then and leaves it unchanged), ``BucketAlreadyExists`` if someone else does."""
    row = await pool.fetchrow(
        """INSERT INTO buckets (name, owner, public_read) VALUES ($1, $2, $3)
           ON CONFLICT (name) DO NOTHING RETURNING name""", name, owner, public_read)
    if row is not None:
        return True
    existing = await get_bucket(pool, name)
    if existing is None:  # deleted in between: try once more
        return await create_bucket(pool, name, owner, public_read)
    if existing.owner != owner:
        raise BucketAlreadyExists(resource=f"/{name}")
    return False


@translate_db_errors
async def get_bucket(pool: asyncpg.Pool, name: str) -> Bucket | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM buckets WHERE name = $1", name)
    return _bucket(row) if row else None


@translate_db_errors
async def list_buckets(pool: asyncpg.Pool, owner: str | None) -> list[Bucket]:
    """Buckets of ``owner`` (all buckets when ``owner`` is ``None``), by name."""
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM buckets
           WHERE $1::text IS NULL OR owner = $1 ORDER BY name""", owner)
    return [_bucket(r) for r in rows]


@translate_db_errors
async def delete_bucket(pool: asyncpg.Pool, name: str) -> None:
    """Delete an empty bucket; a concurrent PUT that commits first makes this fail with
    ``BucketNotEmpty`` through the foreign key, never leaves an orphaned object."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            # Records of completed uploads only remember a result; they do not hold a bucket.
            await conn.execute("""DELETE FROM multipart_uploads
                                  WHERE bucket = $1 AND completed IS NOT NULL""", name)
            deleted = await conn.fetchval(
                """DELETE FROM buckets WHERE name = $1
                   AND NOT EXISTS (SELECT 1 FROM objects WHERE bucket = $1) RETURNING name""",
                name)
    except asyncpg.ForeignKeyViolationError:
        raise BucketNotEmpty(resource=f"/{name}") from None
    if deleted is None:
        if await get_bucket(pool, name) is None:
            raise NoSuchBucket(resource=f"/{name}")
        raise BucketNotEmpty(resource=f"/{name}")


@translate_db_errors
async def set_versioning(pool: asyncpg.Pool, name: str, status: str) -> None:
    """``Enabled`` or ``Suspended`` (a bucket never returns to unversioned, as in S3)."""
    await pool.execute("UPDATE buckets SET versioning = $2 WHERE name = $1", name, status)


@translate_db_errors
async def set_public_read(pool: asyncpg.Pool, name: str, public_read: bool) -> None:
    await pool.execute("UPDATE buckets SET public_read = $2 WHERE name = $1", name, public_read)


@translate_db_errors
async def set_lifecycle(pool: asyncpg.Pool, name: str,
                        rules: list[dict[str, Any]] | None) -> None:
    """Store parsed lifecycle rules (``None`` removes the configuration)."""
    await pool.execute("UPDATE buckets SET lifecycle = $2 WHERE name = $1", name, rules)


@translate_db_errors
async def buckets_with_lifecycle(pool: asyncpg.Pool) -> list[Bucket]:
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM buckets WHERE lifecycle IS NOT NULL ORDER BY name")
    return [_bucket(r) for r in rows]
