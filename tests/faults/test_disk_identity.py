"""Disk identity of storage nodes on real processes (own fault cluster: PostgreSQL, 7 nodes,
origin): a wiped disk is a new disk with volume numbers above the old one's, the origin's
accounting sees its lost fragments from the new disk's first heartbeat (or, for a node that
sends none, from the origin's first health probe of it), and a plain restart or an upgrade
from a data dir without an identity changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from origin.client import S3Client
from origin.fsck import fsck
from origin.storagenode.identity import IDENTITY_FILE
from origin.workers.base import ClusterContext
from origin.workers.reconstructor import Reconstructor
from tests.faults.cluster import FaultCluster


async def _in_thread(fn: Callable[..., object], *args: object) -> object:
    return await asyncio.to_thread(fn, *args)


def _health_disk(faults: FaultCluster, node_id: str) -> str:
    with urllib.request.urlopen(faults.nodes[node_id].url + "/_health", timeout=2) as resp:
        return str(json.load(resp)["disk_id"])


def _volume_files(faults: FaultCluster, node_id: str) -> list[int]:
    return sorted(int(p.stem) for p in (faults.data_dir(node_id) / "volumes").glob("*.vol"))


async def _until(check: Callable[[], Awaitable[bool]], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _recorded_disk(pool: asyncpg.Pool, node_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT disk_id::text AS disk_id, volume_base, disk_since, heartbeat FROM nodes"
        " WHERE id = $1", node_id)
    assert row is not None
    return row


async def _disk_recorded(pool: asyncpg.Pool, node_id: str, disk_id: str,
                         within: float = 15.0) -> None:
    async def recorded() -> bool:
        return (await _recorded_disk(pool, node_id))["disk_id"] == disk_id
    await _until(recorded, f"the metadata to record disk {disk_id} of {node_id}", within)


async def _put_all(s3: S3Client, count: int, size: int = 150_000) -> tuple[str, dict[str, bytes]]:
    bucket = f"d-{uuid.uuid4().hex[:10]}"
    await s3.create_bucket(bucket)
    bodies = {f"o{i}": os.urandom(size + i) for i in range(count)}
    for key, body in bodies.items():
        await s3.put_object(bucket, key, body)
    return bucket, bodies


async def _keys_on(pool: asyncpg.Pool, bucket: str, node_id: str) -> set[str]:
    rows = await pool.fetch(
        """SELECT DISTINCT o.key FROM fragments f JOIN objects o ON o.id = f.object_id
           WHERE o.bucket = $1 AND o.is_latest AND f.node_id = $2""", bucket, node_id)
    return {r["key"] for r in rows}


async def _disk_replaced_rows_on(pool: asyncpg.Pool, node_id: str) -> int:
    return int(await pool.fetchval(
        """SELECT count(*) FROM repair_queue q JOIN fragments f
             ON (f.object_id, f.segment, f.frag_index) = (q.object_id, q.segment, q.frag_index)
           WHERE q.reason = 'disk-replaced' AND f.node_id = $1""", node_id))


async def _read_back(s3: S3Client, bucket: str, bodies: dict[str, bytes]) -> None:
    """Every object of ``bodies`` reads back exactly."""
    for key, body in bodies.items():
        assert await s3.get_object(bucket, key) == body


async def _whole_by_fsck(ctx: ClusterContext, bucket: str) -> None:
    """fsck finds no object of ``bucket`` degraded or lost."""
    report = await fsck(ctx)
    assert not [n for n in report.degraded + report.lost if n.startswith(bucket + "/")]


async def test_a_wiped_disk_is_a_new_disk_numbering_above_the_old_ones(
    faults: FaultCluster, s3: S3Client, ctx: ClusterContext
) -> None:
    await _put_all(s3, 6)
    old_disk = _health_disk(faults, "node-4")
    await _disk_recorded(ctx.pool, "node-4", old_disk)
    old_volumes = _volume_files(faults, "node-4")
    assert old_volumes
    await _in_thread(faults.wipe_node, "node-4")
    new_disk = _health_disk(faults, "node-4")
    assert new_disk != old_disk
    await _disk_recorded(ctx.pool, "node-4", new_disk)
    new_volumes = _volume_files(faults, "node-4")
    assert new_volumes and min(new_volumes) > max(old_volumes), (old_volumes, new_volumes)
    assert (await _recorded_disk(ctx.pool, "node-4"))["volume_base"] == min(new_volumes)
    print(f"\n[disk identity] node-4 volumes {old_volumes} -> {new_volumes}")


async def test_right_after_a_wiped_disk_registers_fsck_sees_the_loss_and_repair_heals_it(
    faults: FaultCluster, s3: S3Client, ctx: ClusterContext
) -> None:
    """No scrub in between: the origin (and its workers) is down from before the wipe, so
    only the new disk's heartbeat can have told the metadata."""
    bucket, bodies = await _put_all(s3, 12)
    affected = await _keys_on(ctx.pool, bucket, "node-3")
    assert affected
    old_disk = _health_disk(faults, "node-3")
    await _disk_recorded(ctx.pool, "node-3", old_disk)
    await _in_thread(faults.kill_origin)
    try:
        await _in_thread(faults.wipe_node, "node-3")
        await _disk_recorded(ctx.pool, "node-3", _health_disk(faults, "node-3"))
        await _degraded_exactly(ctx, bucket, affected)
        _queued, rebuilt = await _queued_and_rebuilt(ctx, bucket, "node-3")
    finally:
        await _in_thread(faults.restart_origin)
    await _in_thread(faults.wait_nodes_up)
    await _read_back(s3, bucket, bodies)
    print(f"\n[disk identity] wiped node-3: fsck saw {len(affected)} objects degraded at "
          f"once; {rebuilt} fragments rebuilt")


