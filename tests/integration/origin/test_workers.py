"""Background workers against the session cluster: storage classes, reconstructor, scrubber,
GC and compaction, fsck. Workers are driven with ``run_once`` from the test process."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from origin.client import S3Client, S3ClientError
from origin.fsck import fsck
from origin.layout import FragmentLocation, fragment_id
from origin.metadata.volume_locks import volume_lock
from origin.nodeclient import NodeClient
from origin.workers.base import ClusterContext
from origin.workers.cli_context import cluster_context
from origin.workers.compactor import Compactor
from origin.workers.gc import GarbageCollector
from origin.workers.planning import Redundancy
from origin.workers.reconstructor import Reconstructor
from origin.workers.scrubber import Scrubber
from tests.integration.origin.conftest import SEGMENT_SIZE, Cluster
from tests.integration.origin.volume_lock_sessions import terminate_holder


@pytest.fixture
async def ctx(cluster: Cluster) -> AsyncIterator[ClusterContext]:
    async with cluster_context(cluster.database_url, node_timeout=5) as context:
        yield context


async def _read_back(s3: S3Client, bucket: str, bodies: dict[str, bytes]) -> None:
    """Every object of ``bodies`` reads back exactly (what a worker must never break)."""
    for key, body in bodies.items():
        assert await s3.get_object(bucket, key) == body


async def _object_row(cluster: Cluster, bucket: str, key: str) -> asyncpg.Record:
    conn = await asyncpg.connect(cluster.database_url)
    try:
        return await conn.fetchrow(
            """SELECT id, ec_type, ec_ndata, ec_nparity, missing_fragments,
                      (SELECT count(*) FROM fragments f WHERE f.object_id = o.id) AS stored
               FROM objects o WHERE bucket = $1 AND key = $2""", bucket, key)
    finally:
        await conn.close()


async def _fragments(cluster: Cluster, bucket: str, key: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(cluster.database_url)
    try:
        return await conn.fetch(
            """SELECT f.* FROM fragments f JOIN objects o ON o.id = f.object_id
               WHERE o.bucket = $1 AND o.key = $2 ORDER BY segment, frag_index""", bucket, key)
    finally:
        await conn.close()


def _flip(cluster: Cluster, row: asyncpg.Record) -> None:
    path = cluster.data_dirs[row["node_id"]] / "volumes" / f"{row['volume']:06d}.vol"
    with path.open("r+b") as fh:
        position = row["offset"] + row["length"]  # inside the payload
        fh.seek(position)
        byte = fh.read(1)
        fh.seek(position)
        fh.write(bytes([byte[0] ^ 0x10]))


async def test_tiny_objects_are_replicated_and_classes_are_chosen_at_put(
    s3: S3Client, bucket: str, cluster: Cluster
) -> None:
    await s3.put_object(bucket, "tiny", b"x" * 100)
    row = await _object_row(cluster, bucket, "tiny")
    assert (row["ec_type"], row["ec_ndata"], row["ec_nparity"], row["stored"]) == \
        ("replicated", 1, 3, 4)
    assert await s3.get_object(bucket, "tiny") == b"x" * 100
    body = os.urandom(100_000)
    async with await s3.request("PUT", bucket, "replicated", data=body,
                                headers={"x-amz-storage-class": "REPLICATED"}) as resp:
        assert resp.status == 200
    row = await _object_row(cluster, bucket, "replicated")
    assert (row["ec_type"], row["stored"]) == ("replicated", 4)
    assert await s3.get_object(bucket, "replicated") == body
    await s3.put_object(bucket, "big", os.urandom(2000))
    assert (await _object_row(cluster, bucket, "big"))["ec_type"] != "replicated"
    async with await s3.request("PUT", bucket, "bad-class", data=b"abc",
                                headers={"x-amz-storage-class": "NOPE"}) as resp:
        assert resp.status == 400
        assert b"InvalidStorageClass" in await resp.read()


async def test_change_storage_class_rewrites_and_swaps_the_map(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    from origin.ec_reader import ECReader
    from origin.ec_writer import ECWriter
    from origin.erasure import cached_scheme
    from origin.metadata.objects import get_object
    from origin.metrics import OriginMetrics
    from origin.storage_class import default_policy
    from origin.storage_class_change import change_storage_class

    body = os.urandom(2 * SEGMENT_SIZE + 77)
    await s3.put_object(bucket, "mover", body)
    metrics = OriginMetrics()
    zones = {r.node_id: r.zone for r in await ctx.node_rows()}
    policy = default_policy(6, 3, "isa_l_rs_cauchy")
    writer = ECWriter(cached_scheme(6, 3, SEGMENT_SIZE, "isa_l_rs_cauchy"), ctx.nodes,
                      ctx.health, zones, quorum=7, pipeline_depth=2, metrics=metrics,
                      policy=policy)
    reader = ECReader(ctx.nodes, ctx.health, pipeline_depth=2, metrics=metrics)
    obj = await get_object(ctx.pool, bucket, "mover")
    assert obj is not None
    assert await change_storage_class(ctx.pool, writer, reader, obj, policy.get("REPLICATED"))
    row = await _object_row(cluster, bucket, "mover")
    assert (row["ec_type"], row["stored"], row["missing_fragments"]) == ("replicated", 3 * 4, 0)
    assert await s3.get_object(bucket, "mover") == body
    obj = await get_object(ctx.pool, bucket, "mover")
    assert obj is not None
    assert await change_storage_class(ctx.pool, writer, reader, obj, policy.get("STANDARD"))
    assert (await _object_row(cluster, bucket, "mover"))["stored"] == 3 * 9
    assert await s3.get_object(bucket, "mover", byte_range=(SEGMENT_SIZE, None)) == \
        body[SEGMENT_SIZE:]


async def test_reconstructor_fills_fragments_a_degraded_write_left_out(
    s3: S3Client, bucket: str, healthy_cluster: Cluster, ctx: ClusterContext
) -> None:
    healthy_cluster.kill(list(healthy_cluster.nodes)[:2])
    body = os.urandom(3 * SEGMENT_SIZE)
    await s3.put_object(bucket, "gappy", body)
    row = await _object_row(healthy_cluster, bucket, "gappy")
    assert row["missing_fragments"] == 6
    healthy_cluster.restore()
    await ctx.health.probe_all(ctx.nodes.probe)
    stats = await Reconstructor(ctx, bytes_per_second=0).run_once()
    assert stats.fragments_rebuilt >= 6  # (other tests' deliberately lost objects may error)
    row = await _object_row(healthy_cluster, bucket, "gappy")
    assert (row["missing_fragments"], row["stored"]) == (0, 27)
    for segment in range(3):
        nodes = {f["node_id"] for f in await _fragments(healthy_cluster, bucket, "gappy")
                 if f["segment"] == segment}
        assert len(nodes) == 9  # every fragment of a segment on its own node
    assert await s3.get_object(bucket, "gappy") == body


async def test_flipped_bit_is_found_by_the_scrubber_and_healed(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    body = os.urandom(SEGMENT_SIZE + 1234)
    await s3.put_object(bucket, "bitrot", body)
    victim = (await _fragments(cluster, bucket, "bitrot"))[1]
    _flip(cluster, victim)
    stats = await Scrubber(ctx, bytes_per_second=0).run_once(nodes=[victim["node_id"]])
    assert stats.corrupt_records >= 1 and stats.repairs_queued >= 1
    repair = await Reconstructor(ctx, bytes_per_second=0).run_once()
    assert repair.fragments_rebuilt >= 1
    healed = [f for f in await _fragments(cluster, bucket, "bitrot")
              if (f["segment"], f["frag_index"]) == (victim["segment"], victim["frag_index"])]
    assert (healed[0]["node_id"], healed[0]["volume"], healed[0]["offset"]) != \
        (victim["node_id"], victim["volume"], victim["offset"])
    h = healed[0]
    payload = await ctx.nodes.get_fragment(
        FragmentLocation(h["node_id"], h["volume"], h["offset"], h["length"], h["checksum"]),
        fragment_id(str(h["object_id"]), h["segment"], h["frag_index"]))
    assert len(payload) == h["length"]  # the rebuilt copy verifies end to end
    assert await s3.get_object(bucket, "bitrot") == body


class _ForwardingNodes:
    """The real ``NodeClient`` behind it, but for the calls a subclass answers itself: a
    node behaviour the running cluster cannot be made to show on cue."""

    def __init__(self, nodes: NodeClient) -> None:
        self._nodes = nodes

    def __getattr__(self, name: str) -> object:
        return getattr(self._nodes, name)


class _OlderNodes(_ForwardingNodes):
    """Nodes that answer like a build before the walk's counts: every record listed, no
    ``walked``/``walked_bytes``."""

    async def scan_volume(self, node_id: str, volume: int, offset: int, max_bytes: int,
                          *, verify: bool) -> dict | None:
        page = await self._nodes.scan_volume(node_id, volume, offset, max_bytes, verify=verify)
        return None if page is None else {"records": page["records"],
                                          "next_offset": page["next_offset"]}


@pytest.mark.parametrize("nodes", ["counting-node", "older-node"])
async def test_the_scrubber_counts_every_record_and_queues_the_rotten_one(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext, nodes: str
) -> None:
    """The scrubber's stats count every record and byte walked, from the node's counts or,
    against a node of an older build that sends none, from its listing; the rotten fragment
    is queued for repair."""
    body = os.urandom(3 * SEGMENT_SIZE)
    await s3.put_object(bucket, f"rot-{nodes}", body)
    victim = (await _fragments(cluster, bucket, f"rot-{nodes}"))[4]
    _flip(cluster, victim)
    node_id = victim["node_id"]
    listed = []
    for raw in await ctx.nodes.list_volumes(node_id):
        offset = 0
        while offset is not None:
            page = await ctx.nodes.scan_volume(node_id, int(raw["volume"]), offset, 1 << 20,
                                               verify=True)
            assert page is not None
            listed += page["records"]
            offset = page["next_offset"]
    rotten = [r for r in listed if r["error"]]  # earlier tests' rot stays on disk, unreferenced
    assert victim["offset"] in {r["offset"] for r in rotten}
    scrub_ctx = ctx if nodes == "counting-node" else \
        dataclasses.replace(ctx, nodes=_OlderNodes(ctx.nodes))  # type: ignore[arg-type]
    stats = await Scrubber(scrub_ctx, bytes_per_second=0, page_bytes=64 << 10).run_once(
        nodes=[node_id])
    assert (stats.records, stats.bytes_verified, stats.corrupt_records) == \
        (len(listed), sum(r["length"] for r in listed), len(rotten))
    queued = await ctx.pool.fetchrow(
        "SELECT reason FROM repair_queue WHERE object_id = $1 AND segment = $2"
        " AND frag_index = $3", victim["object_id"], victim["segment"], victim["frag_index"])
    assert queued is not None and queued["reason"] == "checksum-mismatch"
    await Reconstructor(ctx, bytes_per_second=0).run_once()
    assert await s3.get_object(bucket, f"rot-{nodes}") == body


class _ListsAVanishedVolume(_ForwardingNodes):
    """Volume listings that start with an old sealed volume the node no longer has: one
    another worker deleted between the listing and the walk."""

    async def list_volumes(self, node_id: str) -> list[dict]:
        vanished = {"volume": 0, "size": 1 << 20, "active": False, "age": 1e9}
        return [vanished, *await self._nodes.list_volumes(node_id)]


async def test_workers_pass_over_a_volume_deleted_since_they_listed_it(
    s3: S3Client, bucket: str, ctx: ClusterContext
) -> None:
    """GC, compactor and scrubber run concurrently (several origins, ``cdn repair``): a volume
    one of them deleted after another listed it is skipped, not an error that ends the
    pass over that node's other volumes."""
    await s3.put_object(bucket, "beside-a-vanished-volume", os.urandom(50_000))
    racing = dataclasses.replace(ctx, nodes=_ListsAVanishedVolume(ctx.nodes))  # type: ignore[arg-type]
    nodes = sorted(ctx.nodes.node_ids)
    # A grace period no real volume is past: only the vanished one is planned.
    gc = await GarbageCollector(racing, grace=1e6).run_once()
    assert (gc.errors, gc.volumes_checked) == ([], 0)
    compaction = await Compactor(racing, grace=1e6, bytes_per_second=0).run_once()
    assert compaction.errors == []
    scrub = await Scrubber(racing, bytes_per_second=0).run_once(nodes=nodes)
    alone = await Scrubber(ctx, bytes_per_second=0).run_once(nodes=nodes)
    assert (scrub.errors, scrub.nodes) == ([], len(nodes))
    assert (scrub.records, scrub.bytes_verified) == (alone.records, alone.bytes_verified)


