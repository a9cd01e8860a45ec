"""PUT/GET through the real data path: origin process, 9 storage-node processes, PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import time

import aiohttp
import asyncpg
import pytest

from origin.client import S3Client, S3ClientError
from tests.integration.origin.conftest import SEGMENT_SIZE, Cluster

SIZES = [0, 1, 1024, (1 << 20) + 1, 20 << 20]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s}B")
async def test_put_then_get_returns_exact_bytes(s3: S3Client, bucket: str, size: int) -> None:
    body = os.urandom(size)
    etag = await s3.put_object(bucket, f"obj-{size}", body)
    assert etag == hashlib.md5(body).hexdigest()
    assert await s3.get_object(bucket, f"obj-{size}") == body


async def test_streamed_put_of_unknown_length(s3: S3Client, bucket: str) -> None:
    parts = [os.urandom(100_000) for _ in range(7)]

    async def chunks():
        for part in parts:
            yield part

    etag = await s3.put_object(bucket, "streamed", chunks())
    body = b"".join(parts)
    assert etag == hashlib.md5(body).hexdigest()
    assert await s3.get_object(bucket, "streamed") == body


async def test_head_carries_the_stored_headers(s3: S3Client, bucket: str) -> None:
    body = b"hello, cdn"
    await s3.put_object(bucket, "dir/hello.txt", body, content_type="text/plain",
                        cache_control="public, max-age=60",
                        content_disposition='attachment; filename="h.txt"',
                        surrogate_keys=["product-1", "home"], metadata={"owner": "qa"})
    info = await s3.head_object(bucket, "dir/hello.txt")
    assert info.size == len(body)
    assert info.etag == hashlib.md5(body).hexdigest()
    assert info.content_type == "text/plain"
    assert info.cache_control == "public, max-age=60"
    assert info.surrogate_keys == ("product-1", "home")
    assert info.metadata == {"owner": "qa"}
    assert info.headers["Accept-Ranges"] == "bytes"
    assert info.headers["Content-Disposition"] == 'attachment; filename="h.txt"'
    assert re.match(r"^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$", info.last_modified)
    assert info.headers["x-amz-request-id"]


async def test_range_reads(s3: S3Client, bucket: str) -> None:
    size = 3 * SEGMENT_SIZE + 1000
    body = os.urandom(size)
    await s3.put_object(bucket, "ranged", body)
    spanning = (SEGMENT_SIZE - 10, 2 * SEGMENT_SIZE + 10)
    assert await s3.get_object(bucket, "ranged", byte_range=spanning) == \
        body[spanning[0]: spanning[1] + 1]
    assert await s3.get_object(bucket, "ranged", byte_range=(5, 5)) == body[5:6]
    assert await s3.get_object(bucket, "ranged", byte_range="bytes=-100") == body[-100:]
    assert await s3.get_object(bucket, "ranged", byte_range=(size - 3, None)) == body[-3:]
    assert await s3.get_object(bucket, "ranged", byte_range=(size - 3, size + 100)) == body[-3:]
    async with await s3.request("GET", bucket, "ranged",
                                headers={"Range": "bytes=10-19"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 10-19/{size}"
        assert resp.headers["Content-Length"] == "10"
        assert await resp.read() == body[10:20]


async def test_unsatisfiable_range_is_416_and_malformed_range_is_ignored(
    s3: S3Client, bucket: str
) -> None:
    await s3.put_object(bucket, "small", b"0123456789")
    with pytest.raises(S3ClientError) as err:
        await s3.get_object(bucket, "small", byte_range=(10, 20))
    assert (err.value.status, err.value.code) == (416, "InvalidRange")
    async with await s3.request("GET", bucket, "small", headers={"Range": "bytes=9-2"}) as resp:
        assert resp.status == 200
        assert await resp.read() == b"0123456789"
    async with await s3.request("GET", bucket, "small", headers={"Range": "pages=1"}) as resp:
        assert resp.status == 200


async def test_reads_survive_three_nodes_down(
    s3: S3Client, bucket: str, healthy_cluster: Cluster
) -> None:
    body = os.urandom(2 * SEGMENT_SIZE + 123)
    await s3.put_object(bucket, "resilient", body)
    # Kill three nodes that hold data fragments, forcing parity decoding.
    holders = await _holders(healthy_cluster, bucket, "resilient")
    healthy_cluster.kill(holders[:3])
    assert await s3.get_object(bucket, "resilient") == body
    assert await s3.get_object(bucket, "resilient", byte_range=(SEGMENT_SIZE, None)) == \
        body[SEGMENT_SIZE:]


async def test_reads_fail_cleanly_with_four_nodes_down(
    s3: S3Client, bucket: str, healthy_cluster: Cluster
) -> None:
    body = os.urandom(SEGMENT_SIZE + 5)
    await s3.put_object(bucket, "fragile", body)
    holders = await _holders(healthy_cluster, bucket, "fragile")
    healthy_cluster.kill(holders[:4])
    with pytest.raises(S3ClientError) as err:
        await s3.get_object(bucket, "fragile")
    assert (err.value.status, err.value.code) == (503, "ServiceUnavailable")
    assert "fragments" in err.value.message


async def test_put_with_four_nodes_down_fails_and_leaves_no_object(
    s3: S3Client, bucket: str, healthy_cluster: Cluster
) -> None:
    healthy_cluster.kill(list(healthy_cluster.nodes)[:4])
    with pytest.raises(S3ClientError) as err:
        await s3.put_object(bucket, "never", os.urandom(50_000))
    assert (err.value.status, err.value.code) == (503, "ServiceUnavailable")
    healthy_cluster.restore()
    with pytest.raises(S3ClientError) as err:
        await s3.head_object(bucket, "never")
    assert err.value.status == 404


async def test_put_with_two_nodes_down_succeeds_and_reads_back(
    s3: S3Client, bucket: str, healthy_cluster: Cluster
) -> None:
    healthy_cluster.kill(list(healthy_cluster.nodes)[-2:])
    body = os.urandom(SEGMENT_SIZE * 2)
    await s3.put_object(bucket, "degraded-write", body)
    assert await s3.get_object(bucket, "degraded-write") == body
    conn = await asyncpg.connect(healthy_cluster.database_url)
    try:
        missing = await conn.fetchval(
            "SELECT missing_fragments FROM objects WHERE bucket = $1 AND key = $2",
            bucket, "degraded-write")
    finally:
        await conn.close()
    assert missing == 2 * 2  # two segments, two empty slots each


async def test_flipped_byte_in_a_volume_is_detected_and_read_stays_exact(
    s3: S3Client, bucket: str, cluster: Cluster
) -> None:
    body = os.urandom(40_000)
    await s3.put_object(bucket, "rotten", body)
    conn = await asyncpg.connect(cluster.database_url)
    try:
        row = await conn.fetchrow(
            """SELECT f.node_id, f.volume, f."offset", f.length FROM fragments f
               JOIN objects o ON o.id = f.object_id
               WHERE o.bucket = $1 AND o.key = $2 AND f.frag_index = 0""", bucket, "rotten")
    finally:
        await conn.close()
    path = cluster.data_dirs[row["node_id"]] / "volumes" / f"{row['volume']:06d}.vol"
    with path.open("r+b") as fh:  # flip one payload byte near the end of the record
        position = row["offset"] + row["length"]  # header + id precede the payload
        fh.seek(position)
        original = fh.read(1)
        fh.seek(position)
        fh.write(bytes([original[0] ^ 0xFF]))
    assert await s3.get_object(bucket, "rotten") == body
    assert "origin_degraded_segment_reads_total" in cluster.metrics()
    degraded = re.search(r"^origin_degraded_segment_reads_total ([\d.]+)$", cluster.metrics(),
                         re.M)
    assert degraded and float(degraded.group(1)) >= 1


async def test_conditional_requests(s3: S3Client, bucket: str) -> None:
    await s3.put_object(bucket, "cond", b"conditional body")
    info = await s3.head_object(bucket, "cond")
    etag, modified = info.headers["ETag"], info.last_modified
    cases = [
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": '"other"'}, 200),
        ({"If-Modified-Since": modified}, 304),
        ({"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, 200),
        ({"If-Match": etag}, 200),
        ({"If-Match": '"other"'}, 412),
        ({"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, 412),
        ({"If-Unmodified-Since": modified}, 200),
    ]
    for headers, status in cases:
        async with await s3.request("GET", bucket, "cond", headers=headers) as resp:
            body = await resp.read()
            assert resp.status == status, headers
            if status == 304:
                assert resp.headers["ETag"] == etag and body == b""
            if status == 412:
                assert b"<Code>PreconditionFailed</Code>" in body


async def test_object_gets_are_counted_in_metrics(
    s3: S3Client, bucket: str, cluster: Cluster
) -> None:
    def gets() -> float:
        match = re.search(r'^origin_object_requests_total\{method="GET",status="200"\} ([\d.]+)$',
                          cluster.metrics(), re.M)
        return float(match.group(1)) if match else 0.0

    await s3.put_object(bucket, "counted", b"x")
    before = gets()
    for _ in range(3):
        await s3.get_object(bucket, "counted")
    assert gets() == before + 3


async def test_anonymous_read_of_public_bucket(s3: S3Client, cluster: Cluster) -> None:
    await s3.create_bucket("public-demo", public=True)
    await s3.put_object("public-demo", "logo.txt", b"public bytes")
    await s3.create_bucket("private-demo")
    await s3.put_object("private-demo", "secret.txt", b"secret")
    async with aiohttp.ClientSession() as anon:
        async with anon.get(cluster.endpoint + "/public-demo/logo.txt") as resp:
            assert resp.status == 200 and await resp.read() == b"public bytes"
        async with anon.get(cluster.endpoint + "/private-demo/secret.txt") as resp:
            assert resp.status == 403
            assert b"<Code>AccessDenied</Code>" in await resp.read()
        async with anon.put(cluster.endpoint + "/public-demo/new.txt", data=b"x") as resp:
            assert resp.status == 403


async def _holders(cluster: Cluster, bucket: str, key: str) -> list[str]:
    """Nodes holding data fragments (index < k) of the object, by fragment index."""
    conn = await asyncpg.connect(cluster.database_url)
    try:
        rows = await conn.fetch(
            """SELECT DISTINCT f.frag_index, f.node_id FROM fragments f
               JOIN objects o ON o.id = f.object_id
               WHERE o.bucket = $1 AND o.key = $2 ORDER BY f.frag_index""", bucket, key)
    finally:
        await conn.close()
    return [r["node_id"] for r in rows]


async def test_failure_after_headers_aborts_the_body_instead_of_sending_wrong_bytes(
    s3: S3Client, bucket: str, cluster: Cluster
) -> None:
    body = os.urandom(4 * SEGMENT_SIZE)
    await s3.put_object(bucket, "late-failure", body)
    conn = await asyncpg.connect(cluster.database_url)
    try:
        rows = await conn.fetch(
            """SELECT f.node_id, f.volume, f."offset", f.length FROM fragments f
               JOIN objects o ON o.id = f.object_id
               WHERE o.bucket = $1 AND o.key = $2 AND f.segment = 3 AND f.frag_index < 4""",
            bucket, "late-failure")
    finally:
        await conn.close()
    for row in rows:  # four fragments of the last segment rot: it cannot be decoded
        path = cluster.data_dirs[row["node_id"]] / "volumes" / f"{row['volume']:06d}.vol"
        with path.open("r+b") as fh:
            fh.seek(row["offset"] + row["length"])
            byte = fh.read(1)
            fh.seek(row["offset"] + row["length"])
            fh.write(bytes([byte[0] ^ 0x01]))
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with await s3.request("GET", bucket, "late-failure") as resp:
            assert resp.status == 200  # headers went out before the last segment was read
            async for chunk in resp.content.iter_any():
                received += chunk
    assert len(received) < len(body)
    assert body.startswith(received)
    # A range that only touches intact segments is still served.
    assert await s3.get_object(bucket, "late-failure", byte_range=(0, SEGMENT_SIZE - 1)) == \
        body[:SEGMENT_SIZE]
    # A range starting in the broken segment fails before any header: a clean 503.
    with pytest.raises(S3ClientError) as err:
        await s3.get_object(bucket, "late-failure", byte_range=(3 * SEGMENT_SIZE, None))
    assert err.value.status == 503


async def test_a_stalled_node_is_hedged_around(
    s3: S3Client, bucket: str, cluster: Cluster
) -> None:
    body = os.urandom(SEGMENT_SIZE)
    await s3.put_object(bucket, "hedged", body)
    stalled = cluster.nodes[(await _holders(cluster, bucket, "hedged"))[0]]
    assert stalled.proc is not None
    stalled.proc.send_signal(signal.SIGSTOP)  # alive but silent: no connection refused
    try:
        started = time.monotonic()
        assert await s3.get_object(bucket, "hedged") == body
        read_time = time.monotonic() - started
        started = time.monotonic()
        await s3.put_object(bucket, "written-around", body * 2)
        write_time = time.monotonic() - started
    finally:
        stalled.proc.send_signal(signal.SIGCONT)
    # Both hedge after about 1 s, well before the 5 s node timeout.
    assert read_time < 4.0 and write_time < 4.0
    assert await s3.get_object(bucket, "written-around") == body * 2
