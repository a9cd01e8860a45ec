"""The edge's hit path (``httpcache.fast_server``) on a real socket: hits answered by it,
everything else handed to aiohttp on the same connection, in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from edge.signing import sign_url
from httpcache.app import ENGINE
from httpcache.cache_status import parse_members
from httpcache.dates import format_http_date
from httpcache.fast_server import HitServer, proxied_elsewhere
from httpcache.headers import Fields
from httpcache.hit_path import HitPath, MissPlan
from tests.integration.cache.conftest import Topology, metric

KEYS = {"k1": "secret-1"}
BODY = bytes(range(256)) * 8  # 2 KiB
CACHEABLE = {"Cache-Control": "max-age=60", "ETag": '"v1"', "Content-Type": "text/plain"}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def cache_status(self) -> dict[str, str | bool]:
        return parse_members(self.headers.get("cache-status"))[-1][1]


@dataclass
class Edge:
    topo: Topology
    server: HitServer
    port: int

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> Response:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = b"" if head or status == 304 else await reader.readexactly(length)
    return Response(status, headers, body)


def get(path: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: edge", *extra, "", ""]
    return "\r\n".join(lines).encode()


@contextlib.asynccontextmanager
async def hit_front(topo: Topology) -> AsyncIterator[Edge]:
    """The topology's edge application behind a hit-path front on its own port."""
    assert topo.edge is not None and topo.edge.runner is not None
    server = HitServer(HitPath(topo.edge_app[ENGINE]), topo.edge.runner.server,
                       app_paths=proxied_elsewhere(topo.edge_app))
    listener = await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)
    try:
        yield Edge(topo, server, listener.sockets[0].getsockname()[1])
    finally:
        listener.close()
        server.close_connections()


@pytest.fixture
async def edge(make_topology: Callable[..., Awaitable[Topology]]) -> AsyncIterator[Edge]:
    topo = await make_topology(shields=0, edge={"signing_keys": KEYS,
                                                "signed_buckets": ("private",)})
    topo.origin.set("/a", BODY, headers=CACHEABLE)
    topo.origin.set("/b", b"bee", headers=CACHEABLE)
    topo.origin.set("/private/doc", b"secret", headers=CACHEABLE)
    async with hit_front(topo) as front:
        yield front


async def warm(edge: Edge, *paths: str) -> None:
    for path in paths:
        resp, _ = await edge.topo.get(path)
        assert resp.status == 200


async def test_hits_are_answered_by_the_hit_path_with_age_and_cache_status(edge: Edge) -> None:
    await warm(edge, "/a")
    edge.topo.clock.advance(7)
    reader, writer = await edge.connect()
    writer.write(get("/a") + get("/a", method="HEAD"))
    first = await read_response(reader)
    second = await read_response(reader, head=True)
    assert first.status == 200 and first.body == BODY
    assert first.headers["age"] == "7"
    assert first.cache_status() == {"hit": True, "ttl": "53"}
    assert first.headers["content-length"] == str(len(BODY))
    assert first.headers["accept-ranges"] == "bytes"
    assert first.headers["date"]  # the origin's
    assert first.headers["via"] == "1.1 cdn-edge-test"
    assert second.status == 200 and second.headers["content-length"] == str(len(BODY))
    assert edge.server.handed_over == 0
    assert metric(edge.topo.edge_app, "cdn_requests_total", result="hit") == 2
    writer.close()


async def test_pipelined_hits_and_a_miss_are_answered_in_order(edge: Edge) -> None:
    await warm(edge, "/a")
    reader, writer = await edge.connect()
    writer.write(get("/a") + get("/b") + get("/a", "Range: bytes=0-3") + get("/b"))
    answers = [await read_response(reader) for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 206, 200]
    assert [a.body for a in answers] == [BODY, b"bee", BODY[:4], b"bee"]
    assert answers[0].cache_status().get("hit") is True
    assert answers[1].cache_status().get("fwd") == "uri-miss"
    assert answers[1].cache_status().get("stored") is True
    assert answers[3].cache_status().get("hit") is True  # stored by the miss before it
    assert edge.server.handed_over == 0  # the miss was answered on the hit path too
    assert edge.topo.origin.count("/b") == 1
    writer.write(get("/a"))  # the connection still works
    assert (await read_response(reader)).body == BODY
    writer.close()


