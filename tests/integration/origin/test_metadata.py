"""The metadata repository against a real, fresh PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from origin.config import NodeSpec
from origin.errors import BucketAlreadyExists, BucketNotEmpty, NoSuchBucket
from origin.layout import FragmentLocation
from origin.metadata import buckets, db, nodes, objects
from origin.metadata.models import NewObject, StorageScheme

SCHEME = StorageScheme("isa_l_rs_cauchy", 2, 1, 1024)


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(fresh_database_url, max_size=4)
    assert (await db.migrate(pool))[0] == "0001_init.sql"  # later migrations follow
    assert await db.migrate(pool) == []  # idempotent
    await nodes.upsert_nodes(pool, [NodeSpec(f"n{i}", "z", f"http://h:{i}") for i in range(3)])
    await buckets.create_bucket(pool, "b", "alice", False)
    yield pool
    await pool.close()


def _object(key: str, size: int = 10, **extra: object) -> NewObject:
    return NewObject(id=str(uuid.uuid4()), bucket="b", key=key, size=size, etag="e" * 32,
                     content_type="text/plain", scheme=SCHEME, **extra)  # type: ignore[arg-type]


def _fragments(segments: int) -> dict[int, dict[int, FragmentLocation]]:
    return {s: {i: FragmentLocation(f"n{i}", 1, 100 * s + i, 10, 1234) for i in range(3)}
            for s in range(segments)}


async def test_commit_replaces_atomically_and_cascades_fragments(pool: asyncpg.Pool) -> None:
    first = _object("k", surrogate_keys=("a", "b"), metadata={"x": "1"})
    record = await objects.commit_object(pool, first, _fragments(3))
    assert record.surrogate_keys == ("a", "b") and record.metadata == {"x": "1"}
    assert record.last_modified.tzinfo is not None
    fragments = await objects.get_fragments(pool, first.id, 1, 2)
    assert sorted(fragments) == [1, 2] and sorted(fragments[1]) == [0, 1, 2]
    assert fragments[1][2] == FragmentLocation("n2", 1, 102, 10, 1234)

    second = _object("k", missing_fragments=1)
    await objects.commit_object(pool, second, {0: {0: FragmentLocation("n0", 2, 0, 10, 1)}})
    current = await objects.get_object(pool, "b", "k")
    assert current is not None and current.id == second.id and current.missing_fragments == 1
    count = await pool.fetchval("SELECT count(*) FROM fragments WHERE object_id = $1",
                                uuid.UUID(first.id))
    assert count == 0
    volumes = await pool.fetch("SELECT node_id, volume FROM volumes ORDER BY 1, 2")
    assert [tuple(v) for v in volumes] == [("n0", 1), ("n0", 2), ("n1", 1), ("n2", 1)]


async def test_commit_into_a_missing_bucket(pool: asyncpg.Pool) -> None:
    obj = NewObject(id=str(uuid.uuid4()), bucket="nope", key="k", size=0, etag="e",
                    content_type="x", scheme=SCHEME)
    with pytest.raises(NoSuchBucket):
        await objects.commit_object(pool, obj, {})


async def test_bucket_rules(pool: asyncpg.Pool) -> None:
    assert await buckets.create_bucket(pool, "b", "alice", True) is False
    with pytest.raises(BucketAlreadyExists):
        await buckets.create_bucket(pool, "b", "bob", False)
    await objects.commit_object(pool, _object("k"), {})
    with pytest.raises(BucketNotEmpty):
        await buckets.delete_bucket(pool, "b")
    assert await objects.delete_object(pool, "b", "k") is True
    assert await objects.delete_object(pool, "b", "k") is False
    await buckets.delete_bucket(pool, "b")
    with pytest.raises(NoSuchBucket):
        await buckets.delete_bucket(pool, "b")


async def test_listing_with_delimiter_and_markers(pool: asyncpg.Pool) -> None:
    keys = ["a", "p/1", "p/2", "p/q/3", "pz", "q/1"]
    for key in keys:
        await objects.commit_object(pool, _object(key), {})
    page = await objects.list_objects(pool, "b", delimiter="/", max_keys=2)
    assert [c.key for c in page.contents] == ["a"] and page.common_prefixes == ["p/"]
    assert page.truncated and page.resume is not None
    page = await objects.list_objects(pool, "b", delimiter="/", resume=page.resume)
    assert [c.key for c in page.contents] == ["pz"] and page.common_prefixes == ["q/"]
    assert not page.truncated
    # A V1-style marker naming a common prefix continues after everything under it.
    page = await objects.list_objects(pool, "b", delimiter="/", resume=("p/", False))
    assert [c.key for c in page.contents] == ["pz"]
    page = await objects.list_objects(pool, "b", prefix="p/", max_keys=10)
    assert [c.key for c in page.contents] == ["p/1", "p/2", "p/q/3"]
    page = await objects.list_objects(pool, "b", prefix="p/", resume=("p/1", False))
    assert [c.key for c in page.contents] == ["p/2", "p/q/3"]
    page = await objects.list_objects(pool, "b", max_keys=0)
    assert page.contents == [] and not page.truncated


async def test_nodes_are_upserted_and_touched(pool: asyncpg.Pool) -> None:
    await nodes.upsert_nodes(pool, [NodeSpec("n0", "z9", "http://new:1")])
    await nodes.touch_nodes(pool, ["n0"])
    row = await pool.fetchrow("SELECT zone, address, last_seen FROM nodes WHERE id = 'n0'")
    assert row["zone"] == "z9" and row["address"] == "http://new:1" and row["last_seen"]


async def test_object_and_its_first_map_come_in_one_query(pool: asyncpg.Pool) -> None:
    obj = _object("m", size=3000)
    await objects.commit_object(pool, obj, _fragments(3))
    record, fragment_map = await objects.get_object_and_map(pool, "b", "m", 2)
    assert record is not None and record.id == obj.id
    assert sorted(fragment_map) == [0, 1]  # only the segments asked for
    assert fragment_map == await objects.get_fragments(pool, obj.id, 0, 1)
    empty = _object("empty", size=0)
    await objects.commit_object(pool, empty, {})
    record, fragment_map = await objects.get_object_and_map(pool, "b", "empty", 2)
    assert record is not None and record.id == empty.id and fragment_map == {}
    assert await objects.get_object_and_map(pool, "b", "absent", 2) == (None, {})


async def test_fragment_columns_round_trip_any_node_id_and_large_numbers(
    pool: asyncpg.Pool,
) -> None:
    """The commit sends the fragment columns as array literals: quotes, backslashes, commas,
    braces, spaces and NULL-looking names come back exactly, as do 64-bit offsets."""
    odd = ['n "quoted"', "back\\slash", "a,b", "{brace}", " spaced ", "NULL", "ünï"]
    await nodes.upsert_nodes(pool, [NodeSpec(n, "z", "http://h:1") for n in odd])
    obj = _object("odd", size=5000)
    fragment_map = {0: {i: FragmentLocation(n, 7 + i, (1 << 40) + i, 10, 0xFFFFFFFF - i)
                        for i, n in enumerate(odd)}}
    await objects.commit_object(pool, obj, fragment_map)
    assert await objects.get_fragments(pool, obj.id, 0, 0) == fragment_map
    stored = await pool.fetch("SELECT node_id FROM volumes WHERE volume >= 7")
    assert sorted(r["node_id"] for r in stored) == sorted(odd)


async def test_concurrent_commits_of_one_key_leave_one_latest_version(
        pool: asyncpg.Pool) -> None:
    import asyncio

    versions = [_object("hot") for _ in range(12)]
    await asyncio.gather(*(objects.commit_object(pool, v, _fragments(1)) for v in versions))
    rows = await pool.fetch("SELECT id FROM objects WHERE bucket = 'b' AND key = 'hot'")
    assert len(rows) == 1 and str(rows[0]["id"]) in {v.id for v in versions}
    left = await pool.fetchval("SELECT count(*) FROM fragments WHERE object_id = $1",
                               rows[0]["id"])
    assert left == 3
