"""Origin → shield → edge on real loopback ports: the caching behaviour end to end."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from httpcache.app import STORE
from httpcache.cache_status import parse_members
from httpcache.headers import Fields
from httpcache.lean_client import DIRECT_UNASKED
from tests.integration.cache.conftest import Topology, metric

CACHEABLE = {"Cache-Control": "max-age=60", "ETag": '"v1"', "Surrogate-Key": "t1 t2",
             "Content-Type": "text/plain"}


def statuses(resp: aiohttp.ClientResponse) -> list[tuple[str, dict[str, str | bool]]]:
    return parse_members(resp.headers.get("Cache-Status"))


async def test_miss_then_hit_carries_age_and_cache_status(topo: Topology) -> None:
    topo.origin.set("/b/k", b"hello", headers=CACHEABLE)

    first, body = await topo.get("/b/k")
    assert first.status == 200 and body == b"hello"
    assert first.headers["Cache-Status"] == (
        "cdn-shield-1; fwd=uri-miss; fwd-status=200; stored, "
        "cdn-edge-test; fwd=uri-miss; fwd-status=200; stored")
    assert "Surrogate-Key" not in first.headers  # edge keeps tags to itself

    topo.clock.advance(10)
    second, body = await topo.get("/b/k")
    assert second.status == 200 and body == b"hello"
    assert second.headers["Age"] == "10"
    assert second.headers["Cache-Status"] == (
        "cdn-shield-1; fwd=uri-miss; fwd-status=200; stored, cdn-edge-test; hit; ttl=50")
    assert topo.origin.count("/b/k") == 1
    assert metric(topo.edge_app, "cdn_requests_total", result="hit") == 1
    assert topo.edge_store().keys_for_tag("t1") == {"/b/k"}
    assert metric(topo.shield_app(), "cdn_upstream_requests_total",
                  method="GET", status="200") == 1


async def test_max_age_expiry_revalidates_with_if_none_match(topo: Topology) -> None:
    topo.origin.set("/b/k", b"hello", headers={**CACHEABLE, "Cache-Control": "max-age=5"})
    await topo.get("/b/k")
    topo.clock.advance(6)

    resp, body = await topo.get("/b/k")

    assert resp.status == 200 and body == b"hello"
    last = topo.origin.last("/b/k")
    assert last.headers.get("If-None-Match") == '"v1"'
    assert topo.origin.count("/b/k") == 2
    members = statuses(resp)
    assert members[0] == ("cdn-shield-1", {"fwd": "stale", "fwd-status": "304", "stored": True})
    assert members[1][1]["fwd"] == "stale" and members[1][1]["fwd-status"] == "304"
    # refreshed at both tiers: fresh again for another max-age
    again, _ = await topo.get("/b/k")
    assert statuses(again)[-1][1].get("hit") is True
    assert topo.origin.count("/b/k") == 2


async def test_client_conditional_is_answered_304_from_cache(topo: Topology) -> None:
    topo.origin.set("/b/k", b"hello", headers=CACHEABLE)
    await topo.get("/b/k")

    resp, body = await topo.get("/b/k", headers={"If-None-Match": 'W/"v1", "other"'})

    assert resp.status == 304 and body == b""
    assert resp.headers["ETag"] == '"v1"'
    assert "hit" in resp.headers["Cache-Status"]
    assert topo.origin.count("/b/k") == 1


async def test_client_conditional_on_a_miss_is_answered_304(topo: Topology) -> None:
    topo.origin.set("/b/k", b"hello", headers=CACHEABLE)

    resp, _ = await topo.get("/b/k", headers={"If-None-Match": '"v1"'})

    assert resp.status == 304
    # the tiers asked for the full representation and stored it
    assert "If-None-Match" not in topo.origin.last("/b/k").headers
    again, body = await topo.get("/b/k")
    assert again.status == 200 and body == b"hello"
    assert topo.origin.count("/b/k") == 1


async def test_no_store_and_private_are_not_cached(topo: Topology) -> None:
    topo.origin.set("/b/nostore", b"a", headers={"Cache-Control": "no-store"})
    topo.origin.set("/b/private", b"b", headers={"Cache-Control": "private, max-age=60"})
    for path in ("/b/nostore", "/b/private"):
        for _ in range(2):
            resp, _ = await topo.get(path)
            assert resp.status == 200
            assert "stored" not in resp.headers["Cache-Status"]
        assert topo.origin.count(path) == 2


async def test_set_cookie_is_never_served_from_cache(topo: Topology) -> None:
    topo.origin.set("/b/login", b"hi", headers={"Cache-Control": "max-age=60",
                                                "Set-Cookie": "session=alice"})
    first, _ = await topo.get("/b/login")
    second, body = await topo.get("/b/login")
    assert first.headers.get("Set-Cookie") == "session=alice"  # to the client that caused it
    assert topo.origin.count("/b/login") == 1 and body == b"hi"
    assert "Set-Cookie" not in second.headers  # stored without the cookie


async def test_set_cookie_response_is_not_stored_when_configured_off(make_topology) -> None:  # type: ignore[no-untyped-def]
    topo = await make_topology(edge={"cache_set_cookie": False},
                               shield={"cache_set_cookie": False})
    topo.origin.set("/b/login", b"hi", headers={"Cache-Control": "max-age=60",
                                                "Set-Cookie": "session=alice"})
    await topo.get("/b/login")
    second, _ = await topo.get("/b/login")
    assert topo.origin.count("/b/login") == 2
    assert second.headers.get("Set-Cookie") == "session=alice"  # fetched anew, not cached


async def test_cdn_cache_control_takes_precedence(topo: Topology) -> None:
    topo.origin.set("/b/k", b"x", headers={"Cache-Control": "no-cache",
                                           "CDN-Cache-Control": "max-age=60"})
    await topo.get("/b/k")
    resp, _ = await topo.get("/b/k")
    assert "hit" in resp.headers["Cache-Status"]
    assert resp.headers["Cache-Control"] == "no-cache"  # browsers still see theirs
    assert topo.origin.count("/b/k") == 1


async def test_hundred_concurrent_cold_requests_make_one_origin_request(
        topo: Topology) -> None:
    body = bytes(range(256)) * 400  # 100 KiB, streamed in chunks
    topo.origin.set("/b/big", body, headers=CACHEABLE, chunk_size=16384, head_delay=0.2)

    results = await asyncio.gather(*(topo.get("/b/big") for _ in range(100)))

    assert all(resp.status == 200 and got == body for resp, got in results)
    assert topo.origin.count("/b/big") == 1
    assert metric(topo.edge_app, "cdn_requests_total", result="collapsed") == 99
    assert metric(topo.shield_app(), "cdn_upstream_requests_total",
                  method="GET", status="200") == 1


async def test_range_is_served_from_cache(topo: Topology) -> None:
    topo.origin.set("/b/k", b"0123456789", headers=CACHEABLE)
    await topo.get("/b/k")

    part, body = await topo.get("/b/k", headers={"Range": "bytes=2-5"})
    assert part.status == 206 and body == b"2345"
    assert part.headers["Content-Range"] == "bytes 2-5/10"
    tail, body = await topo.get("/b/k", headers={"Range": "bytes=-3"})
    assert tail.status == 206 and body == b"789"
    bad, _ = await topo.get("/b/k", headers={"Range": "bytes=50-"})
    assert bad.status == 416 and bad.headers["Content-Range"] == "bytes */10"
    assert topo.origin.count("/b/k") == 1
    assert "Range" not in topo.origin.last("/b/k").headers


async def test_head_is_answered_from_a_stored_get(topo: Topology) -> None:
    topo.origin.set("/b/k", b"0123456789", headers=CACHEABLE)
    await topo.get("/b/k")
    resp, body = await topo.request("HEAD", "/b/k")
    assert resp.status == 200 and body == b""
    assert resp.headers["Content-Length"] == "10"
    assert topo.origin.count("/b/k") == 1


async def test_post_is_forwarded_with_body_and_invalidates_the_url(topo: Topology) -> None:
    topo.origin.set("/b/k", b"v1", headers=CACHEABLE)
    await topo.get("/b/k?x=1")
    await topo.get("/b/k")
    resp, _ = await topo.request("POST", "/b/k", data=b"new body",
                                 headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200
    assert "fwd=method" in resp.headers["Cache-Status"]
    posted = topo.origin.seen[-1]
    assert (posted.method, posted.target, posted.body) == ("POST", "/b/k", b"new body")

    again, _ = await topo.get("/b/k")
    members = statuses(again)
    assert [m[1].get("fwd") for m in members] == ["uri-miss", "uri-miss"]
    assert topo.origin.count("/b/k", method="GET") == 3


async def test_every_method_is_forwarded_with_path_query_and_headers(topo: Topology) -> None:
    topo.origin.set("/b/k", b"", status=204)
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        resp, _ = await topo.request(method, "/b/k?a=1&b=%2F", data=b"payload",
                                     headers={"X-Custom": "yes", "Connection": "X-Hop",
                                              "X-Hop": "secret", "Keep-Alive": "timeout=5"})
        assert resp.status == 204
        seen = topo.origin.seen[-1]
        assert (seen.method, seen.target, seen.body) == (method, "/b/k?a=1&b=%2F", b"payload")
        assert seen.headers["X-Custom"] == "yes"
        assert "X-Hop" not in seen.headers and "Keep-Alive" not in seen.headers
        assert "X-CDN-Edge-Auth" not in seen.headers


async def test_upstream_down_is_a_readable_502(make_topology) -> None:  # type: ignore[no-untyped-def]
    topo = await make_topology(shields=0, edge={"upstream": "http://127.0.0.1:9"})
    resp, body = await topo.get("/b/k")
    assert resp.status == 502
    assert b"cannot reach upstream" in body


async def test_shield_refuses_requests_without_edge_auth(topo: Topology) -> None:
    shield_url = str(topo.shields["shield-1"].make_url("")).rstrip("/")
    assert topo.client is not None
    async with topo.client.get(shield_url + "/b/k") as resp:
        assert resp.status == 403
        assert "X-CDN-Edge-Auth" in await resp.text()
    async with topo.client.get(shield_url + "/_health") as resp:
        assert resp.status == 200
    assert topo.origin.count() == 0


async def test_truncated_upstream_body_is_cut_short_and_not_stored(topo: Topology) -> None:
    topo.origin.set("/b/broken", b"z" * 40000, headers=CACHEABLE, chunk_size=10000,
                    abort_after=20000)
    assert topo.client is not None
    with pytest.raises(aiohttp.ClientPayloadError):
        await topo.get("/b/broken")
    assert "/b/broken" not in topo.edge_store()
    assert "/b/broken" not in topo.shield_app()[STORE]
    topo.origin.scripts["/b/broken"].abort_after = None
    resp, body = await topo.get("/b/broken")
    assert resp.status == 200 and len(body) == 40000
    assert topo.origin.count("/b/broken") == 2


async def test_a_fetched_body_is_stored_as_the_buffer_it_was_read_into(topo: Topology) -> None:
    """A body of declared length is read by the upstream client into one buffer, and that
    buffer is what both tiers keep: the same bytes, with no join of the pieces."""
    body = bytes(range(256)) * 1200  # 300 KiB, sent in several pieces
    topo.origin.set("/b/whole", body, headers=CACHEABLE, chunk_size=50_000)
    resp, got = await topo.get("/b/whole")
    assert resp.status == 200 and got == body
    for store in (topo.edge_store(), topo.shield_app()[STORE]):
        stored, _vary_miss = store.lookup("/b/whole", Fields())
        assert stored is not None and stored.body == body
        assert type(stored.body) is bytearray
    again, got = await topo.get("/b/whole")
    assert got == body and "hit" in again.headers["Cache-Status"]


async def test_a_long_body_is_one_buffer_when_kept_and_streams_when_not(topo: Topology) -> None:
    """Longer than ``lean_client.DIRECT_UNASKED``: a body both tiers keep is still read
    into the one buffer they store; one they do not keep (``no-store``) streams through
    exactly (in pieces, which the backpressure bounds) and is stored nowhere."""
    body = bytes(range(256)) * (DIRECT_UNASKED // 256 + 4096)  # 1 MiB more than the limit
    topo.origin.set("/b/long", body, headers=CACHEABLE, chunk_size=256 * 1024)
    resp, got = await topo.get("/b/long")
    assert resp.status == 200 and got == body
    for store in (topo.edge_store(), topo.shield_app()[STORE]):
        stored, _vary_miss = store.lookup("/b/long", Fields())
        assert stored is not None and type(stored.body) is bytearray and stored.body == body
    topo.origin.set("/b/passing", body, headers={"Cache-Control": "no-store"},
                    chunk_size=256 * 1024)
    resp, got = await topo.get("/b/passing")
    assert resp.status == 200 and got == body
    assert "/b/passing" not in topo.edge_store()


async def test_upstream_timeout_is_a_504(make_topology) -> None:  # type: ignore[no-untyped-def]
    topo = await make_topology(shield={"upstream_read_timeout": 0.2})
    topo.origin.set("/b/slow", b"late", headers=CACHEABLE, head_delay=1.0)
    resp, body = await topo.get("/b/slow")
    assert resp.status == 504
    assert b"timed out" in body


async def test_object_too_big_for_memory_is_streamed_to_all_waiters_not_stored(
        make_topology) -> None:  # type: ignore[no-untyped-def]
    limits = {"cache_max_bytes": 1 << 20, "max_object_bytes": 10_000}
    topo = await make_topology(edge=limits, shield=limits)
    body = b"y" * 50_000
    topo.origin.set("/b/huge", body, headers=CACHEABLE, chunk_size=8192, head_delay=0.1)

    results = await asyncio.gather(*(topo.get("/b/huge") for _ in range(5)))

    assert all(got == body for _resp, got in results)
    assert topo.origin.count("/b/huge") == 1
    assert "/b/huge" not in topo.edge_store()
    assert all("stored" not in resp.headers["Cache-Status"] for resp, _ in results)
    await topo.get("/b/huge")
    assert topo.origin.count("/b/huge") == 2


async def test_head_miss_is_forwarded_as_head(topo: Topology) -> None:
    topo.origin.set("/b/k", b"0123456789", headers=CACHEABLE)
    resp, body = await topo.request("HEAD", "/b/k")
    assert resp.status == 200 and body == b""
    assert resp.headers["Content-Length"] == "10"
    assert topo.origin.seen[-1].method == "HEAD"
    assert "/b/k" not in topo.edge_store()


async def test_collapsed_waiters_with_another_variant_fetch_their_own(topo: Topology) -> None:
    topo.origin.set("/b/v", b"variant", headers={**CACHEABLE, "Vary": "Accept-Language"},
                    head_delay=0.1)
    first, second = await asyncio.gather(
        topo.get("/b/v", headers={"Accept-Language": "en"}),
        topo.get("/b/v", headers={"Accept-Language": "fr"}))
    assert first[0].status == second[0].status == 200
    seen = sorted(s.headers.get("Accept-Language", "") for s in topo.origin.seen)
    assert seen == ["en", "fr"]
    assert all("collapsed" not in r.headers["Cache-Status"] for r, _ in (first, second))
    resp, _ = await topo.get("/b/v", headers={"Accept-Language": "de"})
    assert "vary-miss" in resp.headers["Cache-Status"]


async def test_range_of_a_cold_object_too_big_to_store_is_streamed_as_a_slice(
        make_topology) -> None:  # type: ignore[no-untyped-def]
    limits = {"cache_max_bytes": 1 << 20, "max_object_bytes": 10_000}
    topo = await make_topology(edge=limits, shield=limits)
    body = bytes(range(256)) * 200  # 51200 bytes
    topo.origin.set("/b/huge", body, headers=CACHEABLE, chunk_size=4096)

    resp, got = await topo.get("/b/huge", headers={"Range": "bytes=5000-20000"})
    assert resp.status == 206 and got == body[5000:20001]
    assert resp.headers["Content-Range"] == f"bytes 5000-20000/{len(body)}"
    resp, got = await topo.get("/b/huge", headers={"Range": "bytes=60000-"})
    assert resp.status == 416
    resp, _ = await topo.get("/b/huge", headers={"If-None-Match": '"v1"'})
    assert resp.status == 304


async def test_purge_while_fetching_is_not_undone_by_the_fetch(topo: Topology) -> None:
    release, arrived = asyncio.Event(), asyncio.Event()
    topo.origin.set("/b/race", b"old" * 10000, headers=CACHEABLE, chunk_size=1000,
                    release=release, arrived=arrived)
    fetch = asyncio.create_task(topo.get("/b/race"))
    await asyncio.wait_for(arrived.wait(), 5)
    for app in (topo.edge_app, topo.shield_app()):
        app[STORE].purge_tag("t1")
    release.set()
    await fetch

    resp, _ = await topo.get("/b/race")
    assert [m[1].get("fwd") for m in statuses(resp)] == ["stale", "stale"]
    assert topo.origin.last("/b/race").headers["If-None-Match"] == '"v1"'
