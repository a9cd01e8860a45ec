"""The heartbeat's (and the health probe's) record of a node's disk against a real PostgreSQL
(``metadata/node_disks.py``): a replaced disk queues the earlier disk's fragments in the
report's transaction, fsck stops counting them, racing heartbeats and probes queue once, and
a disk older than the recorded one is refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from origin.layout import FragmentLocation
from origin.metadata import buckets, db, objects
from origin.metadata import fragments as fmeta
from origin.metadata.models import NewObject, StorageScheme
from origin.metadata.node_disks import (
    DiskRegressed,
    NodeBeat,
    NodeDisk,
    record_disk,
    record_heartbeat,
)

SCHEME = StorageScheme("isa_l_rs_cauchy", 2, 1, 1024)


def _beat(node_id: str, disk_id: str, volume_base: int) -> NodeBeat:
    return NodeBeat(node_id, "z", f"http://{node_id}", 1 << 30, 1 << 29, disk_id, volume_base)


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(fresh_database_url, max_size=4)
    await db.migrate(pool)
    await buckets.create_bucket(pool, "b", "alice", False)
    yield pool
    await pool.close()


async def _three_nodes(pool: asyncpg.Pool) -> None:
    """Nodes n0, n1 and n2 registered, each with a disk of its own numbered from 1."""
    for node in ("n0", "n1", "n2"):
        await record_heartbeat(pool, _beat(node, str(uuid.uuid4()), 1))


async def _objects_on(pool: asyncpg.Pool, count: int, n2_volume: int) -> list[str]:
    """``count`` one-segment objects (2+1) on n0, n1, n2; n2's fragment in ``n2_volume``."""
    ids = []
    for i in range(count):
        obj = NewObject(id=str(uuid.uuid4()), bucket="b", key=f"k{n2_volume}-{i}", size=1000,
                        etag="e" * 32, content_type="text/plain", scheme=SCHEME)
        await objects.commit_object(pool, obj, {0: {
            0: FragmentLocation("n0", 1, i * 100, 10, 0),
            1: FragmentLocation("n1", 1, i * 100, 10, 1),
            2: FragmentLocation("n2", n2_volume, i * 100, 10, 2)}})
        ids.append(obj.id)
    return ids


async def _weakest(pool: asyncpg.Pool) -> dict[str, int]:
    return {o.key: o.weakest for o in await fmeta.object_redundancy(pool, [], None, 100)}


async def test_a_replaced_disk_queues_the_earlier_disks_fragments_and_fsck_drops_them(
        pool: asyncpg.Pool) -> None:
    old_disk, new_disk = str(uuid.uuid4()), str(uuid.uuid4())
    for node in ("n0", "n1", "n2"):
        assert await record_heartbeat(pool, _beat(node, str(uuid.uuid4()), 1)) is None
    assert await record_heartbeat(pool, _beat("n2", old_disk, 1)) is not None  # (test set-up)
    await pool.execute("DELETE FROM repair_queue")
    old = await _objects_on(pool, 3, n2_volume=7)
    assert set((await _weakest(pool)).values()) == {3}

    replaced = await record_heartbeat(pool, _beat("n2", new_disk, 90_000_000))
    assert replaced is not None
    assert (replaced.old_disk_id, replaced.new_disk_id) == (old_disk, new_disk)
    assert replaced.fragments_queued == 3
    queued = await pool.fetch("SELECT object_id, segment, frag_index, reason FROM repair_queue")
    assert sorted((str(r["object_id"]), r["segment"], r["frag_index"], r["reason"])
                  for r in queued) == sorted((o, 0, 2, "disk-replaced") for o in old)
    # fsck: n2's rows point below the new disk's base, so every object lacks one fragment
    assert set((await _weakest(pool)).values()) == {2}
    # the new disk's own fragments count, and its next heartbeat changes nothing
    await _objects_on(pool, 1, n2_volume=90_000_003)
    assert (await _weakest(pool))["k90000003-0"] == 3
    await pool.execute("DELETE FROM repair_queue")
    assert await record_heartbeat(pool, _beat("n2", new_disk, 90_000_000)) is None
    assert await pool.fetchval("SELECT count(*) FROM repair_queue") == 0
    row = await pool.fetchrow("SELECT disk_id, volume_base FROM nodes WHERE id = 'n2'")
    assert (str(row["disk_id"]), row["volume_base"]) == (new_disk, 90_000_000)


async def test_the_first_disk_of_a_node_and_an_upgraded_one_queue_nothing(
        pool: asyncpg.Pool) -> None:
    """A node new to the metadata, and one whose row has no disk yet (written by a build
    before disk identities), record their disk without judging any row."""
    await record_heartbeat(pool, _beat("n0", str(uuid.uuid4()), 1))
    await record_heartbeat(pool, _beat("n1", str(uuid.uuid4()), 1))
    await pool.execute("INSERT INTO nodes (id, zone, address) VALUES ('n2', 'z', 'a')")
    await _objects_on(pool, 2, n2_volume=3)
    assert await record_heartbeat(pool, _beat("n2", str(uuid.uuid4()), 3)) is None
    assert await pool.fetchval("SELECT count(*) FROM repair_queue") == 0
    assert set((await _weakest(pool)).values()) == {3}


