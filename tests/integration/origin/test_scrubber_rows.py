"""The scrubber matches fragment rows against the records its walk found: a row that points
inside a volume the node has, at a record that is not its own, is a lost fragment.

That is what a node given a fresh disk leaves behind: it numbers volumes from 1 again, so a row
of the old disk can point inside a new volume of the same number. The test makes one such row
by pointing a fragment's row at a neighbour's record (same node), rather than wiping a disk of
the session cluster every other test shares."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

from origin.client import S3Client
from origin.layout import FragmentLocation, fragment_id
from origin.workers.base import ClusterContext
from origin.workers.cli_context import cluster_context
from origin.workers.reconstructor import Reconstructor
from origin.workers.scrubber import Scrubber
from tests.integration.origin.conftest import Cluster


@pytest.fixture
async def ctx(cluster: Cluster) -> AsyncIterator[ClusterContext]:
    async with cluster_context(cluster.database_url, node_timeout=5) as context:
        yield context


async def _fragments(pool: asyncpg.Pool, bucket: str, key: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT f.* FROM fragments f JOIN objects o ON o.id = f.object_id
           WHERE o.bucket = $1 AND o.key = $2 AND o.is_latest
           ORDER BY segment, frag_index""", bucket, key)


# rows are matched page by page: one page per volume, and pages much smaller than a volume
@pytest.mark.parametrize("page_bytes", [4 << 20, 256 << 10])
async def test_a_row_on_another_fragments_record_is_queued_missing_and_rebuilt(
    s3: S3Client, bucket: str, ctx: ClusterContext, page_bytes: int
) -> None:
    body = os.urandom(50_000)
    await s3.put_object(bucket, "moved-under", body)
    await s3.put_object(bucket, "neighbour", os.urandom(50_000))
    victims = await _fragments(ctx.pool, bucket, "moved-under")
    neighbours = {r["node_id"]: r for r in await _fragments(ctx.pool, bucket, "neighbour")}
    victim = next(r for r in victims if r["node_id"] in neighbours)
    other = neighbours[victim["node_id"]]
    await ctx.pool.execute(
        """UPDATE segment_fragments SET volumes[array_position(frag_indexes, $3)] = $4,
                                        offsets[array_position(frag_indexes, $3)] = $5
           WHERE object_id = $1 AND segment = $2""",
        victim["object_id"], victim["segment"], victim["frag_index"], other["volume"],
        other["offset"])
    node_id = victim["node_id"]

    stats = await Scrubber(ctx, bytes_per_second=0, page_bytes=page_bytes).run_once(
        nodes=[node_id])

    assert stats.missing_fragments == 1 and stats.errors == []
    queued = await ctx.pool.fetchrow(
        "SELECT reason FROM repair_queue WHERE object_id = $1 AND segment = $2"
        " AND frag_index = $3", victim["object_id"], victim["segment"], victim["frag_index"])
    assert queued is not None and queued["reason"] == "missing-on-node"
    repair = await Reconstructor(ctx, bytes_per_second=0).run_once()
    assert repair.fragments_rebuilt >= 1
    healed = next(r for r in await _fragments(ctx.pool, bucket, "moved-under")
                  if (r["segment"], r["frag_index"]) ==
                  (victim["segment"], victim["frag_index"]))
    payload = await ctx.nodes.get_fragment(
        FragmentLocation(healed["node_id"], healed["volume"], healed["offset"],
                         healed["length"], healed["checksum"]),
        fragment_id(str(healed["object_id"]), healed["segment"], healed["frag_index"]))
    assert len(payload) == healed["length"]  # the rebuilt copy is its own record
    again = await Scrubber(ctx, bytes_per_second=0, page_bytes=page_bytes).run_once(
        nodes=[node_id])
    assert again.missing_fragments == 0
    assert await s3.get_object(bucket, "moved-under") == body
