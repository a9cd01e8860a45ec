"""The listing index at ~100k keys: a prefix listing is a btree range scan, never a seq scan;
and aws-chunked uploads (signed chunks, signed and unsigned trailers) end to end."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import aiohttp
import asyncpg

from origin import sigv4
from origin.aws_chunked import ChunkSigning, encode_chunks
from origin.checksums import checksum
from origin.client import S3Client
from origin.metadata.objects import LISTING_QUERY, key_successor
from tests.integration.origin.conftest import ACCESS_KEY, SECRET_KEY, Cluster


async def test_prefix_listing_is_an_index_range_scan(cluster: Cluster, s3: S3Client) -> None:
    bucket = f"idx-{uuid.uuid4().hex[:8]}"
    await s3.create_bucket(bucket)
    conn = await asyncpg.connect(cluster.database_url)
    try:
        await conn.execute(
            """INSERT INTO objects (id, bucket, key, size, etag, content_type, ec_type,
                   ec_ndata, ec_nparity, segment_size)
               SELECT gen_random_uuid(), $1, 'dir' || (i % 100) || '/file' || i, 1, 'e',
                   'x', 'replicated', 1, 1, 1024 FROM generate_series(1, 100000) AS i""",
            bucket)
        await conn.execute("ANALYZE objects")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN " + LISTING_QUERY.format(op=">="), bucket, "dir42/",
            key_successor("dir42/"), 1000))
        assert "Seq Scan" not in plan and "Index" in plan, plan
        keys, _prefixes = await s3.list_objects(bucket, prefix="dir42/")
        assert len(keys) == 1000 and all(k.startswith("dir42/") for k in keys)
    finally:
        await conn.execute("DELETE FROM objects WHERE bucket = $1", bucket)
        await conn.close()


async def _chunked_put(cluster: Cluster, path: str, body: bytes, mode: str,
                       trailer: dict[str, str] | None, *, tamper: bool = False,
                       ) -> tuple[int, str]:
    host = cluster.endpoint.split("//", 1)[1]
    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"host": host, "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(body))}
    if trailer:
        headers["x-amz-trailer"] = next(iter(trailer))
    signed = sigv4.sign_request(method="PUT", path=path, query=[], headers=headers,
                                access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                region="us-east-1", amz_date=amz_date, payload_hash=mode)
    seed = signed["Authorization"].rsplit("Signature=", 1)[1]
    scope = sigv4.Scope(amz_date[:8], "us-east-1")
    signing = None if mode == sigv4.STREAMING_UNSIGNED_TRAILER else ChunkSigning(
        sigv4.signing_key(SECRET_KEY, scope), amz_date, scope, seed)
    wire = encode_chunks([body[i:i + 65536] for i in range(0, len(body), 65536)], signing,
                         trailer)
    if tamper:
        wire = wire.replace(body[:16], bytes(16), 1)
    async with aiohttp.ClientSession() as session, session.put(
            cluster.endpoint + path, data=wire, headers={**headers, **signed}) as resp:
        text = await resp.text()
        code = text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in text else ""
        return resp.status, code


async def test_aws_chunked_uploads(cluster: Cluster, s3: S3Client, bucket: str) -> None:
    body = bytes(range(256)) * 1000
    crc = {"x-amz-checksum-crc32": checksum("CRC32", body)}
    for i, (mode, trailer) in enumerate([(sigv4.STREAMING_SIGNED, None),
                                         (sigv4.STREAMING_SIGNED_TRAILER, crc),
                                         (sigv4.STREAMING_UNSIGNED_TRAILER, crc)]):
        status, code = await _chunked_put(cluster, f"/{bucket}/c{i}", body, mode, trailer)
        assert (status, code) == (200, ""), mode
        assert await s3.get_object(bucket, f"c{i}") == body
        info = await s3.head_object(bucket, f"c{i}")
        assert info.etag == hashlib.md5(body).hexdigest()
        assert "aws-chunked" not in info.headers.get("Content-Encoding", "")
    assert await _chunked_put(cluster, f"/{bucket}/bad", body, sigv4.STREAMING_SIGNED, None,
                              tamper=True) == (403, "SignatureDoesNotMatch")
    wrong = {"x-amz-checksum-crc32": checksum("CRC32", b"other")}
    assert await _chunked_put(cluster, f"/{bucket}/bad", body,
                              sigv4.STREAMING_UNSIGNED_TRAILER, wrong) == (400, "BadDigest")
    assert (await s3.list_objects(bucket, prefix="bad")) == ([], [])
