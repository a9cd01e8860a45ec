"""Fragment-map queries of the background workers (reconstructor, scrubber, GC, compactor,
fsck) and the storage-class change.

The map lives in ``segment_fragments`` (migration 0500): one row per segment, its fragments
as parallel arrays (``frag_indexes``, ``node_ids``, ``volumes``, ``offsets``, ``lengths``,
``checksums``), with a GIN index over each row's ``origin_fragment_places(node_ids,
volumes)`` ('node/volume' texts) for "what lives in volume V of node N". The ``fragments``
view unnests it into one row per fragment, for reading where no index is needed.

"Referenced" is defined once, here: a record at ``(node_id, volume, offset)`` is referenced
when an element of ``segment_fragments`` points at it, or ANY row of ANY other table with the
columns ``node_id``, ``volume`` and ``offset`` does — whatever else may one day store fragment
locations one per row (multipart parts, object versions) without this module having to learn
about it. Those tables are discovered from the catalogue, so a new one is protected from GC
and followed by the compactor as soon as it exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from origin.layout import FragmentLocation
from origin.metadata.db import translate_db_errors
from origin.metadata.objects import INSERT_FRAGMENTS_CALL, fragment_columns, segment_map

# Base tables only: the ``fragments`` view has the three columns too, but it is the
# segment table unnested (asked through its own index below) and it has no index of its own.
_REFERENCE_TABLES_SQL = """
    SELECT c.table_name FROM information_schema.columns c
    JOIN information_schema.tables t
      ON t.table_schema = c.table_schema AND t.table_name = c.table_name
    WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
      AND c.column_name IN ('node_id', 'volume', 'offset') AND c.data_type <> 'ARRAY'
    GROUP BY c.table_name HAVING count(*) = 3 ORDER BY c.table_name"""

# The elements of ``segment_fragments`` in volume $2 of node $1: rows found through the GIN
# index (the row's places contain the pair), then the positions ``p`` of node $1 in the row
# (``array_positions``: usually one; more when a segment has two fragments on one node) whose
# volume is $2. Indexing the arrays at ``p`` rather than unnesting all six of them halves the
# query (20,000 segments in a volume of 200,000 objects: 76 -> 36 ms).
_IN_VOLUME = """FROM segment_fragments s
        CROSS JOIN LATERAL unnest(array_positions(s.node_ids, $1)) AS p
    WHERE origin_fragment_places(s.node_ids, s.volumes)
            @> ARRAY[origin_fragment_place($1, $2)]
      AND s.volumes[p] = $2"""


# GC's offsets of volume $2 of node $1, the same rows as ``_IN_VOLUME`` without a set-returning
# function per row: a row holds one fragment of the node (the usual case: placement spreads a
# segment over distinct nodes when it can) at ``array_position``, which the GIN match puts in
# volume $2; only a row holding more than one (``more``) unnests its positions. Unnesting every
# row made the query twice the old table's (20,000 segments of 200,000 objects: ~36 ms against
# ~18 ms; the unnest and its copies of the arrays, not the index, were most of it).
_OFFSETS_IN_VOLUME = """
    SELECT s.offsets[array_position(s.node_ids, $1)] AS "offset",
           CASE WHEN array_position(s.node_ids, $1, array_position(s.node_ids, $1) + 1)
                     IS NOT NULL
                THEN ARRAY(SELECT s.offsets[p] FROM unnest(array_positions(s.node_ids, $1)) p
                           WHERE s.volumes[p] = $2) END AS more
    FROM segment_fragments s
    WHERE origin_fragment_places(s.node_ids, s.volumes)
            @> ARRAY[origin_fragment_place($1, $2)]"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def reference_tables(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """Every table other than ``segment_fragments`` that can point at a stored fragment, one
    row per fragment (none today)."""
    return [r["table_name"] for r in await conn.fetch(_REFERENCE_TABLES_SQL)]


@translate_db_errors
async def referenced_offsets(pool: asyncpg.Pool, node_id: str, volume: int) -> set[int]:
    """Record offsets in one volume that some row references."""
    async with pool.acquire() as conn:
        offsets: set[int] = set()
        for offset, more in await conn.fetch(_OFFSETS_IN_VOLUME, node_id, volume):
            if more is None:
                offsets.add(offset)
            else:  # the first of the node's fragments may be in another volume
                offsets.update(more)
        for table in await reference_tables(conn):
            rows = await conn.fetch(
                f'SELECT DISTINCT "offset" FROM {_ident(table)} '
                f'WHERE node_id = $1 AND volume = $2', node_id, volume)
            offsets.update(r["offset"] for r in rows)
    return offsets


@translate_db_errors
async def count_references(pool: asyncpg.Pool, node_id: str, volume: int) -> int:
    """Fragments (in any reference table) pointing into one volume: must be 0 before
    deleting it."""
    async with pool.acquire() as conn:
        total = await conn.fetchval(f"SELECT count(*) {_IN_VOLUME}", node_id, volume)
        for table in await reference_tables(conn):
            total += await conn.fetchval(
                f"SELECT count(*) FROM {_ident(table)} WHERE node_id = $1 AND volume = $2",
                node_id, volume)
    return total


# Each row holding a fragment at (node $1, volume $2, one of the old offsets) gets the new
# volume and offset of that element. The new arrays are computed from the row's own columns
# in SET, so a row changed by a concurrent transaction (a repair) is recomputed from its
# committed version after the lock wait (READ COMMITTED's re-check), not overwritten with
# arrays read before it.
_RELOCATE = """
    WITH m (old_offset, new_volume, new_offset) AS MATERIALIZED (
        SELECT * FROM unnest($3::bigint[], $4::int[], $5::bigint[]))
    UPDATE segment_fragments s SET
        volumes = ARRAY(SELECT COALESCE(m.new_volume, u.volume)
                        FROM unnest(s.node_ids, s.volumes, s.offsets) WITH ORDINALITY
                             AS u (node_id, volume, "offset", ord)
                        LEFT JOIN m ON u.node_id = $1 AND u.volume = $2
                                   AND u."offset" = m.old_offset
                        ORDER BY u.ord),
        offsets = ARRAY(SELECT COALESCE(m.new_offset, u."offset")
                        FROM unnest(s.node_ids, s.volumes, s.offsets) WITH ORDINALITY
                             AS u (node_id, volume, "offset", ord)
                        LEFT JOIN m ON u.node_id = $1 AND u.volume = $2
                                   AND u."offset" = m.old_offset
                        ORDER BY u.ord)
    WHERE origin_fragment_places(s.node_ids, s.volumes)
            @> ARRAY[origin_fragment_place($1, $2)]
      AND EXISTS (SELECT 1 FROM unnest(s.node_ids, s.volumes, s.offsets)
                       AS u (node_id, volume, "offset")
                  JOIN m ON u."offset" = m.old_offset
                  WHERE u.node_id = $1 AND u.volume = $2)
    RETURNING (SELECT count(*) FROM unnest(s.node_ids, s.volumes, s.offsets)
                    AS u (node_id, volume, "offset")
               JOIN m ON u.volume = m.new_volume AND u."offset" = m.new_offset
               WHERE u.node_id = $1) AS moved"""


@translate_db_errors
async def relocate_references(
    pool: asyncpg.Pool, node_id: str, volume: int, moves: Sequence[tuple[int, int, int]]
) -> int:
    """Point every fragment at ``(node_id, volume, old_offset)`` to ``(new_volume,
    new_offset)`` for each ``(old_offset, new_volume, new_offset)``, in every reference
    table, in one transaction (conditional on the old location, so a fragment rebuilt
    elsewhere meanwhile is left alone). Returns the fragments repointed."""
    if not moves:
        return 0
    updated = 0
    args = ([m[0] for m in moves], [m[1] for m in moves], [m[2] for m in moves])
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_RELOCATE, node_id, volume, *args)
        updated += sum(r["moved"] for r in rows)
        for table in await reference_tables(conn):
            result = await conn.execute(
                f"""UPDATE {_ident(table)} AS t SET volume = m.new_volume, "offset" = m.new_offset
                    FROM unnest($3::bigint[], $4::int[], $5::bigint[])
                         AS m(old_offset, new_volume, new_offset)
                    WHERE t.node_id = $1 AND t.volume = $2 AND t."offset" = m.old_offset""",
                node_id, volume, *args)
            updated += int(result.split()[-1])
        await conn.execute(
            """INSERT INTO volumes (node_id, volume)
               SELECT $1, v FROM unnest($2::int[]) v ON CONFLICT DO NOTHING""",
            node_id, sorted({m[1] for m in moves}))
    return updated


@translate_db_errors
async def record_volume_check(
    pool: asyncpg.Pool, node_id: str, volume: int, size: int, dead_bytes: int
) -> None:
    await pool.execute(
        """INSERT INTO volumes (node_id, volume, size, dead_bytes, checked)
           VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (node_id, volume) DO UPDATE
           SET size = EXCLUDED.size, dead_bytes = EXCLUDED.dead_bytes, checked = now()""",
        node_id, volume, size, dead_bytes)


@translate_db_errors
async def forget_volume(pool: asyncpg.Pool, node_id: str, volume: int) -> None:
    await pool.execute("DELETE FROM volumes WHERE node_id = $1 AND volume = $2",
                       node_id, volume)


@translate_db_errors
async def volumes_over_dead_ratio(pool: asyncpg.Pool, ratio: float) -> list[tuple[str, int]]:
    """``(node_id, volume)`` whose last GC check found at least ``ratio`` of it dead."""
    rows = await pool.fetch(
        """SELECT node_id, volume FROM volumes
           WHERE size > 0 AND dead_bytes IS NOT NULL AND dead_bytes >= $1 * size
           ORDER BY dead_bytes DESC""", ratio)
    return [(r["node_id"], r["volume"]) for r in rows]


# -- repair queue --------------------------------------------------------------------------


@dataclass(frozen=True)
class FragmentRef:
    object_id: str
    segment: int
    frag_index: int


@translate_db_errors
async def enqueue_repairs(pool: asyncpg.Pool, refs: Iterable[FragmentRef], reason: str) -> int:
    items = sorted({(r.object_id, r.segment, r.frag_index) for r in refs})
    if not items:
        return 0
    await pool.execute(
        """INSERT INTO repair_queue (object_id, segment, frag_index, reason)
           SELECT * , $4 FROM unnest($1::uuid[], $2::int[], $3::smallint[])
           ON CONFLICT (object_id, segment, frag_index) DO UPDATE SET reason = EXCLUDED.reason""",
        [i[0] for i in items], [i[1] for i in items], [i[2] for i in items], reason)
    return len(items)


async def fragments_in_range(
    pool: asyncpg.Pool, node_id: str, volume: int, start: int, stop: int
) -> list[FragmentRef]:
    """Fragments whose record starts in ``[start, stop)`` of one volume."""
    return [ref for _offset, ref in await placed_fragments(pool, node_id, volume, start, stop)]


@translate_db_errors
async def placed_fragments(
    pool: asyncpg.Pool, node_id: str, volume: int, start: int, stop: int
) -> list[tuple[int, FragmentRef]]:
    """``(record offset, fragment)`` of the fragments whose record starts in ``[start, stop)``
    of one volume."""
    rows = await pool.fetch(
        f"""SELECT s.object_id, s.segment, s.frag_indexes[p] AS frag_index,
                   s.offsets[p] AS "offset" {_IN_VOLUME}
            AND s.offsets[p] >= $3 AND s.offsets[p] < $4""",
        node_id, volume, start, stop)
    return [(r["offset"], FragmentRef(str(r["object_id"]), r["segment"], r["frag_index"]))
            for r in rows]


@translate_db_errors
async def fragments_absent_from(
    pool: asyncpg.Pool, node_id: str, volume_sizes: dict[int, int]
) -> list[FragmentRef]:
    """Fragments on ``node_id`` pointing at a volume the node does not have, or past its
    end: the node lost data (disk replaced, directory wiped). A scan of every segment row
    (a node holds a fragment of most segments, so no index would narrow it much), looking
    only at the node's positions in each: unnesting whole rows (the ``fragments`` view) made
    it 11x slower (1.16 s against 0.10 s at 200,000 objects, per node and scrub pass)."""
    rows = await pool.fetch(
        """SELECT s.object_id, s.segment, s.frag_indexes[p] AS frag_index
           FROM segment_fragments s
           CROSS JOIN LATERAL unnest(array_positions(s.node_ids, $1)) AS p
           LEFT JOIN unnest($2::int[], $3::bigint[]) AS v (volume, size)
                  ON v.volume = s.volumes[p]
           WHERE v.volume IS NULL OR s.offsets[p] >= v.size""",
        node_id, list(volume_sizes), list(volume_sizes.values()))
    return [FragmentRef(str(r["object_id"]), r["segment"], r["frag_index"]) for r in rows]


# -- reconstructor ---------------------------------------------------------------------------


@translate_db_errors
async def segments_to_repair(
    pool: asyncpg.Pool, lost_nodes: Sequence[str], limit: int
) -> list[tuple[str, int]]:
    """``(object_id, segment)`` that need work: queued by readers/scrubber, with fewer than
    ``k+m`` recorded fragments, or with a fragment on a lost node. Derived from the metadata
    every time, so a restarted reconstructor resumes where the last one stopped."""
    rows = await pool.fetch(
        """(SELECT object_id, segment FROM repair_queue ORDER BY reported LIMIT $2)
           UNION
           (SELECT o.id, s.seg FROM objects o,
                generate_series(0, (o.size + o.segment_size - 1) / o.segment_size - 1) AS s(seg)
            WHERE o.missing_fragments > 0
              AND COALESCE((SELECT cardinality(f.frag_indexes) FROM segment_fragments f
                            WHERE f.object_id = o.id AND f.segment = s.seg), 0)
                  < o.ec_ndata + o.ec_nparity
            LIMIT $2)
           UNION
           (SELECT object_id, segment FROM segment_fragments
            -- no lost node (the usual case): no scan at all (a one-time filter); with one,
            -- the rows still on it come from segment_fragments_by_node (migration 0520),
            -- not from a scan that reads more of the table as the repair progresses
            WHERE cardinality($1::text[]) > 0 AND node_ids && $1::text[]
            LIMIT $2)
           LIMIT $2""", list(lost_nodes), limit)
    return [(str(r["object_id"]), r["segment"]) for r in rows]


@dataclass(frozen=True)
class ObjectSegments:
    """Some segments of one blob as the metadata records them, with the fragment indexes
    readers/scrubber reported bad (``suspects``) per segment."""

    object_id: str
    size: int
    ec_type: str
    ndata: int
    nparity: int
    segment_size: int
    locations: dict[int, dict[int, FragmentLocation]]
    suspects: dict[int, set[int]]

    @property
    def scheme(self) -> tuple[str, int, int, int]:
        return (self.ec_type, self.ndata, self.nparity, self.segment_size)


@translate_db_errors
async def load_object_segments(pool: asyncpg.Pool, object_id: str,
                               segments: Sequence[int]) -> ObjectSegments | None:
    """The fragment rows and queued reports of ``segments`` of one blob (three queries for
    any number of segments); ``None`` if the blob no longer exists."""
    async with pool.acquire() as conn:
        obj = await conn.fetchrow(
            """SELECT size, ec_type, ec_ndata, ec_nparity, segment_size FROM objects
               WHERE id = $1""", object_id)
        if obj is None:
            return None
        rows = await conn.fetch(
            """SELECT segment, frag_indexes, node_ids, volumes, offsets, lengths, checksums
               FROM segment_fragments WHERE object_id = $1 AND segment = ANY($2::int[])""",
            object_id, list(segments))
        queued = await conn.fetch(
            """SELECT segment, frag_index FROM repair_queue
               WHERE object_id = $1 AND segment = ANY($2::int[])""", object_id, list(segments))
    locations: dict[int, dict[int, FragmentLocation]] = {seg: {} for seg in segments}
    for r in rows:
        locations[r["segment"]] = segment_map(r)
    suspects: dict[int, set[int]] = {seg: set() for seg in segments}
    for r in queued:
        suspects[r["segment"]].add(r["frag_index"])
    return ObjectSegments(object_id, obj["size"], obj["ec_type"], obj["ec_ndata"],
                          obj["ec_nparity"], obj["segment_size"], locations, suspects)


@translate_db_errors
async def drop_queued(pool: asyncpg.Pool, object_id: str, segments: Sequence[int]) -> None:
    if segments:
        await pool.execute(
            "DELETE FROM repair_queue WHERE object_id = $1 AND segment = ANY($2::int[])",
            object_id, list(segments))


@translate_db_errors
async def note_failed_attempt(pool: asyncpg.Pool, object_id: str,
                              segments: Sequence[int]) -> None:
    if segments:
        await pool.execute(
            """UPDATE repair_queue SET attempts = attempts + 1, reported = now()
               WHERE object_id = $1 AND segment = ANY($2::int[])""", object_id, list(segments))


# (old location or None, new location) per fragment index of one segment
Replacements = dict[int, tuple[FragmentLocation | None, FragmentLocation]]


@translate_db_errors
async def apply_repairs(
    pool: asyncpg.Pool,
    object_id: str,
    replaced: dict[int, Replacements],
    scheme: tuple[str, int, int, int] | None = None,
) -> int:
    """Swap rebuilt fragments of several segments (``segment → replacements``) into the map
    atomically: one transaction, object and segment rows locked, each fragment changed only
    if it still points where the reconstructor saw it (same node, volume and offset; or still
    absent): a concurrent compaction or repair wins, our copy becomes garbage. Recounts
    ``missing_fragments`` and clears the segments' queue entries. Returns fragments changed,
    or -1 when the object no longer exists."""
    changed = 0
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT ec_type, ec_ndata, ec_nparity, segment_size FROM objects
               WHERE id = $1 FOR UPDATE""", object_id)
        if row is None:
            await conn.execute("DELETE FROM repair_queue WHERE object_id = $1", object_id)
            return -1
        if scheme is not None and tuple(row) != scheme:
            return 0  # the storage class changed meanwhile: these fragments are garbage
        rows = await conn.fetch(
            """SELECT segment, frag_indexes, node_ids, volumes, offsets, lengths, checksums
               FROM segment_fragments WHERE object_id = $1 AND segment = ANY($2::int[])
               ORDER BY segment FOR UPDATE""", object_id, sorted(replaced))
        maps = {r["segment"]: segment_map(r) for r in rows}
        touched: dict[int, dict[int, FragmentLocation]] = {}
        for seg, reps in sorted(replaced.items()):
            current = maps.get(seg, {})
            for index, (old, new) in sorted(reps.items()):
                now = current.get(index)
                if (now is None) if old is None else (now is not None and now[:3] == old[:3]):
                    current[index] = new
                    touched[seg] = current
                    changed += 1
        if touched:
            await conn.execute(
                "DELETE FROM segment_fragments WHERE object_id = $1 AND segment = ANY($2::int[])",
                object_id, list(touched))
            await conn.execute(INSERT_FRAGMENTS_CALL, object_id, *fragment_columns(touched))
        volumes = sorted({(new.node_id, new.volume) for reps in replaced.values()
                          for _old, new in reps.values()})
        await conn.execute(
            """INSERT INTO volumes (node_id, volume)
               SELECT * FROM unnest($1::text[], $2::int[]) ON CONFLICT DO NOTHING""",
            [n for n, _v in volumes], [v for _n, v in volumes])
        await _recount_missing(conn, object_id)
        await conn.execute(
            "DELETE FROM repair_queue WHERE object_id = $1 AND segment = ANY($2::int[])",
            object_id, sorted(replaced))
    return changed