async def test_a_restart_without_a_wipe_keeps_the_disk_and_queues_nothing(
    faults: FaultCluster, s3: S3Client, ctx: ClusterContext
) -> None:
    bucket, bodies = await _put_all(s3, 6)
    disk = _health_disk(faults, "node-5")
    await _disk_recorded(ctx.pool, "node-5", disk)
    before = await _recorded_disk(ctx.pool, "node-5")
    identity_file = (faults.data_dir("node-5") / IDENTITY_FILE).read_text()
    volumes = _volume_files(faults, "node-5")
    await _in_thread(faults.kill_node, "node-5")
    await _in_thread(faults.start_node, "node-5")
    assert _health_disk(faults, "node-5") == disk

    async def beat_after_restart() -> bool:
        return (await _recorded_disk(ctx.pool, "node-5"))["heartbeat"] > before["heartbeat"]
    await _until(beat_after_restart, "node-5's heartbeat after its restart")
    after = await _recorded_disk(ctx.pool, "node-5")
    assert (after["disk_id"], after["volume_base"], after["disk_since"]) == \
        (before["disk_id"], before["volume_base"], before["disk_since"])
    assert (faults.data_dir("node-5") / IDENTITY_FILE).read_text() == identity_file
    assert _volume_files(faults, "node-5")[:len(volumes)] == volumes
    assert await _disk_replaced_rows_on(ctx.pool, "node-5") == 0
    await _fully_redundant(faults, s3, ctx, bucket, bodies)


async def test_a_data_dir_without_an_identity_gets_one_and_keeps_its_volumes(
    faults: FaultCluster, s3: S3Client, ctx: ClusterContext
) -> None:
    """An upgrade: the node's data dir and its ``nodes`` row are as a build before disk
    identities left them (no identity file, no disk recorded)."""
    bucket, bodies = await _put_all(s3, 6)
    await _in_thread(faults.kill_node, "node-6")
    (faults.data_dir("node-6") / IDENTITY_FILE).unlink()
    await ctx.pool.execute("UPDATE nodes SET disk_id = NULL, volume_base = NULL,"
                           " disk_since = NULL WHERE id = 'node-6'")
    volumes = _volume_files(faults, "node-6")
    assert volumes
    await _in_thread(faults.start_node, "node-6")
    saved = json.loads((faults.data_dir("node-6") / IDENTITY_FILE).read_text())
    assert saved["disk_id"] == _health_disk(faults, "node-6")
    assert saved["volume_base"] == min(volumes)
    assert _volume_files(faults, "node-6")[:len(volumes)] == volumes
    await _disk_recorded(ctx.pool, "node-6", saved["disk_id"])
    assert await _disk_replaced_rows_on(ctx.pool, "node-6") == 0
    await _fully_redundant(faults, s3, ctx, bucket, bodies)


