"""Lifecycle transitions move data, and the lifecycle worker re-checks what it planned.

The worker runs in the test process with a fake clock and the origin's own data mover
(``storage_class_change.lifecycle_mover``) over an in-process writer and reader, exactly as
the origin hosts it."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from origin.client import S3Client
from origin.ec_reader import ECReader
from origin.ec_writer import ECWriter
from origin.erasure import cached_scheme
from origin.lifecycle.worker import LifecycleWorker, PlanHook
from origin.metadata.rows import lock_key, promote_newest
from origin.metrics import OriginMetrics
from origin.storage_class import StorageClassPolicy, default_policy
from origin.storage_class_change import lifecycle_mover
from origin.workers.base import ClusterContext
from origin.workers.cli_context import cluster_context
from origin.workers.gc import plan_node_volume, volume_facts
from tests.integration.origin.conftest import EXTRA_CLASSES, SEGMENT_SIZE, Cluster

EC_TYPE = "isa_l_rs_cauchy"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def ctx(cluster: Cluster) -> AsyncIterator[ClusterContext]:
    async with cluster_context(cluster.database_url, node_timeout=5) as context:
        yield context


def _policy() -> StorageClassPolicy:
    return default_policy(6, 3, EC_TYPE, EXTRA_CLASSES)


async def _worker(ctx: ClusterContext, clock: FakeClock,
                  on_planned: PlanHook | None = None) -> LifecycleWorker:
    metrics = OriginMetrics()
    zones = {r.node_id: r.zone for r in await ctx.node_rows()}
    writer = ECWriter(cached_scheme(6, 3, SEGMENT_SIZE, EC_TYPE), ctx.nodes, ctx.health, zones,
                      quorum=7, pipeline_depth=2, metrics=metrics, policy=_policy())
    reader = ECReader(ctx.nodes, ctx.health, pipeline_depth=2, metrics=metrics)
    return LifecycleWorker(ctx.pool, clock=clock, abandoned_after=None, on_planned=on_planned,
                           transition=lifecycle_mover(ctx.pool, writer, reader, _policy()))


async def _put_lifecycle(s3: S3Client, bucket: str, rules: str) -> None:
    body = f"<LifecycleConfiguration>{rules}</LifecycleConfiguration>".encode()
    async with await s3.request("PUT", bucket, query=[("lifecycle", "")], data=body) as resp:
        assert resp.status == 200, await resp.text()


def _transition_rule(rule_id: str, prefix: str, days: int, target: str) -> str:
    return (f"<Rule><ID>{rule_id}</ID><Status>Enabled</Status><Filter><Prefix>{prefix}"
            f"</Prefix></Filter><Transition><Days>{days}</Days><StorageClass>{target}"
            f"</StorageClass></Transition></Rule>")


async def _multipart_one_part(s3: S3Client, bucket: str, key: str, body: bytes) -> None:
    async with await s3.request("POST", bucket, key, query=[("uploads", "")]) as resp:
        doc = ET.fromstring(await resp.read())
    upload = next(e.text for e in doc.iter() if e.tag.endswith("UploadId"))
    assert upload is not None
    async with await s3.request("PUT", bucket, key, data=body, query=[
            ("partNumber", "1"), ("uploadId", upload)]) as resp:
        etag = resp.headers["ETag"]
    done = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag>"
            f"</Part></CompleteMultipartUpload>").encode()
    async with await s3.request("POST", bucket, key, query=[("uploadId", upload)],
                                data=done) as resp:
        assert resp.status == 200, await resp.text()


async def _blob_rows(pool: asyncpg.Pool, bucket: str, key: str) -> list[asyncpg.Record]:
    """The rows that own a key's data (the object, or its parts), with their fragments."""
    return await pool.fetch(
        """SELECT b.id, b.ec_type, b.ec_ndata, b.ec_nparity, b.missing_fragments,
                  (b.size + b.segment_size - 1) / b.segment_size AS segments,
                  o.storage_class,
                  array(SELECT row(f.node_id, f.volume, f."offset")::text FROM fragments f
                        WHERE f.object_id = b.id) AS locations
           FROM objects o JOIN objects b ON b.id = o.id
                OR b.id IN (SELECT part_object_id FROM object_parts WHERE object_id = o.id)
           WHERE o.bucket = $1 AND o.key = $2 AND o.is_latest AND (b.kind = 'part') = (
               o.part_count IS NOT NULL)""", bucket, key)


