"""Object versions: GET/HEAD/DELETE by version id, delete markers, ListObjectVersions, tags.

Every write of a key happens under the key's advisory lock (``rows.lock_key``) in one
transaction, so "which version is latest" is always exactly one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from origin.metadata.db import translate_db_errors
from origin.metadata.models import ObjectRecord
from origin.metadata.objects import (
    _OBJECT_COLUMNS,
    _object,
    key_successor,
    resume_after_common_prefix,
    walk_page,
)
from origin.metadata.rows import (
    insert_delete_marker,
    lock_key,
    make_room,
    promote_newest,
    purge_rows,
)

_FAR = 1 << 62


@dataclass(frozen=True)
class DeleteOutcome:
    """What a DELETE did: the version it created (a delete marker) or removed."""

    version_id: str | None
    delete_marker: bool


@dataclass(frozen=True)
class VersionEntry:
    key: str
    version_id: str
    is_latest: bool
    delete_marker: bool
    size: int
    etag: str
    last_modified: datetime
    storage_class: str = "STANDARD"


@dataclass(frozen=True)
class VersionPage:
    entries: list[VersionEntry]
    common_prefixes: list[str]
    truncated: bool
    next_key_marker: str | None
    next_version_id_marker: str | None


@translate_db_errors
async def get_version(
    pool: asyncpg.Pool, bucket: str, key: str, version_id: str
) -> ObjectRecord | None:
    row = await pool.fetchrow(
        f"""SELECT {_OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND key = $2
            AND version_id = $3 AND kind = 'object'""", bucket, key, version_id)
    return _object(row) if row else None


@translate_db_errors
async def get_by_id(pool: asyncpg.Pool, object_id: str) -> ObjectRecord | None:
    row = await pool.fetchrow(f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE id = $1",
                              object_id)
    return _object(row) if row else None


@translate_db_errors
async def delete_current(
    pool: asyncpg.Pool, bucket: str, key: str, versioning: str | None, new_version_id: str
) -> DeleteOutcome:
    """DELETE without a version id. Unversioned: the key is gone. Enabled: a delete marker
    (``new_version_id``) becomes latest. Suspended: the 'null' version is replaced by a
    'null' delete marker."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_key(conn, bucket, key)
        if versioning is None:
            ids = await conn.fetch(
                "SELECT id FROM objects WHERE bucket = $1 AND key = $2 AND kind = 'object'",
                bucket, key)
            await purge_rows(conn, [str(r["id"]) for r in ids])
            return DeleteOutcome(None, False)
        version_id = new_version_id if versioning == "Enabled" else "null"
        await make_room(conn, bucket, key, version_id)
        await insert_delete_marker(conn, bucket, key, version_id)
        return DeleteOutcome(version_id, True)


@translate_db_errors
async def delete_version(
    pool: asyncpg.Pool, bucket: str, key: str, version_id: str
) -> DeleteOutcome | None:
    """Remove one version for good (``None`` if there is no such version); when it was the
    latest, the newest remaining version becomes latest."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_key(conn, bucket, key)
        row = await conn.fetchrow(
            """SELECT id, delete_marker, is_latest FROM objects WHERE bucket = $1 AND key = $2
               AND version_id = $3 AND kind = 'object'""", bucket, key, version_id)
        if row is None:
            return None
        await purge_rows(conn, [str(row["id"])])
        if row["is_latest"]:
            await promote_newest(conn, bucket, key)
        return DeleteOutcome(version_id, row["delete_marker"])


@translate_db_errors
async def set_tags(
    pool: asyncpg.Pool, bucket: str, key: str, version_id: str | None, tags: dict[str, str]
) -> str | None:
    """Replace the tags of a version (the latest when ``version_id`` is None); returns the
    version id tagged, ``None`` when there is no such (non-delete-marker) version."""
    return await pool.fetchval(
        """UPDATE objects SET tags = $4 WHERE bucket = $1 AND key = $2 AND kind = 'object'
           AND NOT delete_marker
           AND (($3::text IS NULL AND is_latest) OR version_id = $3) RETURNING version_id""",
        bucket, key, version_id, tags)


@translate_db_errors
async def list_versions(
    pool: asyncpg.Pool,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    key_marker: str = "",
    version_id_marker: str = "",
    max_keys: int = 1000,
) -> VersionPage:
    """One ListObjectVersions page: keys ascending, each key's versions newest first."""
    upper = key_successor(prefix) if prefix else None
    async with pool.acquire() as conn:
        # Position (rkey, rseq): rows with key > rkey, or key = rkey and -seq > rseq.
        rkey, rseq = (key_marker, _FAR) if key_marker else (prefix, -_FAR)
        if key_marker:
            jump = resume_after_common_prefix(prefix, delimiter, key_marker)
            if jump is not None:
                rkey, rseq = jump, -_FAR
            elif version_id_marker:
                seq = await conn.fetchval(
                    """SELECT seq FROM objects WHERE bucket = $1 AND key = $2
                       AND version_id = $3 AND kind = 'object'""",
                    bucket, key_marker, version_id_marker)
                rseq = -seq if seq is not None else _FAR
        if rkey < prefix:
            rkey, rseq = prefix, -_FAR
        entries: list[VersionEntry] = []

        def take(row: asyncpg.Record) -> None:
            nonlocal rkey, rseq
            entries.append(VersionEntry(row["key"], row["version_id"], row["is_latest"],
                                        row["delete_marker"], row["size"], row["etag"],
                                        row["last_modified"], row["storage_class"]))
            rkey, rseq = row["key"], -row["seq"]

        def roll_up(common: str) -> None:
            nonlocal rkey, rseq
            rkey, rseq = key_successor(common), -_FAR

        async def fetch(limit: int) -> list[asyncpg.Record]:
            return await conn.fetch(
                """SELECT key, version_id, seq, is_latest, delete_marker, size, etag,
                          last_modified, storage_class FROM objects
                   WHERE bucket = $1 AND kind = 'object' AND key >= $2
                   AND ($3::text IS NULL OR key < $3) AND (key > $2 OR -seq > $4)
                   ORDER BY key, seq DESC LIMIT $5""", bucket, rkey, upper, rseq, limit)

        prefixes, truncated = await walk_page(fetch, prefix=prefix, delimiter=delimiter,
                                              max_keys=max_keys, take=take, roll_up=roll_up)
    if not truncated:
        return VersionPage(entries, prefixes, False, None, None)
    last_entry = entries[-1] if entries else None
    last_prefix = prefixes[-1] if prefixes else None
    if last_prefix is not None and (last_entry is None or last_prefix > last_entry.key):
        return VersionPage(entries, prefixes, True, last_prefix, None)
    assert last_entry is not None
    return VersionPage(entries, prefixes, True, last_entry.key, last_entry.version_id)