async def _recount_missing(conn: asyncpg.Connection, object_id: str) -> None:
    await conn.execute(
        """UPDATE objects o SET missing_fragments = GREATEST(0,
               (o.size + o.segment_size - 1) / o.segment_size * (o.ec_ndata + o.ec_nparity)
               - COALESCE((SELECT sum(cardinality(f.frag_indexes)) FROM segment_fragments f
                           WHERE f.object_id = o.id), 0))
           WHERE o.id = $1""", object_id)


# -- nodes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    zone: str
    address: str
    state: str
    seconds_since_seen: float | None
    disk_id: str | None = None  # the recorded disk (``node_disks``); None before the first
    volume_base: int | None = None


@translate_db_errors
async def list_nodes(pool: asyncpg.Pool) -> list[NodeRow]:
    rows = await pool.fetch(
        """SELECT id, zone, address, state,
                  EXTRACT(EPOCH FROM now() - GREATEST(last_seen, heartbeat))::float8 AS idle,
                  disk_id::text AS disk_id, volume_base
           FROM nodes ORDER BY id""")
    return [NodeRow(r["id"], r["zone"], r["address"], r["state"], r["idle"], r["disk_id"],
                    r["volume_base"]) for r in rows]


def lost_node_ids(nodes: Iterable[NodeRow], lost_after: float) -> list[str]:
    """Nodes marked lost, or silent (no probe answer, no heartbeat) for ``lost_after`` s."""
    return sorted(n.node_id for n in nodes if n.state == "lost" or (
        n.seconds_since_seen is not None and n.seconds_since_seen > lost_after))