async def test_racing_heartbeats_of_a_new_disk_queue_its_predecessors_rows_once(
        pool: asyncpg.Pool) -> None:
    await _three_nodes(pool)
    await _objects_on(pool, 5, n2_volume=2)
    new_disk = str(uuid.uuid4())
    results = await asyncio.gather(*(record_heartbeat(pool, _beat("n2", new_disk, 50_000_000))
                                     for _ in range(4)))
    changes = [r for r in results if r is not None]
    assert len(changes) == 1 and changes[0].fragments_queued == 5
    assert await pool.fetchval("SELECT count(*) FROM repair_queue") == 5


async def test_a_disk_numbering_below_the_recorded_one_is_refused(pool: asyncpg.Pool) -> None:
    """An earlier disk come back (or a clock set back) would have its rows judged by numbers
    that may alias the recorded disk's: the heartbeat changes nothing."""
    newer = str(uuid.uuid4())
    await record_heartbeat(pool, _beat("n2", newer, 60_000_000))
    before = await pool.fetchrow("SELECT * FROM nodes WHERE id = 'n2'")
    with pytest.raises(DiskRegressed, match="below 60000000"):
        await record_heartbeat(pool, _beat("n2", str(uuid.uuid4()), 59_999_000))
    assert await pool.fetchrow("SELECT * FROM nodes WHERE id = 'n2'") == before


async def test_a_probe_records_a_replaced_disk_as_a_heartbeat_does(pool: asyncpg.Pool) -> None:
    """``record_disk`` (the origin's health probe of a node without heartbeats) queues the
    earlier disk's rows, touches no heartbeat, and a second probe of the disk does nothing."""
    await _three_nodes(pool)
    old = await _objects_on(pool, 3, n2_volume=4)
    before = await pool.fetchrow("SELECT heartbeat, zone, capacity FROM nodes WHERE id = 'n2'")
    new_disk = str(uuid.uuid4())
    replaced = await record_disk(pool, NodeDisk("n2", new_disk, 70_000_000))
    assert replaced is not None and replaced.fragments_queued == 3
    assert sorted(str(r["object_id"]) for r in await pool.fetch(
        "SELECT object_id FROM repair_queue WHERE reason = 'disk-replaced'")) == sorted(old)
    assert set((await _weakest(pool)).values()) == {2}
    assert await pool.fetchrow(
        "SELECT heartbeat, zone, capacity FROM nodes WHERE id = 'n2'") == before
    assert await record_disk(pool, NodeDisk("n2", new_disk, 70_000_000)) is None
    assert await pool.fetchval("SELECT count(*) FROM repair_queue") == 3


async def test_a_probe_of_a_node_without_a_recorded_disk_or_row_queues_nothing(
        pool: asyncpg.Pool) -> None:
    """A node listed in ``--nodes`` whose row has no disk yet: the probe records its first
    disk and judges no row. A node without a row: nothing is written."""
    await record_heartbeat(pool, _beat("n0", str(uuid.uuid4()), 1))
    await record_heartbeat(pool, _beat("n1", str(uuid.uuid4()), 1))
    await pool.execute("INSERT INTO nodes (id, zone, address) VALUES ('n2', 'z', 'a')")
    await _objects_on(pool, 2, n2_volume=3)
    first = str(uuid.uuid4())
    assert await record_disk(pool, NodeDisk("n2", first, 3)) is None
    row = await pool.fetchrow("SELECT disk_id::text, volume_base FROM nodes WHERE id = 'n2'")
    assert (row["disk_id"], row["volume_base"]) == (first, 3)
    assert await record_disk(pool, NodeDisk("n9", str(uuid.uuid4()), 3)) is None
    assert await pool.fetchval("SELECT count(*) FROM nodes WHERE id = 'n9'") == 0
    assert await pool.fetchval("SELECT count(*) FROM repair_queue") == 0


async def test_heartbeats_and_probes_racing_over_one_new_disk_queue_once(
        pool: asyncpg.Pool) -> None:
    await _three_nodes(pool)
    await _objects_on(pool, 5, n2_volume=2)
    new_disk = str(uuid.uuid4())
    results = await asyncio.gather(
        record_heartbeat(pool, _beat("n2", new_disk, 50_000_000)),
        record_disk(pool, NodeDisk("n2", new_disk, 50_000_000)),
        record_heartbeat(pool, _beat("n2", new_disk, 50_000_000)),
        record_disk(pool, NodeDisk("n2", new_disk, 50_000_000)))
    changes = [r for r in results if r is not None]
    assert len(changes) == 1 and changes[0].fragments_queued == 5
    assert await pool.fetchval("SELECT count(*) FROM repair_queue") == 5


async def test_a_probe_of_a_disk_numbering_below_the_recorded_one_changes_nothing(
        pool: asyncpg.Pool) -> None:
    for node in ("n0", "n1"):
        await record_heartbeat(pool, _beat(node, str(uuid.uuid4()), 1))
    await record_heartbeat(pool, _beat("n2", str(uuid.uuid4()), 60_000_000))
    await _objects_on(pool, 2, n2_volume=60_000_001)
    before = await pool.fetchrow("SELECT * FROM nodes WHERE id = 'n2'")
    with pytest.raises(DiskRegressed, match="below 60000000"):
        await record_disk(pool, NodeDisk("n2", str(uuid.uuid4()), 59_999_000))
    assert await pool.fetchrow("SELECT * FROM nodes WHERE id = 'n2'") == before
    assert await pool.fetchval("SELECT count(*) FROM repair_queue") == 0