async def test_misses_on_the_hit_path_keep_the_connection(edge: Edge) -> None:
    """A plain miss is answered by the protocol (the engine's flight, its fields) and the
    connection goes on with the hit path: HEAD, HTTP/1.0, Connection: close, an upstream
    failure (502 as the application answers it), a body the origin breaks off (cut)."""
    reader, writer = await edge.connect()
    writer.write(get("/a", method="HEAD"))
    head = await read_response(reader, head=True)
    assert head.status == 200 and head.headers["content-length"] == str(len(BODY))
    assert head.cache_status().get("fwd") == "uri-miss"
    assert head.headers["via"] == "1.1 cdn-edge-test" and head.headers["date"]
    writer.write(get("/a") + get("/a") + get("/nothing-here"))
    miss, hit, missing = [await read_response(reader) for _ in range(3)]
    assert miss.body == BODY and miss.cache_status().get("stored") is True
    assert hit.body == BODY and hit.cache_status().get("hit") is True
    assert missing.status == 404 and missing.cache_status().get("fwd") == "uri-miss"
    assert edge.server.handed_over == 0
    writer.close()

    reader, writer = await edge.connect()
    writer.write(get("/b", version="1.0"))
    old = await read_response(reader)
    assert old.status == 200 and old.body == b"bee"
    assert await reader.read() == b""  # HTTP/1.0 without keep-alive: closed after
    writer.close()

    edge.topo.origin.set("/c", b"sea", headers=CACHEABLE)
    reader, writer = await edge.connect()
    writer.write(get("/c", "Connection: close"))
    closing = await read_response(reader)
    assert closing.body == b"sea" and closing.headers["connection"] == "close"
    assert await reader.read() == b""
    writer.close()

    edge.topo.origin.set("/cut", BODY * 64, headers=CACHEABLE, chunk_size=4096,
                         abort_after=8192)
    reader, writer = await edge.connect()
    writer.write(get("/cut"))
    raw = await reader.read()  # the edge cuts the connection: a short body, never a whole one
    assert raw.startswith(b"HTTP/1.1 200") and len(raw.split(b"\r\n\r\n", 1)[1]) < len(BODY * 64)
    writer.close()

    await edge.topo.origin_server.close()  # the origin goes away
    reader, writer = await edge.connect()
    writer.write(get("/gone") + get("/a"))
    failed, hit = await read_response(reader), await read_response(reader)
    assert failed.status == 502 and failed.headers["cache-control"] == "no-store"
    assert failed.cache_status().get("detail") == "UpstreamUnavailable"
    assert hit.body == BODY  # same connection, still answered
    assert edge.server.handed_over == 0
    writer.close()


async def test_a_miss_running_its_own_flight_fills_the_cache_when_its_client_leaves(
        edge: Edge) -> None:
    """The first GET of a key runs the flight in its own task (``inline_flight``): a second
    client joins it and gets every byte, and the first client leaving mid-body cancels
    neither the fill nor the other's answer: one origin request, then hits."""
    body = bytes(range(256)) * 1024  # 256 KiB, over about 0.3 s
    edge.topo.origin.set("/shared", body, headers=CACHEABLE, chunk_size=8192,
                         chunk_delay=0.01)
    first_reader, first = await edge.connect()
    first.write(get("/shared"))
    started = await first_reader.readuntil(b"\r\n\r\n")
    assert started.startswith(b"HTTP/1.1 200")
    second_reader, second = await edge.connect()
    second.write(get("/shared"))
    await asyncio.sleep(0.03)  # joined the running flight
    first.transport.abort()  # the owner's client goes away mid-body: the edge's next write
    # to it fails while the flight is still being fed
    async with asyncio.timeout(10):
        joined = await read_response(second_reader)
    assert joined.body == body and joined.cache_status().get("collapsed") is True
    second.close()
    reader, writer = await edge.connect()
    writer.write(get("/shared"))
    hit = await read_response(reader)
    assert hit.body == body and hit.cache_status().get("hit") is True
    assert edge.topo.origin.count("/shared") == 1
    writer.close()


