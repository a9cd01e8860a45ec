"""Objects and their fragment maps.

``commit_object`` is the moment a PUT becomes visible: the object row and its fragment map
(one ``segment_fragments`` row per segment, migration 0500) are written in one transaction,
after the data is durable on the nodes. Replacing a key deletes the old row in the same
transaction (its fragment rows go with it by cascade), so readers see either the old or the
new object, never a mix; the old fragments stay on disk as garbage for the future collector,
which is also what keeps in-flight reads of the old version working.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from origin.errors import NoSuchBucket
from origin.layout import FragmentLocation, FragmentMap, locations_from_fields
from origin.metadata.db import translate_db_errors
from origin.metadata.models import ListedObject, ListPage, NewObject, ObjectRecord, StorageScheme
from origin.metadata.rows import lock_key, make_room, purge_rows
from origin.metadata.volume_memo import KnownVolumes

# A step run inside ``commit_object``'s transaction, given the committed row.
InTransaction = Callable[[asyncpg.Connection, ObjectRecord], Awaitable[None]]

_OBJECT_COLUMNS = """id, bucket, key, size, etag, content_type, cache_control,
    content_disposition, content_encoding, surrogate_keys, metadata, last_modified, ec_type,
    ec_ndata, ec_nparity, segment_size, missing_fragments, version_id, is_latest, delete_marker,
    tags, checksum, part_count, lifecycle_storage_class, storage_class"""


def _object(row: asyncpg.Record) -> ObjectRecord:
    return ObjectRecord(
        id=str(row["id"]), bucket=row["bucket"], key=row["key"], size=row["size"],
        etag=row["etag"], content_type=row["content_type"],
        scheme=StorageScheme(row["ec_type"], row["ec_ndata"], row["ec_nparity"],
                             row["segment_size"]),
        cache_control=row["cache_control"], content_disposition=row["content_disposition"],
        content_encoding=row["content_encoding"],
        surrogate_keys=tuple(row["surrogate_keys"]), metadata=dict(row["metadata"]),
        missing_fragments=row["missing_fragments"], last_modified=row["last_modified"],
        version_id=row["version_id"], is_latest=row["is_latest"],
        delete_marker=row["delete_marker"], tags=dict(row["tags"]),
        checksum=(row["checksum"]["algorithm"], row["checksum"]["value"])
        if row["checksum"] else None,
        part_count=row["part_count"], lifecycle_storage_class=row["lifecycle_storage_class"],
        storage_class=row["storage_class"])


@translate_db_errors
async def commit_object(
    pool: asyncpg.Pool, obj: NewObject, fragments: FragmentMap,
    also: InTransaction | None = None, known_volumes: KnownVolumes | None = None,
) -> ObjectRecord:
    """Make ``obj`` the current version of its key, atomically replacing the previous 'null'
    version (or keeping the previous version as noncurrent when ``obj`` has a version id).
    ``also`` runs in the same transaction (multipart completion links the parts there).

    Without ``also`` the whole commit is one call of ``origin_commit_object`` (migrations
    0400, 0510): one round trip instead of eight, which is most of a small PUT's metadata
    cost. ``known_volumes``: the (node, volume) pairs this process already committed (a
    per-process memo the call fills in); when it holds every pair of ``fragments``, the
    ``volumes`` upsert is skipped (their rows exist; ``volume_memo`` says when it forgets)."""
    if also is None:
        columns = fragment_columns(fragments)
        pairs = set(zip(columns[2], columns[3], strict=True))
        note = known_volumes is None or known_volumes.needs_upsert(pairs, time.monotonic())
        try:
            row = await pool.fetchrow(_COMMIT_CALL, *_object_values(obj),
                                      *_array_literals(columns), note)
        except asyncpg.ForeignKeyViolationError:
            raise NoSuchBucket(resource=f"/{obj.bucket}") from None
        assert row is not None
        if note and known_volumes is not None:
            known_volumes.committed(pairs)
        return _object(row)
    async with pool.acquire() as conn, conn.transaction():
        # Serialise writers of one key so "delete old, insert new" cannot race into a
        # unique violation.
        await lock_key(conn, obj.bucket, obj.key)
        await make_room(conn, obj.bucket, obj.key, obj.version_id)
        try:
            row = await conn.fetchrow(
                f"""INSERT INTO objects (id, bucket, key, size, etag, content_type,
                        cache_control, content_disposition, content_encoding, surrogate_keys,
                        metadata, ec_type, ec_ndata, ec_nparity, segment_size, missing_fragments,
                        version_id, tags, checksum, part_count, storage_class)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                        $17, $18, $19, $20, $21)
                    RETURNING {_OBJECT_COLUMNS}""", *_object_values(obj))
        except asyncpg.ForeignKeyViolationError:
            raise NoSuchBucket(resource=f"/{obj.bucket}") from None
        await insert_fragments(conn, obj.id, fragments)
        assert row is not None
        record = _object(row)
        await also(conn, record)
    return record


# The fragment columns travel as array *literals* (text, parsed by PostgreSQL's array_in):
# asyncpg's array encoder checks every element against the collections ABCs, which cost the
# origin more than the rest of the call's encoding (9 fragments x 7 columns per 4 KiB PUT).
_COMMIT_CALL = f"""SELECT {_OBJECT_COLUMNS} FROM origin_commit_object(
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
    $21, $22::text::integer[], $23::text::smallint[], $24::text::text[],
    $25::text::integer[], $26::text::bigint[], $27::text::integer[], $28::text::bigint[],
    $29)"""


def _array_literals(columns: tuple[list[Any], ...]) -> list[str]:
    """Each column as a PostgreSQL array literal: integers as they print, text elements
    double-quoted with backslash escapes (so any node id reads back exactly). Joined by
    ``map`` and ``str.join``, not a generator per element (63 elements per 4 KiB PUT)."""
    out = []
    for column in columns:
        if column and isinstance(column[0], str):
            if '"' in (raw := "".join(column)) or "\\" in raw:
                column = [v.replace("\\", "\\\\").replace('"', '\\"') for v in column]
            out.append('{"' + '","'.join(column) + '"}')
        else:
            out.append("{" + ",".join(map(str, map(int, column))) + "}")
    return out


def _object_values(obj: NewObject) -> tuple[object, ...]:
    """The 21 column values of a new object row, in ``INSERT`` order."""
    return (obj.id, obj.bucket, obj.key, obj.size, obj.etag, obj.content_type,
            obj.cache_control, obj.content_disposition, obj.content_encoding,
            list(obj.surrogate_keys), obj.metadata, obj.scheme.ec_type, obj.scheme.ndata,
            obj.scheme.nparity, obj.scheme.segment_size, obj.missing_fragments,
            obj.version_id, obj.tags,
            {"algorithm": obj.checksum[0], "value": obj.checksum[1]} if obj.checksum
            else None, obj.part_count, obj.storage_class)


def fragment_columns(fragments: FragmentMap) -> tuple[list[Any], ...]:
    """The fragment map as seven parallel arrays (segment, index, node, volume, offset,
    length, checksum), the shape ``unnest`` turns back into rows."""
    if len(fragments) == 1:  # one segment (every small object): whole lists, no loop
        ((seg, frags),) = fragments.items()
        segments, indexes, locations = [seg] * len(frags), list(frags), list(frags.values())
    else:
        segments, indexes, locations = [], [], []
        for seg, frags in fragments.items():
            for idx, loc in frags.items():
                segments.append(seg)
                indexes.append(idx)
                locations.append(loc)
    # FragmentLocation is (node_id, volume, offset, length, checksum): transposed by zip
    per_field = [list(field) for field in zip(*locations, strict=True)] or [[]] * 5
    return (segments, indexes, *per_field)


async def insert_fragments(conn: asyncpg.Connection, object_id: str,
                           fragments: FragmentMap) -> None:
    """The fragment rows of ``object_id`` (and the volumes they live in), in the caller's
    transaction."""
    columns = fragment_columns(fragments)
    if not columns[0]:
        return
    volumes = sorted(set(zip(columns[2], columns[3], strict=True)))
    await conn.execute(INSERT_FRAGMENTS_CALL, object_id, *columns)
    await conn.execute(
        """INSERT INTO volumes (node_id, volume)
           SELECT * FROM unnest($1::text[], $2::int[]) ON CONFLICT DO NOTHING""",
        [n for n, _v in volumes], [v for _n, v in volumes])


# Per-fragment columns (``fragment_columns``: grouped by segment) → one row per segment.
INSERT_FRAGMENTS_CALL = """SELECT origin_insert_fragments($1, $2::int[], $3::smallint[],
    $4::text[], $5::int[], $6::bigint[], $7::int[], $8::bigint[])"""


def segment_map(row: asyncpg.Record) -> dict[int, FragmentLocation]:
    """One ``segment_fragments`` row as ``fragment index → location``."""
    return dict(zip(row["frag_indexes"], locations_from_fields(zip(
        row["node_ids"], row["volumes"], row["offsets"], row["lengths"], row["checksums"],
        strict=True)), strict=True))


@translate_db_errors
async def get_object(pool: asyncpg.Pool, bucket: str, key: str) -> ObjectRecord | None:
    """The latest version of ``bucket/key`` (which may be a delete marker)."""
    row = await pool.fetchrow(
        f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND key = $2 AND is_latest",
        bucket, key)
    return _object(row) if row else None


@translate_db_errors
async def get_object_and_map(
    pool: asyncpg.Pool, bucket: str, key: str, segments: int
) -> tuple[ObjectRecord | None, FragmentMap]:
    """``get_object`` and the fragment map of its first ``segments`` segments in one round
    trip (a small object's GET needs nothing else from the database): one row per segment,
    the object's columns on each (a small object has one). A segment without a fragment row
    is absent from the map."""
    rows = await pool.fetch(_OBJECT_AND_MAP, bucket, key, segments)
    if not rows:
        return None, {}
    result: FragmentMap = {}  # segments without a row are absent
    for row in rows:
        if (segment := row["segment"]) is not None:
            result[segment] = segment_map(row)
    return _object(rows[0]), result


_OBJECT_AND_MAP = f"""SELECT {", ".join("o." + c.strip() for c in _OBJECT_COLUMNS.split(","))},
        f.segment, f.frag_indexes, f.node_ids, f.volumes, f.offsets, f.lengths, f.checksums
    FROM objects o LEFT JOIN segment_fragments f ON f.object_id = o.id AND f.segment < $3
    WHERE o.bucket = $1 AND o.key = $2 AND o.is_latest"""


@translate_db_errors
async def get_fragments(
    pool: asyncpg.Pool, object_id: str, first_segment: int, last_segment: int
) -> FragmentMap:
    """The fragment map of segments ``first_segment ..= last_segment`` only (a Range read
    does not load the map of a whole 5 GiB object)."""
    rows = await pool.fetch(
        """SELECT segment, frag_indexes, node_ids, volumes, offsets, lengths, checksums
           FROM segment_fragments WHERE object_id = $1 AND segment BETWEEN $2 AND $3""",
        object_id, first_segment, last_segment)
    result: FragmentMap = {s: {} for s in range(first_segment, last_segment + 1)}
    for r in rows:
        result[r["segment"]] = segment_map(r)
    return result


@translate_db_errors
async def delete_object(pool: asyncpg.Pool, bucket: str, key: str) -> bool:
    """Remove every version of the key (an unversioned bucket's DELETE); ``False`` if it did
    not exist (S3 answers 204 either way)."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_key(conn, bucket, key)
        ids = await conn.fetch(
            "SELECT id FROM objects WHERE bucket = $1 AND key = $2 AND kind = 'object'",
            bucket, key)
        await purge_rows(conn, [str(r["id"]) for r in ids])
    return bool(ids)


# One listing step: a range scan of the ``objects_current`` index (bucket, key) WHERE is_latest.
LISTING_QUERY = """SELECT key, size, etag, last_modified, storage_class FROM objects
    WHERE bucket = $1 AND is_latest AND key {op} $2 AND ($3::text IS NULL OR key < $3)
    AND NOT delete_marker ORDER BY key LIMIT $4"""


def key_successor(value: str) -> str:
    """The smallest string greater than every string that starts with ``value`` (code point
    order, which is UTF-8 byte order, which is how ``COLLATE "C"`` compares)."""
    while value:
        last = ord(value[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be stored; skip over them
                nxt = 0xE000
            return value[:-1] + chr(nxt)
        value = value[:-1]
    raise ValueError("no successor: empty string or only U+10FFFF")


def common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    """The common prefix ``key`` rolls up into (up to and including the first ``delimiter``
    after ``prefix``), or ``None`` when it is listed as itself."""
    cut = key.find(delimiter, len(prefix)) if delimiter else -1
    return key[: cut + len(delimiter)] if cut >= 0 else None


def resume_after_common_prefix(prefix: str, delimiter: str, marker: str) -> str | None:
    """A marker inside a common prefix already returned (a V1 marker or start-after such as
    "photos/"): everything under it was rolled up, so the listing resumes after all of it."""
    if marker.startswith(prefix):
        common = common_prefix(marker, prefix, delimiter)
        if common is not None:
            return key_successor(common)
    return None


async def walk_page(fetch: Callable[[int], Awaitable[list[asyncpg.Record]]], *, prefix: str,
                    delimiter: str, max_keys: int, take: Callable[[asyncpg.Record], None],
                    roll_up: Callable[[str], None]) -> tuple[list[str], bool]:
    """One listing page over rows in key order, shared by the object and version listings.

    ``fetch(limit)`` reads up to ``limit`` rows after the caller's cursor; ``take(row)``
    lists a row and moves the cursor past it; a row under a new common prefix is rolled up
    and ``roll_up(common)`` moves the cursor past everything under it (one query skips a whole
    "folder"). Returns the common prefixes and whether more rows follow the page."""
    prefixes: list[str] = []
    taken = 0
    while taken + len(prefixes) < max_keys:
        limit = max_keys - taken - len(prefixes)
        rows = await fetch(limit)
        jumped = False
        for row in rows:
            common = common_prefix(row["key"], prefix, delimiter)
            if common is not None:
                prefixes.append(common)
                roll_up(common)
                jumped = True
                break
            take(row)
            taken += 1
        if not jumped and len(rows) < limit:
            return prefixes, False
    return prefixes, max_keys > 0 and bool(await fetch(1))


def _lower_bound(prefix: str, resume: tuple[str, bool] | None) -> tuple[str, bool]:
    """Where a listing scan starts: the later of the prefix and the resume position."""
    if resume is None or resume[0] < prefix:
        return prefix, True
    if resume[0] == prefix:
        return prefix, resume[1]
    return resume


@translate_db_errors
async def list_objects(
    pool: asyncpg.Pool,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    resume: tuple[str, bool] | None = None,
    max_keys: int = 1000,
) -> ListPage:
    """One ListObjectsV2 page. Keys under one common prefix are skipped with a single jump
    (``key >= successor(prefix)``), so a "folder" with a million keys costs one query."""
    upper = key_successor(prefix) if prefix else None
    if resume is not None and (jump := resume_after_common_prefix(prefix, delimiter,
                                                                  resume[0])) is not None:
        resume = (jump, True)
    bound, inclusive = _lower_bound(prefix, resume)
    contents: list[ListedObject] = []

    def take(row: asyncpg.Record) -> None:
        nonlocal bound, inclusive
        contents.append(ListedObject(row["key"], row["size"], row["etag"],
                                     row["last_modified"], row["storage_class"]))
        bound, inclusive = row["key"], False

    def roll_up(common: str) -> None:
        nonlocal bound, inclusive
        bound, inclusive = key_successor(common), True

    async with pool.acquire() as conn:

        async def fetch(limit: int) -> list[asyncpg.Record]:
            op = ">=" if inclusive else ">"
            return await conn.fetch(LISTING_QUERY.format(op=op), bucket, bound, upper, limit)

        prefixes, truncated = await walk_page(fetch, prefix=prefix, delimiter=delimiter,
                                              max_keys=max_keys, take=take, roll_up=roll_up)
    return ListPage(contents, prefixes, truncated, (bound, inclusive) if truncated else None)