async def test_transition_rewrites_data_in_the_target_class_and_old_fragments_are_garbage(
    s3: S3Client, bucket: str, ctx: ClusterContext
) -> None:
    await _put_lifecycle(s3, bucket, _transition_rule("to-replicated", "cold/", 30,
                                                      "REPLICATED")
                         + _transition_rule("to-ec", "ec/", 30, "COLD"))
    bodies = {"cold/big": os.urandom(2 * SEGMENT_SIZE + 999), "cold/tiny": b"t" * 100,
              "ec/big": os.urandom(3 * SEGMENT_SIZE + 5), "cold/mp": os.urandom(300_000),
              "warm": os.urandom(50_000)}
    for key, body in bodies.items():
        if key == "cold/mp":
            await _multipart_one_part(s3, bucket, key, body)
        else:
            await s3.put_object(bucket, key, body)
    before = {key: await _blob_rows(ctx.pool, bucket, key) for key in bodies}
    clock = FakeClock()
    worker = await _worker(ctx, clock)
    clock.advance(days=29)
    assert (await worker.run_once()).transitioned == 0

    clock.advance(days=2)
    stats = await worker.run_once()
    assert (stats.transitioned, stats.errors) == (4, 0), stats
    after = {key: await _blob_rows(ctx.pool, bucket, key) for key in bodies}
    for key in ("cold/big", "cold/mp"):
        for row in after[key]:
            assert (row["ec_type"], row["ec_ndata"], row["ec_nparity"]) == ("replicated", 1, 3)
            assert len(row["locations"]) == row["segments"] * 4
            assert row["missing_fragments"] == 0
    (ec_row,) = after["ec/big"]
    assert (ec_row["ec_ndata"], ec_row["ec_nparity"], len(ec_row["locations"])) == \
        (4, 2, 4 * 6)
    assert [r["storage_class"] for k in ("cold/big", "cold/tiny", "cold/mp", "ec/big")
            for r in after[k][:1]] == ["REPLICATED", "REPLICATED", "REPLICATED", "COLD"]
    assert after["warm"] == before["warm"]
    # A tiny STANDARD object was already stored as 4 replicas: renamed, not rewritten.
    assert after["cold/tiny"][0]["locations"] == before["cold/tiny"][0]["locations"]
    for key, body in bodies.items():
        assert await s3.get_object(bucket, key) == body, key
    assert await s3.get_object(bucket, "ec/big", byte_range=(SEGMENT_SIZE + 7, None)) == \
        bodies["ec/big"][SEGMENT_SIZE + 7:]
    async with await s3.request("HEAD", bucket, "ec/big") as resp:
        assert resp.headers["x-amz-storage-class"] == "COLD"
    async with await s3.request("HEAD", bucket, "warm") as resp:
        assert "x-amz-storage-class" not in resp.headers

    # Moved once: the next pass finds nothing to do.
    assert (await worker.run_once()).transitioned == 0

    # The old fragments are referenced by nothing: the collector's own plan calls them dead.
    old = {loc for key in ("cold/big", "cold/mp", "ec/big") for row in before[key]
           for loc in row["locations"]}
    new = {loc for key in ("cold/big", "cold/mp", "ec/big") for row in after[key]
           for loc in row["locations"]}
    assert old and not old & new
    live: set[str] = set()
    volumes = {tuple(loc.strip("()").split(",")[:2]) for loc in old | new}
    for node_id, volume in sorted(volumes):
        raw = next(v for v in await ctx.nodes.list_volumes(node_id)
                   if int(v["volume"]) == int(volume))
        plan = await plan_node_volume(ctx, volume_facts(node_id, raw), grace=0.0,
                                      dead_ratio=0.5)
        live.update(f"({node_id},{volume},{rec.offset})" for rec in plan.live)
    assert new <= live
    assert not old & live


async def _versioned_key(s3: S3Client, bucket: str, key: str) -> list[str]:
    async with await s3.request("PUT", bucket, query=[("versioning", "")], data=(
            b"<VersioningConfiguration><Status>Enabled</Status>"
            b"</VersioningConfiguration>")) as resp:
        assert resp.status == 200
    ids = []
    for body in (b"one", b"two"):
        async with await s3.request("PUT", bucket, key, data=body) as resp:
            ids.append(resp.headers["x-amz-version-id"])
    return ids


async def test_noncurrent_expiration_spares_a_version_promoted_between_plan_and_apply(
    s3: S3Client, bucket: str, ctx: ClusterContext
) -> None:
    v1, v2 = await _versioned_key(s3, bucket, "doc")
    await _put_lifecycle(s3, bucket, "<Rule><ID>old</ID><Status>Enabled</Status><Filter>"
                         "<Prefix></Prefix></Filter><NoncurrentVersionExpiration>"
                         "<NoncurrentDays>7</NoncurrentDays></NoncurrentVersionExpiration>"
                         "</Rule>")
    planned: list[str] = []

    async def promote_meanwhile(action: str, object_id: str) -> None:
        """What DELETE ?versionId=<v2> does, run after the worker chose v1 as noncurrent."""
        planned.append(action)
        async with ctx.pool.acquire() as conn, conn.transaction():
            await lock_key(conn, bucket, "doc")
            await conn.execute("DELETE FROM objects WHERE bucket = $1 AND key = 'doc' "
                               "AND version_id = $2", bucket, v2)
            await promote_newest(conn, bucket, "doc")

    clock = FakeClock()
    clock.advance(days=8)
    worker = await _worker(ctx, clock, on_planned=promote_meanwhile)
    stats = await worker.run_once()
    assert planned == ["noncurrent"]
    assert stats.noncurrent_expired == 0
    assert await s3.get_object(bucket, "doc") == b"one"  # v1 is current again, and kept
    async with await s3.request("HEAD", bucket, "doc") as resp:
        assert resp.headers["x-amz-version-id"] == v1


async def test_transition_skips_an_object_overwritten_between_plan_and_apply(
    s3: S3Client, bucket: str, ctx: ClusterContext
) -> None:
    await _put_lifecycle(s3, bucket, _transition_rule("r", "", 1, "REPLICATED"))
    await s3.put_object(bucket, "k", os.urandom(SEGMENT_SIZE + 1))
    fresh = os.urandom(SEGMENT_SIZE + 2)

    async def overwrite(_action: str, _object_id: str) -> None:
        await s3.put_object(bucket, "k", fresh)

    clock = FakeClock()
    clock.advance(days=2)
    hook: Callable[[str, str], Awaitable[None]] = overwrite
    stats = await (await _worker(ctx, clock, on_planned=hook)).run_once()
    assert (stats.transitioned, stats.errors) == (0, 0)
    assert await s3.get_object(bucket, "k") == fresh
    (row,) = await _blob_rows(ctx.pool, bucket, "k")
    assert (row["storage_class"], row["ec_ndata"]) == ("STANDARD", 6)