@translate_db_errors
async def set_node_state(pool: asyncpg.Pool, node_id: str, state: str) -> bool:
    result = await pool.execute("UPDATE nodes SET state = $2 WHERE id = $1", node_id, state)
    return result.endswith(" 1")


# -- fsck ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectRedundancy:
    """Per object: its width and k, and the fewest usable fragments any segment has."""

    object_id: str
    bucket: str
    key: str
    ndata: int
    width: int
    segments: int
    weakest: int


@translate_db_errors
async def object_redundancy(
    pool: asyncpg.Pool, unusable_nodes: Sequence[str], after: str | None, limit: int
) -> list[ObjectRedundancy]:
    """A page of blobs (rows that own fragments: object versions and multipart parts; a
    completed multipart object owns none, its parts do), ordered by id after ``after``, with
    their weakest segment's count of fragments recorded on nodes not in ``unusable_nodes``
    and on their node's current disk: a volume number below the node's ``volume_base``
    belongs to an earlier disk, gone (``node_disks``), even before the repair it was queued
    for has run."""
    rows = await pool.fetch(
        """SELECT o.id, o.bucket, o.key, o.ec_ndata, o.ec_nparity,
                  (o.size + o.segment_size - 1) / o.segment_size AS segments,
                  COALESCE((SELECT min(c) FROM (
                      SELECT s.seg, (SELECT count(*) FROM segment_fragments f
                                     CROSS JOIN LATERAL unnest(f.node_ids, f.volumes)
                                         AS n (node_id, volume)
                                     LEFT JOIN nodes d ON d.id = n.node_id
                                     WHERE f.object_id = o.id AND f.segment = s.seg
                                       AND NOT n.node_id = ANY($1::text[])
                                       AND n.volume >= COALESCE(d.volume_base, 0)) AS c
                      FROM generate_series(0, (o.size + o.segment_size - 1) / o.segment_size - 1)
                           AS s(seg)) per_segment), 0) AS weakest
           FROM objects o WHERE ($2::uuid IS NULL OR o.id > $2::uuid)
             AND o.part_count IS NULL AND NOT o.delete_marker
           ORDER BY o.id LIMIT $3""", list(unusable_nodes), after, limit)
    return [ObjectRedundancy(str(r["id"]), r["bucket"], r["key"], r["ec_ndata"],
                             r["ec_ndata"] + r["ec_nparity"], r["segments"], r["weakest"])
            for r in rows]


