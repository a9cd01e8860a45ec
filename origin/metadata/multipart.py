"""Multipart uploads: the upload, its parts (each an erasure-coded ``objects`` row of kind
'part' with its own fragments) and the link from a completed object to its parts.

Completion copies no byte: ``link_parts`` runs inside ``commit_object``'s transaction and
records which part rows, in which order, make up the new object.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from origin.errors import NoSuchUpload
from origin.layout import FragmentMap
from origin.metadata.db import translate_db_errors
from origin.metadata.models import NewObject, ObjectRecord, StorageScheme
from origin.metadata.objects import InTransaction, insert_fragments
from origin.multipart import UploadedPart


@dataclass(frozen=True)
class Upload:
    upload_id: str
    bucket: str
    key: str
    owner: str
    initiated: datetime
    attributes: dict[str, Any]
    completed: dict[str, Any] | None


@dataclass(frozen=True)
class ListedPart:
    number: int
    etag: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class PartData:
    """One part of a completed object: where its bytes are and how they were encoded."""

    number: int
    object_id: str
    offset: int
    size: int
    scheme: StorageScheme


class UploadAlreadyCompleted(Exception):
    """Raised inside a completion transaction that lost a race with another completion."""


def _upload(row: asyncpg.Record) -> Upload:
    return Upload(row["upload_id"], row["bucket"], row["key"], row["owner"], row["initiated"],
                  dict(row["attributes"]), row["completed"])


_UPLOAD_COLUMNS = "upload_id, bucket, key, owner, initiated, attributes, completed"


@translate_db_errors
async def create_upload(pool: asyncpg.Pool, upload_id: str, bucket: str, key: str, owner: str,
                        attributes: dict[str, Any]) -> None:
    await pool.execute(
        """INSERT INTO multipart_uploads (upload_id, bucket, key, owner, attributes)
           VALUES ($1, $2, $3, $4, $5)""", upload_id, bucket, key, owner, attributes)


@translate_db_errors
async def get_upload(pool: asyncpg.Pool, bucket: str, key: str, upload_id: str) -> Upload:
    row = await pool.fetchrow(
        f"""SELECT {_UPLOAD_COLUMNS} FROM multipart_uploads
            WHERE upload_id = $1 AND bucket = $2 AND key = $3""", upload_id, bucket, key)
    if row is None:
        raise NoSuchUpload(resource=f"/{bucket}/{key}")
    return _upload(row)


@translate_db_errors
async def commit_part(pool: asyncpg.Pool, upload_id: str, number: int, part: NewObject,
                      fragments: FragmentMap) -> None:
    """Record an uploaded part (its data is durable); a re-upload of the same number replaces
    the previous one, whose data becomes garbage."""
    s = part.scheme
    async with pool.acquire() as conn, conn.transaction():
        state = await conn.fetchrow(
            "SELECT completed FROM multipart_uploads WHERE upload_id = $1 FOR SHARE", upload_id)
        if state is None or state["completed"] is not None:
            raise NoSuchUpload()
        await conn.execute(
            """INSERT INTO objects (id, bucket, key, size, etag, content_type, ec_type, ec_ndata,
                   ec_nparity, segment_size, missing_fragments, version_id, is_latest, kind)
               VALUES ($1, $2, $3, $4, $5, '', $6, $7, $8, $9, $10, $11, false, 'part')""",
            part.id, part.bucket, part.key, part.size, part.etag, s.ec_type, s.ndata, s.nparity,
            s.segment_size, part.missing_fragments, part.id)
        await insert_fragments(conn, part.id, fragments)
        old = await conn.fetchval(
            "SELECT object_id FROM upload_parts WHERE upload_id = $1 AND part_number = $2",
            upload_id, number)
        await conn.execute(
            """INSERT INTO upload_parts (upload_id, part_number, object_id, size, etag)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (upload_id, part_number) DO UPDATE SET object_id = EXCLUDED.object_id,
               size = EXCLUDED.size, etag = EXCLUDED.etag, last_modified = now()""",
            upload_id, number, part.id, part.size, part.etag)
        if old is not None:
            await conn.execute("DELETE FROM objects WHERE id = $1", old)


@translate_db_errors
async def list_parts(pool: asyncpg.Pool, upload_id: str, *, after: int = 0,
                     limit: int = 10_000) -> list[ListedPart]:
    rows = await pool.fetch(
        """SELECT part_number, etag, size, last_modified FROM upload_parts
           WHERE upload_id = $1 AND part_number > $2 ORDER BY part_number LIMIT $3""",
        upload_id, after, limit)
    return [ListedPart(r["part_number"], r["etag"], r["size"], r["last_modified"])
            for r in rows]


def uploaded_parts(parts: list[ListedPart]) -> dict[int, UploadedPart]:
    return {p.number: UploadedPart(p.number, p.etag, p.size) for p in parts}


def link_parts(upload_id: str, chosen: list[UploadedPart],
               result: dict[str, Any]) -> InTransaction:
    """The step completing an upload inside ``commit_object``'s transaction: the new object
    references the chosen parts' rows; parts not chosen are dropped; the upload remembers
    ``result`` so completing it again answers the same."""

    async def step(conn: asyncpg.Connection, record: ObjectRecord) -> None:
        state = await conn.fetchrow(
            "SELECT completed FROM multipart_uploads WHERE upload_id = $1 FOR UPDATE",
            upload_id)
        if state is None:
            raise NoSuchUpload()
        if state["completed"] is not None:
            raise UploadAlreadyCompleted()
        rows = await conn.fetch(
            """SELECT part_number, object_id, size, etag FROM upload_parts
               WHERE upload_id = $1""", upload_id)
        current = {r["part_number"]: r for r in rows}
        offset = 0
        links = []
        for part in chosen:
            row = current.get(part.number)
            if row is None or row["etag"] != part.etag:  # re-uploaded meanwhile
                raise NoSuchUpload(f"part {part.number} changed during completion")
            links.append((part.number, row["object_id"], offset, part.size, part.etag))
            offset += part.size
        await conn.execute(
            """INSERT INTO object_parts (object_id, part_number, part_object_id, "offset", size,
                   etag)
               SELECT $1, * FROM unnest($2::int[], $3::uuid[], $4::bigint[], $5::bigint[],
                   $6::text[])""",
            record.id, [x[0] for x in links], [x[1] for x in links], [x[2] for x in links],
            [x[3] for x in links], [x[4] for x in links])
        unused = [r["object_id"] for n, r in current.items()
                  if n not in {p.number for p in chosen}]
        if unused:
            await conn.execute("DELETE FROM objects WHERE id = ANY($1::uuid[])", unused)
        await conn.execute(
            """UPDATE multipart_uploads SET completed = $2, completed_at = now()
               WHERE upload_id = $1""", upload_id, {**result, "version_id": record.version_id})

    return step


@translate_db_errors
async def abort_upload(pool: asyncpg.Pool, upload_id: str) -> bool:
    """Drop an unfinished upload and its parts; ``False`` if there was none."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT completed FROM multipart_uploads WHERE upload_id = $1 FOR UPDATE", upload_id)
        if row is None or row["completed"] is not None:
            return False
        parts = await conn.fetch("SELECT object_id FROM upload_parts WHERE upload_id = $1",
                                 upload_id)
        await conn.execute("DELETE FROM multipart_uploads WHERE upload_id = $1", upload_id)
        if parts:
            await conn.execute("DELETE FROM objects WHERE id = ANY($1::uuid[])",
                               [r["object_id"] for r in parts])
    return True