async def test_a_miss_planned_during_a_flight_that_has_ended_is_answered_from_the_cache(
        edge: Edge) -> None:
    """A request read while its key's flight runs is planned as a miss and answered in a
    task; when that task starts only after the flight ended (a flash crowd's latecomers read
    in the loop turn the fetch completes in), it answers what the flight stored instead of
    fetching again: one origin GET."""
    body = bytes(range(256)) * 256  # 64 KiB, over about 0.1 s
    edge.topo.origin.set("/race", body, headers=CACHEABLE, chunk_size=8192, chunk_delay=0.01)
    first_reader, first = await edge.connect()
    first.write(get("/race"))
    await first_reader.readuntil(b"\r\n\r\n")  # the flight runs
    hit_path = edge.server.hit_path
    plan = hit_path.answer("GET", "/race", Fields.indexed([("Host", "edge")]), None,
                           misses=True)
    assert isinstance(plan, MissPlan)  # what HitProtocol keeps for its task
    await first_reader.readexactly(len(body))  # the flight has ended, the response stored
    known = set(edge.server.connections)
    reader, writer = await edge.connect()
    writer.write(get("/b"))  # answered: the edge's side of this connection exists
    assert (await read_response(reader)).body == b"bee"
    (client,) = set(edge.server.connections) - known
    assert await hit_path.serve_miss(plan, client, b"", True)  # the task, late
    late = await read_response(reader)
    assert late.body == body and late.cache_status().get("hit") is True
    assert edge.topo.origin.count("/race") == 1
    first.close()
    writer.close()


async def test_a_paused_client_of_its_own_flight_gets_the_rest_afterwards(edge: Edge) -> None:
    """An owner whose client reads nothing while the body streams in (its transport pauses)
    is written the rest from the flight once it reads again: exact bytes, in order."""
    body = bytes(range(251)) * 32 * 1024  # ~8 MiB: more than the socket buffers hold
    edge.topo.origin.set("/big", body, headers=CACHEABLE, chunk_size=256 * 1024)
    reader, writer = await edge.connect()
    writer.write(get("/big") + get("/b"))
    await asyncio.sleep(0.5)  # the fetch runs on while the client does not read
    async with asyncio.timeout(10):
        whole = await read_response(reader)
    assert whole.status == 200 and whole.body == body
    after = await read_response(reader)  # the connection goes on after it
    assert after.body == b"bee"
    assert edge.topo.origin.count("/big") == 1
    writer.close()


async def test_conditional_and_ranged_misses_go_to_the_application(edge: Edge) -> None:
    reader, writer = await edge.connect()
    writer.write(get("/a", "Range: bytes=0-3"))
    part = await read_response(reader)
    assert part.status == 206 and part.body == BODY[:4]
    assert edge.server.handed_over == 1
    writer.close()


async def test_conditionals_and_ranges_from_the_hit_path(edge: Edge) -> None:
    await warm(edge, "/a")
    reader, writer = await edge.connect()
    writer.write(get("/a", 'If-None-Match: "v1"') + get("/a", "Range: bytes=-10")
                 + get("/a", "Range: bytes=5000-") + get("/a", 'If-None-Match: "v0"'))
    not_modified = await read_response(reader)
    partial = await read_response(reader)
    unsatisfiable = await read_response(reader)
    full = await read_response(reader)
    assert not_modified.status == 304 and not_modified.headers["etag"] == '"v1"'
    assert "content-length" not in not_modified.headers
    assert partial.status == 206 and partial.body == BODY[-10:]
    assert partial.headers["content-range"] == f"bytes {len(BODY) - 10}-{len(BODY) - 1}/2048"
    assert unsatisfiable.status == 416
    assert unsatisfiable.headers["content-range"] == "bytes */2048"
    assert full.status == 200 and full.body == BODY
    assert edge.server.handed_over == 0
    assert metric(edge.topo.edge_app, "cdn_requests_total", result="not_modified") == 1
    writer.close()


async def test_if_modified_since_gives_304(edge: Edge) -> None:
    edge.topo.origin.set("/m", b"mm", headers={
        **CACHEABLE, "Last-Modified": format_http_date(edge.topo.clock() - 100)})
    await warm(edge, "/m")
    reader, writer = await edge.connect()
    writer.write(get("/m", f"If-Modified-Since: {format_http_date(edge.topo.clock())}"))
    assert (await read_response(reader)).status == 304
    writer.close()


