"""The fragment map as one row per segment (migration 0500) against a real PostgreSQL: old
per-fragment rows migrated, and the workers' queries (references per volume, relocation,
repairs, fsck counts) on the new layout."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from cdn.migrations import migration_files
from origin.config import NodeSpec
from origin.layout import FragmentLocation
from origin.metadata import buckets, db, nodes, objects
from origin.metadata import fragments as fmeta
from origin.metadata.models import NewObject, StorageScheme
from origin.metadata.volume_memo import KnownVolumes

PACKAGE = "origin.metadata.migrations"
SCHEME = StorageScheme("isa_l_rs_cauchy", 2, 1, 1024)


async def _migrate_up_to(conn: asyncpg.Connection, last: int) -> None:
    """The origin's migrations up to ``last`` only, recorded as ``apply_migrations`` does,
    so a later ``db.migrate`` applies the rest."""
    await conn.execute(
        """CREATE TABLE schema_migrations (component text NOT NULL, version integer NOT NULL,
               name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
               PRIMARY KEY (component, version))""")
    for version, name, sql in migration_files(PACKAGE):
        if version <= last:
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ('origin', $1, $2)",
                               version, name)


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(fresh_database_url, max_size=4)
    await db.migrate(pool)
    await nodes.upsert_nodes(pool, [NodeSpec(f"n{i}", "z", f"http://h:{i}") for i in range(4)])
    await buckets.create_bucket(pool, "b", "alice", False)
    yield pool
    await pool.close()


def _object(key: str, size: int = 3000, **extra: object) -> NewObject:
    return NewObject(id=str(uuid.uuid4()), bucket="b", key=key, size=size, etag="e" * 32,
                     content_type="text/plain", scheme=SCHEME, **extra)  # type: ignore[arg-type]


async def test_old_fragment_rows_become_one_row_per_segment(fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await _migrate_up_to(conn, 400)
        await conn.execute("INSERT INTO buckets (name, owner) VALUES ('b', 'alice')")
        await conn.execute("""INSERT INTO nodes (id, zone, address)
                              SELECT 'n' || i, 'z', 'a' FROM generate_series(0, 3) i""")
        whole, degraded, empty = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        for oid, key, size, missing in ((whole, "whole", 3000, 0),
                                        (degraded, "degraded", 1500, 1),
                                        (empty, "empty", 0, 0)):
            await conn.execute(
                """INSERT INTO objects (id, bucket, key, size, etag, content_type, ec_type,
                       ec_ndata, ec_nparity, segment_size, missing_fragments)
                   VALUES ($1, 'b', $2, $3, 'e', 't', 'isa_l_rs_cauchy', 2, 1, 1024, $4)""",
                oid, key, size, missing)
        # whole: 3 segments x 3 fragments, inserted out of index order; degraded: segment 1
        # lacks fragment 1, and two of its fragments share node n3's volume 5.
        old_rows = [(whole, s, i, f"n{i}", 1, 100 * s + i, 10, 1000 + 10 * s + i)
                    for s in range(3) for i in (2, 0, 1)]
        old_rows += [(degraded, 0, 0, "n3", 5, 0, 20, 1), (degraded, 0, 1, "n3", 5, 40, 20, 2),
                     (degraded, 0, 2, "n2", 5, 0, 20, 3), (degraded, 1, 0, "n0", 6, 8, 20, 4),
                     (degraded, 1, 2, "n1", 6, 8, 20, 5)]
        await conn.executemany(
            """INSERT INTO fragments (object_id, segment, frag_index, node_id, volume, "offset",
                   length, checksum) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""", old_rows)
    finally:
        await conn.close()

    pool = await db.create_pool(fresh_database_url, max_size=2)
    try:
        applied = await db.migrate(pool)
        assert applied[0] == "0500_segment_fragments.sql"
        assert await pool.fetchval("SELECT count(*) FROM segment_fragments") == 5
        row = await pool.fetchrow(
            "SELECT * FROM segment_fragments WHERE object_id = $1 AND segment = 1", degraded)
        assert (row["frag_indexes"], row["node_ids"], row["offsets"]) == ([0, 2], ["n0", "n1"],
                                                                          [8, 8])
        # The view gives back exactly the old rows.
        view = await pool.fetch('SELECT object_id, segment, frag_index, node_id, volume, '
                                '"offset", length, checksum FROM fragments')
        assert sorted(tuple(r) for r in view) == sorted(old_rows)
        # And the origin reads the migrated map as it read the old one.
        record, first = await objects.get_object_and_map(pool, "b", "whole", 2)
        assert record is not None and record.id == str(whole)
        assert first == {s: {i: FragmentLocation(f"n{i}", 1, 100 * s + i, 10, 1000 + 10 * s + i)
                             for i in range(3)} for s in range(2)}
        assert (await objects.get_fragments(pool, str(degraded), 0, 1))[1] == {
            0: FragmentLocation("n0", 6, 8, 20, 4), 2: FragmentLocation("n1", 6, 8, 20, 5)}
        assert await objects.get_object_and_map(pool, "b", "empty", 2) == (
            await objects.get_object(pool, "b", "empty"), {})
        assert await fmeta.referenced_offsets(pool, "n3", 5) == {0, 40}
        assert await fmeta.count_references(pool, "n3", 5) == 2
        assert await fmeta.count_references(pool, "n3", 6) == 0
        todo = await fmeta.segments_to_repair(pool, [], 10)
        assert todo == [(str(degraded), 1)]
        # Deleting an object still takes its (migrated) map along.
        assert await objects.delete_object(pool, "b", "whole")
        assert await pool.fetchval("SELECT count(*) FROM segment_fragments") == 2
    finally:
        await pool.close()


async def test_lost_node_segments_come_from_the_node_index(fresh_database_url: str) -> None:
    """A database migrated from 0510 gets the node index (0520); the reconstructor's
    lost-node query answers from it, not by reading the table until it finds rows still on
    the node (the last passes of a repair, when none are left, read all of it)."""
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await _migrate_up_to(conn, 510)
        await conn.execute("INSERT INTO buckets (name, owner) VALUES ('b', 'alice')")
        await conn.execute(
            """INSERT INTO objects (id, bucket, key, size, etag, content_type, ec_type,
                   ec_ndata, ec_nparity, segment_size)
               SELECT md5(i::text)::uuid, 'b', 'k' || i, 1024, 'e', 't', 'isa_l_rs_cauchy',
                   2, 1, 1024 FROM generate_series(0, 19999) i""")
        # n0..n2 hold every segment; the lost node n9 still holds a fragment of the last 5
        # (the others were rebuilt elsewhere already).
        await conn.execute(
            """INSERT INTO segment_fragments
               SELECT md5(i::text)::uuid, 0, '{0,1,2}',
                   ARRAY['n0', 'n1', CASE WHEN i >= 19995 THEN 'n9' ELSE 'n2' END],
                   '{1,1,1}', ARRAY[i * 100, i * 100, i * 100]::bigint[], '{10,10,10}',
                   '{1,2,3}' FROM generate_series(0, 19999) i""")
    finally:
        await conn.close()

    pool = await db.create_pool(fresh_database_url, max_size=2)
    try:
        applied = await db.migrate(pool)
        assert "0520_segment_fragments_by_node.sql" in applied
        await pool.execute("ANALYZE segment_fragments")
        todo = await fmeta.segments_to_repair(pool, ["n9"], 100)
        assert sorted(todo) == sorted((str(uuid.UUID(hex=h)), 0) for h in await pool.fetchval(
            "SELECT array_agg(md5(i::text)) FROM generate_series(19995, 19999) i"))
        assert len(await fmeta.segments_to_repair(pool, ["n9"], 3)) == 3
        assert await fmeta.segments_to_repair(pool, ["n8"], 100) == []  # nothing left
        for node in ("n9", "n8"):
            plan = "\n".join(r[0] for r in await pool.fetch(
                """EXPLAIN SELECT object_id, segment FROM segment_fragments
                   WHERE node_ids && $1::text[] LIMIT 100""", [node]))
            assert "segment_fragments_by_node" in plan and "Seq Scan" not in plan, plan
    finally:
        await pool.close()


async def test_multi_segment_commit_groups_fragments_by_segment(pool: asyncpg.Pool) -> None:
    obj = _object("k")
    fragment_map = {s: {i: FragmentLocation(f"n{i}", 1, 100 * s + i, 10, i) for i in (2, 0, 1)}
                    for s in range(3)}
    await objects.commit_object(pool, obj, fragment_map)
    rows = await pool.fetch("SELECT segment, frag_indexes FROM segment_fragments "
                            "WHERE object_id = $1 ORDER BY segment", uuid.UUID(obj.id))
    assert [(r["segment"], r["frag_indexes"]) for r in rows] == [(s, [2, 0, 1]) for s in range(3)]
    assert await objects.get_fragments(pool, obj.id, 0, 2) == fragment_map


async def test_volume_queries_pick_the_elements_of_one_node_and_volume(
        pool: asyncpg.Pool) -> None:
    """Rows are found through the GIN index of (node, volume) places; within a row only the
    elements on that node and volume count (n1 volume 1 is not n1 volume 11, nor n11)."""
    a, b = _object("a"), _object("b")
    await objects.commit_object(pool, a, {0: {0: FragmentLocation("n1", 1, 0, 10, 1),
                                              1: FragmentLocation("n1", 11, 0, 10, 2),
                                              2: FragmentLocation("n2", 1, 64, 10, 3)}})
    await objects.commit_object(pool, b, {0: {0: FragmentLocation("n1", 1, 32, 10, 4),
                                              1: FragmentLocation("n2", 1, 0, 10, 5)},
                                          1: {0: FragmentLocation("n1", 1, 96, 10, 6)}})
    assert await fmeta.referenced_offsets(pool, "n1", 1) == {0, 32, 96}
    # a's row holds two fragments of n1: the one in volume 11 is its second
    assert await fmeta.referenced_offsets(pool, "n1", 11) == {0}
    c = _object("c")
    await objects.commit_object(pool, c, {0: {0: FragmentLocation("n3", 11, 8, 10, 7),
                                              1: FragmentLocation("n3", 11, 40, 10, 8)}})
    assert await fmeta.referenced_offsets(pool, "n3", 11) == {8, 40}
    assert await fmeta.referenced_offsets(pool, "n3", 1) == set()
    assert await fmeta.count_references(pool, "n2", 1) == 2
    refs = await fmeta.fragments_in_range(pool, "n1", 1, 10, 100)
    assert sorted((r.object_id, r.segment, r.frag_index) for r in refs) == sorted(
        [(b.id, 0, 0), (b.id, 1, 0)])
    absent = await fmeta.fragments_absent_from(pool, "n1", {1: 64})
    assert sorted((r.object_id, r.segment, r.frag_index) for r in absent) == sorted(
        [(a.id, 0, 1), (b.id, 1, 0)])  # volume 11 is unknown, offset 96 past volume 1's end
    async with pool.acquire() as conn, conn.transaction():
        # A table this small would be scanned whole; on a big one the index is the only way.
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetch(f"EXPLAIN SELECT s.offsets[p] {fmeta._IN_VOLUME}", "n1", 1)
    assert "segment_fragments_by_volume" in " ".join(r[0] for r in plan)


async def test_relocation_moves_only_the_named_elements(pool: asyncpg.Pool) -> None:
    obj = _object("r")
    await objects.commit_object(pool, obj, {
        0: {0: FragmentLocation("n1", 1, 0, 10, 1), 1: FragmentLocation("n2", 1, 0, 10, 2)},
        1: {0: FragmentLocation("n1", 1, 40, 10, 3), 1: FragmentLocation("n1", 2, 0, 10, 4)}})
    moved = await fmeta.relocate_references(pool, "n1", 1, [(0, 3, 500), (40, 3, 520),
                                                            (999, 3, 540)])
    assert moved == 2
    assert await objects.get_fragments(pool, obj.id, 0, 1) == {
        0: {0: FragmentLocation("n1", 3, 500, 10, 1), 1: FragmentLocation("n2", 1, 0, 10, 2)},
        1: {0: FragmentLocation("n1", 3, 520, 10, 3), 1: FragmentLocation("n1", 2, 0, 10, 4)}}
    assert await fmeta.count_references(pool, "n1", 1) == 0
    assert await fmeta.referenced_offsets(pool, "n1", 3) == {500, 520}
    assert await pool.fetchval("SELECT count(*) FROM volumes WHERE node_id = 'n1' "
                               "AND volume = 3") == 1


async def test_repairs_apply_only_where_the_map_still_points(pool: asyncpg.Pool) -> None:
    obj = _object("p", size=1500, missing_fragments=1)
    old = FragmentLocation("n0", 1, 0, 10, 1)
    await objects.commit_object(pool, obj, {0: {0: old, 1: FragmentLocation("n1", 1, 0, 10, 2),
                                                2: FragmentLocation("n2", 1, 0, 10, 3)},
                                            1: {0: FragmentLocation("n0", 1, 40, 10, 4),
                                                2: FragmentLocation("n2", 1, 40, 10, 5)}})
    stale = FragmentLocation("n0", 9, 9, 10, 1)  # not where fragment 0 of segment 1 is
    new = [FragmentLocation("n3", 1, 100 * i, 10, i) for i in range(3)]
    changed = await fmeta.apply_repairs(pool, obj.id, {
        0: {0: (old, new[0])},  # applied: still points there
        1: {1: (None, new[1]),  # applied: still absent
            0: (stale, new[2])}})  # refused: the map moved on
    assert changed == 2
    got = await objects.get_fragments(pool, obj.id, 0, 1)
    assert got[0][0] == new[0] and got[1] == {0: FragmentLocation("n0", 1, 40, 10, 4),
                                              1: new[1], 2: FragmentLocation("n2", 1, 40, 10, 5)}
    assert await pool.fetchval("SELECT missing_fragments FROM objects WHERE id = $1",
                               uuid.UUID(obj.id)) == 0
    # A second, identical repair finds nothing to do (the old location is gone).
    assert await fmeta.apply_repairs(pool, obj.id, {0: {0: (old, new[0])}}) == 0
    weakest = await fmeta.object_redundancy(pool, ["n3"], None, 10)
    assert [(w.object_id, w.weakest) for w in weakest] == [(obj.id, 2)]


async def test_storage_class_swap_replaces_the_whole_map(pool: asyncpg.Pool) -> None:
    obj = _object("s", size=1500)
    await objects.commit_object(pool, obj, {s: {i: FragmentLocation(f"n{i}", 1, s, 10, i)
                                                for i in range(3)} for s in range(2)})
    replacement = {0: {i: FragmentLocation("n3", 2, i, 10, i) for i in range(4)}}
    assert await fmeta.swap_scheme(pool, obj.id, ("isa_l_rs_cauchy", 2, 1, 1024),
                                   ("replicated", 1, 3, 2048), replacement, 0)
    assert await objects.get_fragments(pool, obj.id, 0, 1) == {0: replacement[0], 1: {}}


async def test_commit_upserts_volumes_only_for_pairs_not_yet_known(pool: asyncpg.Pool) -> None:
    """With the origin's memo of committed (node, volume) pairs, a PUT whose pairs are all
    known skips the ``volumes`` upsert; one new pair upserts them all."""
    known = KnownVolumes()
    first = {0: {i: FragmentLocation(f"n{i}", 1, 0, 10, i) for i in range(3)}}
    await objects.commit_object(pool, _object("v1"), first, known_volumes=known)
    assert all((f"n{i}", 1) in known for i in range(3))
    assert await pool.fetchval("SELECT count(*) FROM volumes") == 3

    await pool.execute("DELETE FROM volumes")  # so a skipped upsert shows
    await objects.commit_object(pool, _object("v2"), first, known_volumes=known)
    assert await pool.fetchval("SELECT count(*) FROM volumes") == 0

    second = {0: {**first[0], 2: FragmentLocation("n2", 2, 0, 10, 2)}}
    await objects.commit_object(pool, _object("v3"), second, known_volumes=known)
    rows = await pool.fetch("SELECT node_id, volume FROM volumes ORDER BY 1, 2")
    assert [tuple(r) for r in rows] == [("n0", 1), ("n1", 1), ("n2", 2)]
    assert ("n2", 2) in known

    await pool.execute("DELETE FROM volumes")
    await objects.commit_object(pool, _object("v4"), first)  # no memo: always upserted
    assert await pool.fetchval("SELECT count(*) FROM volumes") == 3


async def test_a_wiped_nodes_new_volume_gets_its_row(pool: asyncpg.Pool) -> None:
    """n2 wrote volumes 1 and 2, the GC deleted volume 1 (and its row), then n2's directory
    was wiped and it starts again at volume 1: the memo holds (n2, 1), but the commit sees a
    volume below n2's highest and upserts the row again."""
    known = KnownVolumes()
    one = {0: {i: FragmentLocation(f"n{i}", 1, 0, 10, i) for i in range(3)}}
    two = {0: {**one[0], 2: FragmentLocation("n2", 2, 0, 10, 2)}}
    await objects.commit_object(pool, _object("w1"), one, known_volumes=known)
    await objects.commit_object(pool, _object("w2"), two, known_volumes=known)
    await fmeta.forget_volume(pool, "n2", 1)
    await objects.commit_object(pool, _object("w3"), one, known_volumes=known)
    assert await pool.fetchval(
        "SELECT count(*) FROM volumes WHERE node_id = 'n2' AND volume = 1") == 1
