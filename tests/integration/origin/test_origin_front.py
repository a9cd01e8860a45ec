"""The origin's protocol-level front (``origin.api.front``) in a real origin process: the
session cluster's origin runs it; a second origin on the same database and nodes runs with
``--no-front`` (aiohttp only), and the same raw requests must get the same answers from both.
Requests the front does not take (HEAD, queries, Expect, multi-segment GETs handed over after
the handler found they must stream) are answered by aiohttp on the same connection."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from origin import sigv4
from origin.client import S3Client
from tests.integration.origin.conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    SEGMENT_SIZE,
    Cluster,
)
from tests.procs import RoleProcess

Answer = tuple[int, dict[str, str], bytes]
# Differ between any two answers, whoever sends them.
_VOLATILE = {"date", "x-amz-request-id"}


@pytest.fixture(scope="module")
def plain_origin(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[RoleProcess]:
    """An origin without the front, on the session cluster's database and nodes."""
    logs = tmp_path_factory.mktemp("plain-origin")
    proc = cluster.another_origin(logs / "origin.log", "--no-front")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def signed(method: str, path: str, body: bytes = b"", *extra: tuple[str, str],
           host: str = "origin", payload_hash: str | None = None,
           secret: str = SECRET_KEY) -> bytes:
    """A raw SigV4-signed HTTP/1.1 request (the signature covers Host and the payload)."""
    raw_path, _q, query = path.partition("?")
    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Host": host, **dict(extra)}
    auth = sigv4.sign_request(method=method, path=raw_path,
                              query=sigv4.parse_query(query), headers=headers,
                              access_key=ACCESS_KEY, secret_key=secret, region="us-east-1",
                              amz_date=amz_date,
                              payload_hash=payload_hash or hashlib.sha256(body).hexdigest())
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in {**headers, **auth}.items())]
    if method == "PUT":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def exchange(url: str, raw: bytes, count: int, head_only: set[int] = frozenset()
                   ) -> tuple[list[Answer], bytes]:
    """Send ``raw`` on one connection; ``count`` answers in order (those whose index is in
    ``head_only`` answer a HEAD: no body), and whatever the server sent after them before
    closing (or b"" if it kept the connection open)."""
    host, _c, port = url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        answers = []
        for i in range(count):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            lines = head.decode().split("\r\n")
            status = int(lines[0].split(" ")[1])
            fields = {k.lower(): v.strip() for k, _c, v in
                      (x.partition(":") for x in lines[1:] if x)}
            length = 0 if i in head_only or status in (100, 304) else int(fields["content-length"])
            answers.append((status, fields, await reader.readexactly(length)))
        try:
            rest = await asyncio.wait_for(reader.read(), 0.3)
        except TimeoutError:
            rest = b""
        return answers, rest
    finally:
        writer.close()


def comparable(answer: Answer) -> tuple[int, dict[str, str], bytes]:
    status, fields, body = answer
    body = re.sub(rb"<RequestId>[^<]*</RequestId>", b"<RequestId/>", body)
    return status, {k: v for k, v in fields.items() if k not in _VOLATILE}, body


@pytest.fixture
async def bucket(cluster: Cluster) -> str:
    name = f"front-{uuid.uuid4().hex[:10]}"
    async with S3Client(cluster.endpoint, ACCESS_KEY, SECRET_KEY) as s3:
        await s3.create_bucket(name)
    return name


async def test_front_and_aiohttp_answer_alike(cluster: Cluster, plain_origin: RoleProcess,
                                              bucket: str) -> None:
    data = os.urandom(5000)
    put = signed("PUT", f"/{bucket}/same", data, ("Content-Type", "text/plain"),
                 ("Cache-Control", "max-age=60"), ("x-amz-meta-colour", "blue"),
                 ("Surrogate-Key", "a b"))
    [(status, fields, _b)], _r = await exchange(cluster.endpoint, put, 1)
    assert status == 200
    etag = fields["etag"]
    requests = [
        put,  # a PUT again, same bytes: same ETag, a new object
        signed("GET", f"/{bucket}/same"),
        signed("GET", f"/{bucket}/same", b"", ("If-None-Match", etag)),
        signed("GET", f"/{bucket}/same", b"", ("If-Match", '"nope"')),
        signed("GET", f"/{bucket}/same", b"", ("Range", "bytes=10-19")),
        signed("GET", f"/{bucket}/same", b"", ("Range", "bytes=9000-")),
        signed("GET", f"/{bucket}/missing"),
        signed("GET", f"/no-such-bucket-{uuid.uuid4().hex[:6]}/k"),
        signed("GET", f"/{bucket}/same", secret="wrong-secret"),
        signed("PUT", f"/{bucket}/bad-sha", b"abc", payload_hash="0" * 64),
        signed("PUT", f"/{bucket}/bad-md5", b"abc", ("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==")),
        signed("PUT", f"/{bucket}/%E2%82%AC%20x", b"euro"),
        signed("GET", f"/{bucket}/%E2%82%AC%20x"),
        signed("GET", f"/{bucket}/same").replace(b"Host: origin", b"Host: other"),  # unsigned
    ]
    for raw in requests:
        [front], _r = await exchange(cluster.endpoint, raw, 1)
        [plain], _r = await exchange(plain_origin.url, raw, 1)
        assert comparable(front) == comparable(plain), raw.split(b"\r\n")[0]
        assert front[1]["x-amz-request-id"] and front[1]["date"]
    [(status, _f, body)], _r = await exchange(cluster.endpoint,
                                              signed("GET", f"/{bucket}/same"), 1)
    assert (status, body) == (200, data)