async def test_same_answers_as_the_application(edge: Edge) -> None:
    """Field for field (but Server and Date, which aiohttp adds), what aiohttp would send."""
    await warm(edge, "/a")
    for extra in ([], ["Range: bytes=1-2"], ['If-None-Match: "v1"'], ["Range: bytes=9999-"]):
        ours_r, ours_w = await edge.connect()
        ours_w.write(get("/a", *extra))
        ours = await read_response(ours_r)
        theirs_r, theirs_w = await asyncio.open_connection("127.0.0.1",
                                                           edge.topo.edge.port)  # type: ignore[union-attr]
        theirs_w.write(get("/a", *extra))
        theirs = await read_response(theirs_r)
        assert ours.status == theirs.status
        assert ours.body == theirs.body
        skip = {"server"}
        assert {k: v for k, v in ours.headers.items() if k not in skip} == \
            {k: v for k, v in theirs.headers.items() if k not in skip}, extra
        ours_w.close()
        theirs_w.close()


async def test_signed_urls_checked_on_the_hit_path(edge: Edge) -> None:
    url = sign_url("/private/doc", key_id="k1", secret=KEYS["k1"],
                   expires_at=int(edge.topo.clock()) + 60)
    await warm(edge, url)
    reader, writer = await edge.connect()
    writer.write(get(url))
    hit = await read_response(reader)
    assert hit.status == 200 and hit.body == b"secret" and hit.cache_status().get("hit")
    assert edge.server.handed_over == 0
    writer.write(get(url.replace("sig=", "sig=x")))
    denied = await read_response(reader)
    assert denied.status == 403
    assert metric(edge.topo.edge_app, "cdn_requests_total", result="denied") == 1
    writer.close()


async def test_malformed_request_gets_400_and_the_connection_closes(edge: Edge) -> None:
    await warm(edge, "/a")
    reader, writer = await edge.connect()
    writer.write(get("/a") + b"GET /a HTTP/1.1\r\nBad Header\r\n\r\n")
    assert (await read_response(reader)).status == 200
    bad = await read_response(reader)
    assert bad.status == 400 and bad.body.startswith(b"400 Bad Request: not a valid HTTP/1.1")
    assert bad.headers["connection"] == "close" and bad.headers["cache-control"] == "no-store"
    assert bad.cache_status().get("detail") == "MalformedRequest"
    assert metric(edge.topo.edge_app, "cdn_requests_total", result="refused") == 1
    assert await reader.read() == b""
    writer.close()


async def test_oversized_head_gets_431(edge: Edge) -> None:
    reader, writer = await edge.connect()
    writer.write(b"GET /a HTTP/1.1\r\n" + b"X-Big: " + b"x" * 70_000)
    too_large = await read_response(reader)
    assert too_large.status == 431 and b"larger than 65536 bytes" in too_large.body
    assert await reader.read() == b""
    writer.close()


async def test_long_field_is_handed_to_aiohttp(edge: Edge) -> None:
    reader, writer = await edge.connect()
    writer.write(get("/a", "X-Long: " + "y" * 20_000))
    assert (await read_response(reader)).status in (400, 431)
    assert edge.server.handed_over == 1  # aiohttp answered it, not the hit path
    writer.close()


async def test_connection_close_and_http_1_0(edge: Edge) -> None:
    await warm(edge, "/a")
    reader, writer = await edge.connect()
    writer.write(get("/a", "Connection: close") + get("/a"))
    answer = await read_response(reader)
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert await reader.read() == b""  # the second request is not answered
    writer.close()

    reader, writer = await edge.connect()
    writer.write(get("/a", "Connection: keep-alive", version="1.0") + get("/a", version="1.0"))
    first = await read_response(reader)
    assert first.headers["connection"] == "keep-alive" and first.body == BODY
    second = await read_response(reader)
    assert second.headers["connection"] == "close" and second.body == BODY
    assert await reader.read() == b""
    writer.close()


async def test_request_split_across_reads_and_post_handed_over(edge: Edge) -> None:
    await warm(edge, "/a")
    reader, writer = await edge.connect()
    raw = get("/a")
    for cut in (len(raw) - 3, len(raw) - 2, len(raw) - 1):  # the CRLF CRLF split
        writer.write(raw[:cut])
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(raw[cut:])
        assert (await read_response(reader)).body == BODY
    assert edge.server.handed_over == 0
    writer.write(b"POST /b HTTP/1.1\r\nHost: edge\r\nContent-Length: 5\r\n\r\nhello" + get("/a"))
    posted = await read_response(reader)
    assert posted.cache_status().get("fwd") == "method"
    assert (await read_response(reader)).body == BODY
    assert edge.topo.origin.last("/b").body == b"hello"
    writer.close()