@translate_db_errors
async def swap_scheme(
    pool: asyncpg.Pool,
    object_id: str,
    expected: tuple[str, int, int, int],
    new: tuple[str, int, int, int],
    fragments: dict[int, dict[int, FragmentLocation]],
    missing: int,
    storage_class: str | None = None,
) -> bool:
    """Replace an object's whole fragment map and scheme (and, when given, its storage class
    name) in one transaction, if its scheme is still ``expected`` (storage-class change). The
    old fragments become garbage."""
    columns = fragment_columns(fragments)
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchrow(
            """SELECT ec_type, ec_ndata, ec_nparity, segment_size FROM objects
               WHERE id = $1 FOR UPDATE""", object_id)
        if current is None or tuple(current) != expected:
            return False
        await conn.execute("DELETE FROM segment_fragments WHERE object_id = $1", object_id)
        await conn.execute(INSERT_FRAGMENTS_CALL, object_id, *columns)
        await conn.execute(
            """UPDATE objects SET ec_type = $2, ec_ndata = $3, ec_nparity = $4,
                   segment_size = $5, missing_fragments = $6,
                   storage_class = COALESCE($7, storage_class) WHERE id = $1""",
            object_id, *new, missing, storage_class)
        await conn.execute(
            """INSERT INTO volumes (node_id, volume)
               SELECT DISTINCT * FROM unnest($1::text[], $2::int[]) ON CONFLICT DO NOTHING""",
            columns[2], columns[3])
        await conn.execute("DELETE FROM repair_queue WHERE object_id = $1", object_id)
    return True