class _ListsFirstBeforeAPut(_ForwardingNodes):
    """A first volume listing per node that predates every record on it, as a listing taken
    just before a PUT committed does for that PUT's fragments."""

    def __init__(self, nodes: NodeClient) -> None:
        super().__init__(nodes)
        self._listed: set[str] = set()

    async def list_volumes(self, node_id: str) -> list[dict]:
        volumes = await self._nodes.list_volumes(node_id)
        if node_id in self._listed:
            return volumes
        self._listed.add(node_id)
        return [{**v, "size": 0} for v in volumes]


async def test_fragments_committed_after_the_scrubbers_listing_are_not_missing(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    await s3.put_object(bucket, "after-the-listing", os.urandom(50_000))
    node_id = (await _fragments(cluster, bucket, "after-the-listing"))[0]["node_id"]
    honest = await Scrubber(ctx, bytes_per_second=0).run_once(nodes=[node_id])
    racing = dataclasses.replace(ctx, nodes=_ListsFirstBeforeAPut(ctx.nodes))  # type: ignore[arg-type]
    raced = await Scrubber(racing, bytes_per_second=0).run_once(nodes=[node_id])
    assert raced.missing_fragments == honest.missing_fragments == 0
    assert (raced.records, raced.errors) == (honest.records, [])


async def test_a_read_that_meets_a_corrupt_fragment_queues_its_repair(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    body = os.urandom(50_000)
    await s3.put_object(bucket, "reported", body)
    victim = (await _fragments(cluster, bucket, "reported"))[0]
    _flip(cluster, victim)
    assert await s3.get_object(bucket, "reported") == body
    queued = None
    for _ in range(50):
        queued = await ctx.pool.fetchrow(
            "SELECT reason FROM repair_queue WHERE object_id = $1 AND frag_index = 0",
            victim["object_id"])
        if queued:
            break
        await asyncio.sleep(0.05)
    assert queued is not None and queued["reason"] == "corrupt"
    await Reconstructor(ctx, bytes_per_second=0).run_once()
    assert await ctx.pool.fetchval("SELECT count(*) FROM repair_queue WHERE object_id = $1",
                                   victim["object_id"]) == 0


async def test_gc_reclaims_deleted_objects_and_compaction_keeps_the_live_ones(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    bodies = {f"k{i}": os.urandom(60_000) for i in range(24)}
    for key, body in bodies.items():
        await s3.put_object(bucket, key, body)
    doomed = [k for i, k in enumerate(bodies) if i % 4]  # three quarters die
    for key in doomed:
        await s3.delete_object(bucket, key)
    survivors = {k: v for k, v in bodies.items() if k not in doomed}
    for node_id in cluster.nodes:
        await ctx.nodes.seal_volume(node_id)
    await asyncio.sleep(1.2)
    gc = await GarbageCollector(ctx, grace=1.0, dead_ratio=0.5).run_once()
    assert gc.dead_bytes_found > 0 and not gc.errors

    stop = asyncio.Event()
    reads = 0

    async def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            for key, body in survivors.items():
                assert await s3.get_object(bucket, key) == body
                reads += 1

    reading = asyncio.ensure_future(reader())
    try:
        # A low threshold: the session's volumes also hold other tests' live objects.
        compaction = await Compactor(ctx, grace=1.0, dead_ratio=0.01, drain=0.5,
                                     bytes_per_second=0).run_once()
    finally:
        stop.set()
        await reading
    assert compaction.records_moved > 0 and compaction.bytes_freed > 0, compaction
    assert reads > 0
    await _read_back(s3, bucket, survivors)
    for key in doomed[:3]:
        with pytest.raises(S3ClientError):
            await s3.get_object(bucket, key)
    report = await fsck(ctx)
    assert report.counts.get(Redundancy.LOST, 0) == 0


class _OneVolume(_ForwardingNodes):
    """Nodes that list only ``volume`` of ``node_id``: every other volume stays out of the
    test. ``gate``: what a subclass holds until it is set."""

    def __init__(self, nodes: NodeClient, node_id: str, volume: int) -> None:
        super().__init__(nodes)
        self.node_id, self.volume = node_id, volume
        self.gate = asyncio.Event()

    async def list_volumes(self, node_id: str) -> list[dict]:
        if node_id != self.node_id:
            return []
        return [v for v in await self._nodes.list_volumes(node_id)
                if int(v["volume"]) == self.volume]


class _OneVolumeWithGatedCopies(_OneVolume):
    """Counts the copies asked of the volume and holds the first one until ``gate`` is set."""

    def __init__(self, nodes: NodeClient, node_id: str, volume: int) -> None:
        super().__init__(nodes, node_id, volume)
        self.copies = 0
        self.copying = asyncio.Event()

    async def relocate(self, node_id: str, volume: int, records: list[dict]) -> dict:
        self.copies += 1
        if self.copies == 1:
            self.copying.set()
            await self.gate.wait()
        return await self._nodes.relocate(node_id, volume, records)


async def _compactable_volume(s3: S3Client, bucket: str, cluster: Cluster,
                              ctx: ClusterContext) -> tuple[str, int, dict[str, bytes]]:
    """A sealed volume past a 1 s grace holding dead and live records of this test's
    objects: ``(node_id, volume, surviving bodies)``."""
    bodies = {f"c{i}": os.urandom(60_000) for i in range(12)}
    for key, body in bodies.items():
        await s3.put_object(bucket, key, body)
    doomed = [k for i, k in enumerate(bodies) if i % 4]
    survivors = {k: v for k, v in bodies.items() if k not in doomed}
    dead: set[tuple[str, int]] = set()
    kept: set[tuple[str, int]] = set()
    for key in bodies:
        places = dead if key in doomed else kept
        places.update((r["node_id"], r["volume"]) for r in await _fragments(cluster, bucket, key))
    for key in doomed:
        await s3.delete_object(bucket, key)
    for node_id in cluster.nodes:
        await ctx.nodes.seal_volume(node_id)
    await asyncio.sleep(1.2)
    node_id, volume = min(dead & kept)
    return node_id, volume, survivors


def _compactor(ctx: ClusterContext, nodes: _ForwardingNodes, *, drain: float = 0.2
               ) -> Compactor:
    return Compactor(dataclasses.replace(ctx, nodes=nodes),  # type: ignore[arg-type]
                     grace=1.0, dead_ratio=0.01, drain=drain, bytes_per_second=0)


async def _rows_in(ctx: ClusterContext, node_id: str, volume: int) -> int:
    """The fragment rows that point into ``volume`` of ``node_id``."""
    return int(await ctx.pool.fetchval("SELECT count(*) FROM fragments WHERE node_id = $1"
                                       " AND volume = $2", node_id, volume))


async def test_two_compactors_on_one_volume_copy_its_live_records_once(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    """The origin's compactor and ``cdn repair --compact`` (two pools: two processes) reach
    one volume at once: the one that comes second finds it busy and copies nothing."""
    node_id, volume, survivors = await _compactable_volume(s3, bucket, cluster, ctx)
    live = await _rows_in(ctx, node_id, volume)
    nodes = _OneVolumeWithGatedCopies(ctx.nodes, node_id, volume)
    first = asyncio.ensure_future(_compactor(ctx, nodes).run_once())
    await asyncio.wait_for(nodes.copying.wait(), 30)  # first is copying, its lock held
    async with cluster_context(cluster.database_url, node_timeout=5) as repair_ctx:
        second = await _compactor(repair_ctx, nodes).run_once()
    nodes.gate.set()
    done = await first
    assert (second.volumes_busy, second.records_moved, second.errors) == (1, 0, [])
    assert nodes.copies == 1
    assert (done.volumes_busy, done.volumes_compacted, done.records_moved, done.errors) == \
        (0, 1, live, [])
    assert volume not in {int(v["volume"]) for v in await ctx.nodes.list_volumes(node_id)}
    await _read_back(s3, bucket, survivors)


_HOLDER = """
import asyncio, sys
from origin.metadata import db
from origin.metadata.volume_locks import volume_lock

async def hold() -> None:
    pool = await db.create_pool(sys.argv[1], max_size=1)
    async with volume_lock(pool, sys.argv[2], int(sys.argv[3])) as lock:
        print(lock.held, flush=True)
        await asyncio.sleep(3600)

asyncio.run(hold())
"""


async def test_a_compactor_that_dies_releases_its_volume(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    node_id, volume, survivors = await _compactable_volume(s3, bucket, cluster, ctx)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, cluster.database_url, node_id, str(volume),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"True\n"
        nodes = _OneVolumeWithGatedCopies(ctx.nodes, node_id, volume)
        nodes.gate.set()
        blocked = await _compactor(ctx, nodes).run_once()
        assert (blocked.volumes_busy, blocked.records_moved, nodes.copies) == (1, 0, 0)
    finally:
        holder.kill()  # no clean exit: the server sees the client vanish
        await holder.wait()
    deadline = time.monotonic() + 10
    while True:
        async with volume_lock(ctx.pool, node_id, volume) as lock:
            free = lock.held
            if free or time.monotonic() > deadline:
                break
        await asyncio.sleep(0.05)
    assert free, "the dead holder's session kept the lock"
    after = await _compactor(ctx, nodes).run_once()
    assert (after.volumes_busy, after.volumes_compacted, after.errors) == (0, 1, [])
    assert after.records_moved > 0 and nodes.copies == 1
    await _read_back(s3, bucket, survivors)


class _OneVolumeWithGatedDelete(_OneVolume):
    """Holds the delete of the volume until ``gate`` is set: a compactor that has copied the
    live records and repointed every row, in its drain."""

    def __init__(self, nodes: NodeClient, node_id: str, volume: int) -> None:
        super().__init__(nodes, node_id, volume)
        self.draining = asyncio.Event()

    async def delete_volume(self, node_id: str, volume: int) -> int:
        if (node_id, volume) == (self.node_id, self.volume):
            self.draining.set()
            await self.gate.wait()
        return await self._nodes.delete_volume(node_id, volume)


class _OneVolumeWithGatedWalk(_OneVolume):
    """Holds the walk of the volume (its first page) until ``gate`` is set: a GC mid-walk."""

    def __init__(self, nodes: NodeClient, node_id: str, volume: int) -> None:
        super().__init__(nodes, node_id, volume)
        self.walking = asyncio.Event()

    async def scan_volume(self, node_id: str, volume: int, offset: int, max_bytes: int,
                          *, verify: bool) -> dict | None:
        if (node_id, volume) == (self.node_id, self.volume):
            self.walking.set()
            await self.gate.wait()
        return await self._nodes.scan_volume(node_id, volume, offset, max_bytes, verify=verify)


def _gc(ctx: ClusterContext, nodes: _ForwardingNodes) -> GarbageCollector:
    # dead_ratio as the compactor's: the session's volumes also hold other tests' objects.
    return GarbageCollector(dataclasses.replace(ctx, nodes=nodes),  # type: ignore[arg-type]
                            grace=1.0, dead_ratio=0.01)


async def _listed(ctx: ClusterContext, node_id: str, volume: int) -> bool:
    return volume in {int(v["volume"]) for v in await ctx.nodes.list_volumes(node_id)}


async def test_gc_leaves_a_volume_alone_while_its_compactor_drains_it(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    """A compactor has copied the volume's live records and repointed their rows: the old
    volume holds nothing live, and readers that loaded the map earlier still read it during
    the drain. A GC of another process walking it then (it would plan DELETE) finds the
    volume held, counts it busy and leaves it; the compactor deletes it after its drain."""
    node_id, volume, survivors = await _compactable_volume(s3, bucket, cluster, ctx)
    draining = _OneVolumeWithGatedDelete(ctx.nodes, node_id, volume)
    compacting = asyncio.ensure_future(_compactor(ctx, draining).run_once())
    try:
        await asyncio.wait_for(draining.draining.wait(), 30)
        assert await _rows_in(ctx, node_id, volume) == 0
        async with cluster_context(cluster.database_url, node_timeout=5) as gc_ctx:
            gc = await _gc(gc_ctx, _OneVolume(gc_ctx.nodes, node_id, volume)).run_once()
        assert (gc.volumes_busy, gc.volumes_checked, gc.volumes_deleted, gc.errors) == \
            (1, 0, 0, [])
        assert await _listed(ctx, node_id, volume)
    finally:
        draining.gate.set()
        done = await compacting
    assert (done.volumes_compacted, done.errors) == (1, []), done
    assert done.records_moved > 0 and done.bytes_freed > 0
    assert not await _listed(ctx, node_id, volume)
    await _read_back(s3, bucket, survivors)


async def test_gc_skips_a_held_volume_and_takes_it_once_released(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    """The volume's lock held by another process (a compactor's pool): GC skips it and counts
    it busy; once the holder lets go, the next GC pass walks it."""
    node_id, volume, _survivors = await _compactable_volume(s3, bucket, cluster, ctx)
    only = _OneVolume(ctx.nodes, node_id, volume)
    async with cluster_context(cluster.database_url, node_timeout=5) as holder_ctx:
        async with volume_lock(holder_ctx.pool, node_id, volume) as lock:
            assert lock.held
            busy = await _gc(ctx, only).run_once()
    assert (busy.volumes_busy, busy.volumes_checked, busy.dead_bytes_found, busy.errors) == \
        (1, 0, 0, [])
    free = await _gc(ctx, only).run_once()
    assert (free.volumes_busy, free.volumes_checked, free.volumes_to_compact, free.errors) == \
        (0, 1, 1, [])
    assert free.dead_bytes_found > 0


async def test_a_compactor_finds_a_volume_busy_while_gc_walks_it(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    """GC is walking the volume (it may go on to delete it): a compactor of another process
    copies nothing from it and counts it busy; after the GC pass, compaction proceeds."""
    node_id, volume, survivors = await _compactable_volume(s3, bucket, cluster, ctx)
    walking = _OneVolumeWithGatedWalk(ctx.nodes, node_id, volume)
    collecting = asyncio.ensure_future(_gc(ctx, walking).run_once())
    copies = _OneVolumeWithGatedCopies(ctx.nodes, node_id, volume)
    copies.gate.set()
    try:
        await asyncio.wait_for(walking.walking.wait(), 30)
        async with cluster_context(cluster.database_url, node_timeout=5) as repair_ctx:
            blocked = await _compactor(repair_ctx, copies).run_once()
        assert (blocked.volumes_busy, blocked.records_moved, blocked.errors) == (1, 0, [])
        assert copies.copies == 0
    finally:
        walking.gate.set()
        gc = await collecting
    assert (gc.volumes_busy, gc.volumes_checked, gc.volumes_to_compact, gc.errors) == \
        (0, 1, 1, [])
    after = await _compactor(ctx, copies).run_once()
    assert (after.volumes_busy, after.volumes_compacted, after.errors) == (0, 1, [])
    assert copies.copies == 1 and not await _listed(ctx, node_id, volume)
    await _read_back(s3, bucket, survivors)


async def test_a_worker_whose_volume_lock_ends_mid_work_deletes_nothing_and_says_so(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    """The lock's session is ended from another connection (``pg_terminate_backend``: what
    an operator, a failover or a cut connection does) while the worker holds it: during a
    compactor's drain, after it repointed every row, and during a GC's walk of the volume
    that is then empty of live records. Neither deletes the volume; each counts it in
    ``volumes_lock_lost``. A pass under a new lock then deletes it."""
    node_id, volume, survivors = await _compactable_volume(s3, bucket, cluster, ctx)
    compactor = _compactor(ctx, _OneVolume(ctx.nodes, node_id, volume), drain=3.0)
    compacting = asyncio.ensure_future(compactor.run_once())
    try:
        deadline = time.monotonic() + 30
        while await _rows_in(ctx, node_id, volume):  # copying and repointing
            assert time.monotonic() < deadline and not compacting.done(), "no drain"
            await asyncio.sleep(0.05)
        assert await terminate_holder(ctx.pool, node_id, volume) == 1  # mid-drain
    finally:
        done = await compacting
    assert (done.volumes_lock_lost, done.volumes_compacted, done.bytes_freed, done.errors) == \
        (1, 0, 0, []), done
    assert done.records_moved > 0
    assert await _listed(ctx, node_id, volume)
    await _read_back(s3, bucket, survivors)

    walking = _OneVolumeWithGatedWalk(ctx.nodes, node_id, volume)
    collecting = asyncio.ensure_future(_gc(ctx, walking).run_once())
    try:
        await asyncio.wait_for(walking.walking.wait(), 30)
        assert await terminate_holder(ctx.pool, node_id, volume) == 1  # mid-walk
    finally:
        walking.gate.set()
        gc = await collecting
    assert (gc.volumes_lock_lost, gc.volumes_deleted, gc.bytes_freed, gc.errors) == \
        (1, 0, 0, []), gc
    assert await _listed(ctx, node_id, volume)

    after = await _gc(ctx, _OneVolume(ctx.nodes, node_id, volume)).run_once()
    assert (after.volumes_lock_lost, after.volumes_deleted, after.errors) == (0, 1, [])
    assert not await _listed(ctx, node_id, volume)
    await _read_back(s3, bucket, survivors)


async def test_a_compactor_whose_lock_ends_while_copying_repoints_no_row(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    """The lock's session ends while the node copies the live records: the compactor
    repoints none of the volume's rows to the copies (a GC holding the volume by then could
    judge it by rows that move under it) and counts the volume lost; the copies stay
    unreferenced, garbage for the GC."""
    node_id, volume, survivors = await _compactable_volume(s3, bucket, cluster, ctx)
    live = await _rows_in(ctx, node_id, volume)
    copies = _OneVolumeWithGatedCopies(ctx.nodes, node_id, volume)
    compacting = asyncio.ensure_future(_compactor(ctx, copies).run_once())
    try:
        await asyncio.wait_for(copies.copying.wait(), 30)
        assert await terminate_holder(ctx.pool, node_id, volume) == 1
    finally:
        copies.gate.set()
        done = await compacting
    assert (done.volumes_lock_lost, done.records_moved, done.volumes_compacted, done.errors) \
        == (1, 0, 0, []), done
    assert copies.copies == 1 and await _rows_in(ctx, node_id, volume) == live
    assert await _listed(ctx, node_id, volume)
    await _read_back(s3, bucket, survivors)


async def test_fsck_reports_degraded_objects_while_nodes_are_down(
    s3: S3Client, bucket: str, healthy_cluster: Cluster
) -> None:
    await s3.put_object(bucket, "watched", os.urandom(20_000))
    async with cluster_context(healthy_cluster.database_url, node_timeout=2) as ctx:
        clean = await fsck(ctx)
    assert clean.counts.get(Redundancy.LOST, 0) == 0
    healthy_cluster.kill(list(healthy_cluster.nodes)[:4])
    started = time.monotonic()
    async with cluster_context(healthy_cluster.database_url, node_timeout=2) as ctx:
        report = await fsck(ctx)
    assert time.monotonic() - started < 30
    assert len(report.unusable_nodes) == 4
    assert report.counts.get(Redundancy.DEGRADED, 0) + report.counts.get(Redundancy.LOST, 0) \
        >= 1


async def _start_upload(s3: S3Client, bucket: str, key: str) -> str:
    import xml.etree.ElementTree as ET

    async with await s3.request("POST", bucket, key, query=[("uploads", "")]) as resp:
        doc = ET.fromstring(await resp.read())
    upload = next(e.text for e in doc.iter() if e.tag.endswith("UploadId"))
    assert upload is not None
    return upload


async def _upload_part(s3: S3Client, bucket: str, key: str, upload: str, number: int,
                       body: bytes) -> str:
    async with await s3.request("PUT", bucket, key, data=body, query=[
            ("partNumber", str(number)), ("uploadId", upload)]) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["ETag"]


async def test_gc_and_compaction_leave_an_in_progress_uploads_parts_alone(
    s3: S3Client, bucket: str, cluster: Cluster, ctx: ClusterContext
) -> None:
    upload = await _start_upload(s3, bucket, "mp")
    first = os.urandom(5 << 20)
    await _upload_part(s3, bucket, "mp", upload, 1, os.urandom(5 << 20))  # replaced below
    replaced = await ctx.pool.fetch(
        """SELECT f.node_id, f.volume, f."offset" FROM fragments f JOIN upload_parts u
           ON u.object_id = f.object_id WHERE u.upload_id = $1""", upload)
    etag1 = await _upload_part(s3, bucket, "mp", upload, 1, first)
    last = os.urandom(100_000)
    etag2 = await _upload_part(s3, bucket, "mp", upload, 2, last)
    live = await ctx.pool.fetch(
        """SELECT f.node_id, f.volume, f."offset" FROM fragments f JOIN upload_parts u
           ON u.object_id = f.object_id WHERE u.upload_id = $1""", upload)
    # Every byte of the upload is past the grace period before it is completed.
    for node_id in cluster.nodes:
        await ctx.nodes.seal_volume(node_id)
    await asyncio.sleep(1.2)
    gc = await GarbageCollector(ctx, grace=1.0, dead_ratio=0.5).run_once()
    assert not gc.errors, gc.errors
    compaction = await Compactor(ctx, grace=1.0, dead_ratio=0.01, drain=0.0,
                                 bytes_per_second=0).run_once()
    assert compaction.records_moved > 0  # the replaced part's records made room to compact
    gc = await GarbageCollector(ctx, grace=0.0, dead_ratio=0.5).run_once()  # old volumes go
    assert not gc.errors, gc.errors
    # Nothing the upload references went away: each record is where a row says, intact.
    rows = await ctx.pool.fetch(
        """SELECT f.* FROM fragments f JOIN upload_parts u ON u.object_id = f.object_id
           WHERE u.upload_id = $1""", upload)
    assert len(rows) == len(live)
    for r in rows:
        payload = await ctx.nodes.get_fragment(
            FragmentLocation(r["node_id"], r["volume"], r["offset"], r["length"],
                             r["checksum"]),
            fragment_id(str(r["object_id"]), r["segment"], r["frag_index"]))
        assert len(payload) == r["length"]
    assert replaced and not {tuple(r) for r in replaced} & {
        (r["node_id"], r["volume"], r["offset"]) for r in rows}
    done = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag1}</ETag>"
            f"</Part><Part><PartNumber>2</PartNumber><ETag>{etag2}</ETag></Part>"
            f"</CompleteMultipartUpload>").encode()
    async with await s3.request("POST", bucket, "mp", query=[("uploadId", upload)],
                                data=done) as resp:
        assert resp.status == 200, await resp.text()
    assert await s3.get_object(bucket, "mp") == first + last