async def test_metrics_and_health_are_the_applications(edge: Edge) -> None:
    reader, writer = await edge.connect()
    writer.write(get("/_health"))
    assert (await read_response(reader)).body == b"ok\n"
    writer.close()


# -- misses whose flight runs on the upstream connection's callbacks (callback_fill) --------

async def keep_an_upstream_connection(edge: Edge) -> None:
    """Leave an idle kept-alive connection in the edge's lean pool (a miss through the hit
    path): the next plain miss can then be sent at once and run on callbacks."""
    edge.topo.origin.set("/opener", b"open", headers=CACHEABLE)
    reader, writer = await edge.connect()
    writer.write(get("/opener"))
    assert (await read_response(reader)).body == b"open"
    writer.close()


async def test_a_plain_miss_on_a_kept_alive_upstream_connection_runs_on_callbacks(
        edge: Edge) -> None:
    """Answered, stored and counted as by the flight in a task: the same fields, then hits;
    the upstream connection is reused for the next miss."""
    await keep_an_upstream_connection(edge)
    hits = edge.server.hit_path
    before = hits.callback_fills
    upstream_200 = metric(edge.topo.edge_app, "cdn_upstream_requests_total", method="GET",
                          status="200")
    reader, writer = await edge.connect()
    writer.write(get("/a") + get("/a"))
    miss, hit = await read_response(reader), await read_response(reader)
    assert miss.status == 200 and miss.body == BODY
    assert miss.cache_status() == {"fwd": "uri-miss", "fwd-status": "200", "stored": True}
    assert miss.headers["etag"] == '"v1"' and miss.headers["via"] == "1.1 cdn-edge-test"
    assert miss.headers["content-length"] == str(len(BODY))
    assert hit.body == BODY and hit.cache_status().get("hit") is True
    writer.write(get("/b"))
    assert (await read_response(reader)).body == b"bee"
    assert hits.callback_fills == before + 2
    assert metric(edge.topo.edge_app, "cdn_upstream_requests_total", method="GET",
                  status="200") == upstream_200 + 2
    assert metric(edge.topo.edge_app, "cdn_requests_total", result="miss") >= 3
    assert edge.topo.origin.count("/a") == 1 and edge.topo.origin.count("/b") == 1
    writer.close()


async def test_a_callback_fill_is_joined_by_concurrent_requests(edge: Edge) -> None:
    await keep_an_upstream_connection(edge)
    body = bytes(range(256)) * 256  # 64 KiB, over about 0.1 s
    edge.topo.origin.set("/joined", body, headers=CACHEABLE, chunk_size=8192,
                         chunk_delay=0.01)
    before = edge.server.hit_path.callback_fills
    first_reader, first = await edge.connect()
    first.write(get("/joined"))
    await asyncio.sleep(0.02)
    second_reader, second = await edge.connect()
    second.write(get("/joined"))
    async with asyncio.timeout(10):
        owner = await read_response(first_reader)
        joined = await read_response(second_reader)
    assert owner.body == body and joined.body == body
    assert joined.cache_status().get("collapsed") is True
    assert edge.server.hit_path.callback_fills == before + 1
    assert edge.topo.origin.count("/joined") == 1
    first.close()
    second.close()


async def test_a_callback_fill_on_a_connection_the_upstream_closed_connects_anew(
        edge: Edge) -> None:
    """The reused connection is closed before any byte of the answer: the request is sent
    again on a new connection (in a task, as ``LeanExchange`` does), once."""
    await keep_an_upstream_connection(edge)
    edge.topo.origin.set("/hangs-up", b"", hang_up=True)
    before = edge.server.hit_path.callback_fills
    reader, writer = await edge.connect()
    writer.write(get("/hangs-up") + get("/b"))
    failed, after = await read_response(reader), await read_response(reader)
    assert failed.status == 502
    assert failed.cache_status().get("detail") == "UpstreamDisconnected"
    assert edge.topo.origin.count("/hangs-up") == 2  # the reused connection, then a new one
    assert edge.server.hit_path.callback_fills == before + 1
    assert after.body == b"bee"  # the client's connection goes on
    writer.close()