async def test_pipelined_requests_and_hand_over_keep_order(cluster: Cluster,
                                                           bucket: str) -> None:
    """One write holding PUT, GET, HEAD (aiohttp's), GET: four answers, in order, on one
    connection (after the hand-over aiohttp answers the rest)."""
    a, b = os.urandom(3000), os.urandom(4000)
    raw = (signed("PUT", f"/{bucket}/p1", a) + signed("GET", f"/{bucket}/p1")
           + signed("PUT", f"/{bucket}/p2", b) + signed("HEAD", f"/{bucket}/p1")
           + signed("GET", f"/{bucket}/p2"))
    answers, rest = await exchange(cluster.endpoint, raw, 5, head_only={3})
    assert [s for s, _f, _b in answers] == [200, 200, 200, 200, 200]
    assert answers[1][2] == a and answers[4][2] == b
    assert answers[3][1]["content-length"] == "3000" and answers[3][2] == b""
    assert rest == b""


async def test_streamed_get_is_answered_by_aiohttp(cluster: Cluster, bucket: str) -> None:
    """An object of several segments (and an empty one) needs a streamed answer: the front
    hands the GET to aiohttp, which answers it and the next request on the connection."""
    big = os.urandom(2 * SEGMENT_SIZE + 123)
    async with S3Client(cluster.endpoint, ACCESS_KEY, SECRET_KEY) as s3:
        await s3.put_object(bucket, "big", big)
        await s3.put_object(bucket, "empty", b"")
    raw = (signed("GET", f"/{bucket}/big") + signed("GET", f"/{bucket}/empty")
           + signed("GET", f"/{bucket}/big", b"", ("Range", "bytes=5-9")))
    answers, _rest = await exchange(cluster.endpoint, raw, 3)
    assert [(s, body) for s, _f, body in answers] == [(200, big), (200, b""), (206, big[5:10])]


async def test_connection_close_expect_and_query(cluster: Cluster, bucket: str) -> None:
    body = os.urandom(1000)
    # Expect: 100-continue is aiohttp's (it sends the interim answer).
    put = signed("PUT", f"/{bucket}/e", body, ("Expect", "100-continue"))
    answers, _rest = await exchange(cluster.endpoint, put, 2)
    assert [s for s, _f, _b in answers] == [100, 200]
    # A query string is aiohttp's too.
    answers, _rest = await exchange(cluster.endpoint,
                                    signed("GET", f"/{bucket}/e?versionId=null"), 1)
    assert answers[0][0] == 200 and answers[0][2] == body
    # Connection: close: the answer, then the end of the connection; later bytes unread.
    raw = (signed("GET", f"/{bucket}/e", b"", ("Connection", "close"))
           + signed("GET", f"/{bucket}/e"))
    answers, rest = await exchange(cluster.endpoint, raw, 1)
    assert answers[0][0] == 200 and answers[0][1]["connection"] == "close"
    assert rest == b""


async def test_large_put_and_bad_head_go_to_aiohttp(cluster: Cluster, bucket: str) -> None:
    body = os.urandom(300 << 10)  # over front_max_body: streamed by aiohttp
    answers, _rest = await exchange(cluster.endpoint, signed("PUT", f"/{bucket}/l", body), 1)
    assert answers[0][0] == 200
    answers, _rest = await exchange(cluster.endpoint, signed("GET", f"/{bucket}/l"), 1)
    assert answers[0][2] == body
    answers, rest = await exchange(cluster.endpoint, b"GET /x/y HTTP/1.1\r\nHost\r\n\r\n", 1)
    assert answers[0][0] == 400