@translate_db_errors
async def list_uploads(pool: asyncpg.Pool, bucket: str, *, prefix: str = "",
                       key_marker: str = "", upload_id_marker: str = "",
                       limit: int = 1000) -> list[Upload]:
    """Unfinished uploads by key, then initiation time (one more than ``limit`` tells the
    caller the listing is truncated)."""
    rows = await pool.fetch(
        f"""SELECT {_UPLOAD_COLUMNS} FROM multipart_uploads
            WHERE bucket = $1 AND completed IS NULL AND key LIKE $2
            AND (key > $3 OR (key = $3 AND $4 <> '' AND upload_id > $4))
            ORDER BY key, initiated, upload_id LIMIT $5""",
        bucket, prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",
        key_marker, upload_id_marker, limit + 1)
    return [_upload(r) for r in rows]


@translate_db_errors
async def object_parts(pool: asyncpg.Pool, object_id: str) -> list[PartData]:
    rows = await pool.fetch(
        """SELECT p.part_number, p.part_object_id, p."offset", p.size, o.ec_type, o.ec_ndata,
                  o.ec_nparity, o.segment_size
           FROM object_parts p JOIN objects o ON o.id = p.part_object_id
           WHERE p.object_id = $1 ORDER BY p.part_number""", object_id)
    return [PartData(r["part_number"], str(r["part_object_id"]), r["offset"], r["size"],
                     StorageScheme(r["ec_type"], r["ec_ndata"], r["ec_nparity"],
                                   r["segment_size"])) for r in rows]


@translate_db_errors
async def stale_uploads(pool: asyncpg.Pool, initiated_before: datetime,
                        limit: int = 1000) -> list[Upload]:
    """Unfinished uploads started before ``initiated_before`` (abandoned-upload cleanup)."""
    rows = await pool.fetch(
        f"""SELECT {_UPLOAD_COLUMNS} FROM multipart_uploads
            WHERE completed IS NULL AND initiated < $1 ORDER BY initiated LIMIT $2""",
        initiated_before, limit)
    return [_upload(r) for r in rows]


@translate_db_errors
async def forget_completed(pool: asyncpg.Pool, completed_before: datetime) -> int:
    """Drop the records of uploads completed before ``completed_before`` (their parts belong
    to the object now; only the "complete again" answer is forgotten)."""
    status = await pool.execute(
        """DELETE FROM multipart_uploads WHERE completed IS NOT NULL AND completed_at < $1""",
        completed_before)
    return int(status.split()[-1])