async def test_a_callback_fill_times_out_when_the_upstream_says_nothing(
        make_topology: Callable[..., Awaitable[Topology]]) -> None:
    topo = await make_topology(shields=0, edge={"upstream_read_timeout": 0.3})
    topo.origin.set("/opener", b"open", headers=CACHEABLE)
    topo.origin.set("/slow", b"late", headers=CACHEABLE, head_delay=3)
    topo.origin.set("/b", b"bee", headers=CACHEABLE)
    async with hit_front(topo) as front:
        reader, writer = await front.connect()
        writer.write(get("/opener"))
        await read_response(reader)
        async with asyncio.timeout(5):
            writer.write(get("/slow") + get("/b"))
            late, after = await read_response(reader), await read_response(reader)
        assert late.status == 504 and late.cache_status().get("detail") == "UpstreamTimeout"
        assert after.body == b"bee"
        # /slow; its connection was closed, so /b connected anew
        assert front.server.hit_path.callback_fills == 1
        writer.close()


async def test_a_callback_fill_cut_by_the_upstream_cuts_the_answer(edge: Edge) -> None:
    await keep_an_upstream_connection(edge)
    edge.topo.origin.set("/cut", BODY * 64, headers=CACHEABLE, chunk_size=4096,
                         abort_after=8192)
    before = edge.server.hit_path.callback_fills
    reader, writer = await edge.connect()
    writer.write(get("/cut"))
    raw = await reader.read()  # a short body, then the connection is closed
    assert raw.startswith(b"HTTP/1.1 200") and len(raw.split(b"\r\n\r\n", 1)[1]) < len(BODY * 64)
    assert edge.server.hit_path.callback_fills == before + 1
    writer.close()
    reader, writer = await edge.connect()
    writer.write(get("/cut"))  # nothing was stored: fetched again
    assert (await reader.read()).startswith(b"HTTP/1.1 200")
    assert edge.topo.origin.count("/cut") == 2
    writer.close()


async def test_a_paused_client_of_a_callback_fill_gets_the_rest_afterwards(edge: Edge) -> None:
    """The fill ends while its client reads nothing: the rest is written by a task as the
    client drains, exact bytes, then the connection goes on."""
    await keep_an_upstream_connection(edge)
    body = bytes(range(251)) * 32 * 1024  # ~8 MiB: more than the socket buffers hold
    edge.topo.origin.set("/big", body, headers=CACHEABLE, chunk_size=256 * 1024)
    before = edge.server.hit_path.callback_fills
    reader, writer = await edge.connect()
    writer.write(get("/big") + get("/b"))
    await asyncio.sleep(0.5)  # the fill ends while the client does not read
    async with asyncio.timeout(10):
        whole = await read_response(reader)
        after = await read_response(reader)
    assert whole.status == 200 and whole.body == body
    assert after.body == b"bee"
    assert edge.server.hit_path.callback_fills == before + 2
    assert edge.topo.origin.count("/big") == 1
    writer.close()


async def test_a_callback_fill_through_a_shield(
        make_topology: Callable[..., Awaitable[Topology]]) -> None:
    """An edge in front of shields sends a plain miss at once to the key's shield too."""
    topo = await make_topology(shields=1)
    topo.origin.set("/opener", b"open", headers=CACHEABLE)
    topo.origin.set("/a", BODY, headers=CACHEABLE)
    async with hit_front(topo) as front:
        reader, writer = await front.connect()
        writer.write(get("/opener"))  # leaves a connection to the shield
        await read_response(reader)
        writer.write(get("/a"))
        miss = await read_response(reader)
        assert miss.status == 200 and miss.body == BODY
        members = parse_members(miss.headers["cache-status"])
        assert [name for name, _ in members][-1] == "cdn-edge-test"
        assert members[-1][1].get("fwd") == "uri-miss" and members[-1][1].get("stored") is True
        assert topo.origin.count("/a") == 1
        assert front.server.hit_path.callback_fills == 1
        writer.write(get("/a"))
        assert (await read_response(reader)).cache_status().get("hit") is True
        writer.close()