async def _degraded_exactly(ctx: ClusterContext, bucket: str, affected: set[str]) -> None:
    """After a probe round, fsck finds exactly ``affected`` of ``bucket`` degraded, none lost."""
    await ctx.health.probe_all(ctx.nodes.probe)
    report = await fsck(ctx)
    degraded = {name.split("/", 1)[1] for name in report.degraded
                if name.startswith(bucket + "/")}
    assert degraded == affected
    assert not report.lost


async def _queued_and_rebuilt(ctx: ClusterContext, bucket: str, node_id: str
                              ) -> tuple[int, int]:
    """The replaced disk's fragments are queued; one reconstructor pass rebuilds them, after
    which fsck finds ``bucket`` whole and the queue holds none of them. (queued, rebuilt)"""
    queued = await _disk_replaced_rows_on(ctx.pool, node_id)
    assert queued > 0
    repair = await Reconstructor(ctx, bytes_per_second=0).run_once()
    assert repair.fragments_rebuilt > 0 and not repair.errors, repair.errors[:3]
    await _whole_by_fsck(ctx, bucket)
    assert await _disk_replaced_rows_on(ctx.pool, node_id) == 0
    return queued, repair.fragments_rebuilt


async def _fully_redundant(faults: FaultCluster, s3: S3Client, ctx: ClusterContext,
                           bucket: str, bodies: dict[str, bytes]) -> None:
    """Every object of ``bucket`` has all its fragments by fsck, and reads back exact."""
    await _in_thread(faults.wait_nodes_up)
    await ctx.health.probe_all(ctx.nodes.probe)
    await _whole_by_fsck(ctx, bucket)
    await _read_back(s3, bucket, bodies)


def _without_database(args: list[str]) -> list[str]:
    """A node's command line without ``--database-url URL``: it sends no heartbeat."""
    at = args.index("--database-url")
    return args[:at] + args[at + 2:]


async def test_a_wiped_disk_of_a_node_without_heartbeats_is_seen_by_the_origins_probe(
    faults: FaultCluster, s3: S3Client, ctx: ClusterContext
) -> None:
    """node-2 runs without ``--database-url`` (listed in the origin's ``--nodes`` only), so
    nothing but the origin's health probe (every 0.3 s here) can tell the metadata of its new
    disk; the origin runs without background workers, so no scrub or repair of its own
    happens in between. fsck is right once the probe has recorded the disk, the reconstructor
    rebuilds, and every byte reads back."""
    bucket, bodies = await _put_all(s3, 12)
    affected = await _keys_on(ctx.pool, bucket, "node-2")
    assert affected
    await _disk_recorded(ctx.pool, "node-2", _health_disk(faults, "node-2"))
    node, origin = faults.nodes["node-2"], faults.origin
    assert origin is not None
    node_args, origin_args = list(node.args), list(origin.args)
    try:
        await _in_thread(faults.kill_origin)
        origin.args = [*origin_args, "--no-background-workers"]
        await _in_thread(faults.restart_origin)
        await _in_thread(faults.kill_node, "node-2")
        node.args = _without_database(node_args)
        await _in_thread(faults.start_node, "node-2")
        before = await _recorded_disk(ctx.pool, "node-2")
        await _in_thread(faults.wipe_node, "node-2")
        new_disk = _health_disk(faults, "node-2")
        assert new_disk != before["disk_id"]
        await _disk_recorded(ctx.pool, "node-2", new_disk, within=5.0)
        after = await _recorded_disk(ctx.pool, "node-2")
        assert after["heartbeat"] == before["heartbeat"]  # no heartbeat: the probe did it
        assert after["volume_base"] == min(_volume_files(faults, "node-2"))
        await _degraded_exactly(ctx, bucket, affected)
        queued, rebuilt = await _queued_and_rebuilt(ctx, bucket, "node-2")
    finally:
        await _in_thread(faults.kill_node, "node-2")
        node.args = node_args
        await _in_thread(faults.start_node, "node-2")
        await _in_thread(faults.kill_origin)
        origin.args = origin_args
        await _in_thread(faults.restart_origin)
    await _in_thread(faults.wait_nodes_up)
    await _read_back(s3, bucket, bodies)
    print(f"\n[disk identity] wiped node-2 (no heartbeat): the origin's probe queued {queued} "
          f"fragments, fsck saw {len(affected)} objects degraded; "
          f"{rebuilt} fragments rebuilt")