@dataclass(frozen=True)
class Blob:
    """A row that owns fragments: its id, size, scheme and MD5 (if its ETag is one)."""

    id: str
    size: int
    scheme: tuple[str, int, int, int]
    etag: str


@translate_db_errors
async def part_blobs(pool: asyncpg.Pool, object_id: str) -> list[Blob]:
    """The part rows a completed multipart object consists of, in order."""
    rows = await pool.fetch(
        """SELECT o.id, o.size, o.ec_type, o.ec_ndata, o.ec_nparity, o.segment_size, o.etag
           FROM object_parts p JOIN objects o ON o.id = p.part_object_id
           WHERE p.object_id = $1 ORDER BY p.part_number""", object_id)
    return [Blob(str(r["id"]), r["size"], (r["ec_type"], r["ec_ndata"], r["ec_nparity"],
                                           r["segment_size"]), r["etag"]) for r in rows]


@translate_db_errors
async def set_storage_class(pool: asyncpg.Pool, object_id: str, storage_class: str,
                            scheme: tuple[str, int, int, int] | None = None) -> bool:
    """Rename an object's class without moving data (its bytes are already encoded as the
    class wants, or it is a multipart object whose parts were moved), if the row still exists
    (and still has ``scheme`` when given). ``True`` if the name changed."""
    result = await pool.execute(
        """UPDATE objects SET storage_class = $2 WHERE id = $1 AND storage_class <> $2
           AND ($3::text IS NULL OR (ec_type, ec_ndata, ec_nparity, segment_size)
                                    = ($3, $4, $5, $6))""",
        object_id, storage_class, *(scheme or (None, None, None, None)))
    return result.endswith(" 1")
