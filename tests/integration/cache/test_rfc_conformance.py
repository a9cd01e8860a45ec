"""Issue 3's bullets end to end: origin → shield → edge on loopback (and edge → origin)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from httpcache.cache_status import parse_members
from tests.integration.cache.conftest import Topology

Make = Callable[..., Awaitable[Topology]]


def edge_member(resp: aiohttp.ClientResponse) -> dict[str, str | bool]:
    return parse_members(resp.headers.get("Cache-Status"))[-1][1]


async def test_vary_keeps_several_variants_per_url(topo: Topology) -> None:
    topo.origin.set("/b/v", b"x", headers={"Cache-Control": "max-age=60", "Vary": "Foo"})
    await topo.get("/b/v", headers={"Foo": "1"})
    await topo.get("/b/v", headers={"Foo": "2"})
    one, _ = await topo.get("/b/v", headers={"Foo": "1"})
    two, _ = await topo.get("/b/v", headers={"Foo": " 2 "})
    none, _ = await topo.get("/b/v")
    assert edge_member(one).get("hit") and edge_member(two).get("hit")
    assert edge_member(none)["fwd"] == "vary-miss"
    assert topo.origin.count("/b/v") == 3


async def test_vary_star_is_never_reused(topo: Topology) -> None:
    topo.origin.set("/b/star", b"x", headers={"Cache-Control": "max-age=60", "Vary": "*"})
    await topo.get("/b/star")
    await topo.get("/b/star")
    assert topo.origin.count("/b/star") == 2


async def test_cdn_cache_control_is_obeyed_and_not_forwarded_to_clients(topo: Topology) -> None:
    topo.origin.set("/b/cdn", b"x", headers={"Cache-Control": "no-store",
                                             "CDN-Cache-Control": "max-age=60",
                                             "Surrogate-Control": "max-age=5"})
    first, _ = await topo.get("/b/cdn")
    second, _ = await topo.get("/b/cdn")
    assert topo.origin.count("/b/cdn") == 1 and edge_member(second).get("hit")
    assert "CDN-Cache-Control" not in first.headers and "Surrogate-Control" not in first.headers
    assert second.headers["Cache-Control"] == "no-store"  # for browsers, unchanged


async def test_surrogate_control_is_obeyed(topo: Topology) -> None:
    topo.origin.set("/b/sc", b"x", headers={"Cache-Control": "max-age=3600",
                                            "Surrogate-Control": "max-age=1"})
    await topo.get("/b/sc")
    topo.clock.advance(2)
    await topo.get("/b/sc")
    assert topo.origin.count("/b/sc") == 2


async def test_invalid_age_is_ignored_and_large_age_makes_stale(topo: Topology) -> None:
    topo.origin.set("/b/age1", b"x", headers={"Cache-Control": "max-age=3600", "Age": "abc"})
    topo.origin.set("/b/age2", b"x", headers={"Cache-Control": "max-age=10", "Age": "15"})
    for path in ("/b/age1", "/b/age2"):
        await topo.get(path)
        await topo.get(path)
    assert topo.origin.count("/b/age1") == 1 and topo.origin.count("/b/age2") == 2


async def test_invalid_expires_is_already_expired(topo: Topology) -> None:
    topo.origin.set("/b/exp", b"x", headers={"Expires": "Thu, 18 Aug 2050 02:01:18 UTC"})
    await topo.get("/b/exp")
    await topo.get("/b/exp")
    assert topo.origin.count("/b/exp") == 2


async def test_heuristic_freshness_for_404_not_for_403(topo: Topology) -> None:
    lm = "Mon, 01 Jan 2001 00:00:00 GMT"
    topo.origin.set("/b/404", b"x", status=404, headers={"Last-Modified": lm})
    topo.origin.set("/b/403", b"x", status=403, headers={"Last-Modified": lm})
    for path in ("/b/404", "/b/403"):
        await topo.get(path)
        await topo.get(path)
    assert topo.origin.count("/b/404") == 1 and topo.origin.count("/b/403") == 2


async def test_no_cache_response_is_revalidated_on_every_use(topo: Topology) -> None:
    topo.origin.set("/b/nc", b"x", headers={"Cache-Control": "max-age=60, no-cache",
                                            "ETag": '"e"'})
    await topo.get("/b/nc")
    resp, body = await topo.get("/b/nc")
    assert body == b"x" and topo.origin.last("/b/nc").headers.get("If-None-Match") == '"e"'
    assert edge_member(resp)["fwd-status"] == "304"


async def test_304_updates_stored_headers_but_not_content_length(topo: Topology) -> None:
    script = topo.origin.set("/b/up", b"hello", headers={"Cache-Control": "max-age=1",
                                                         "ETag": '"e"', "X-A": "1"})
    await topo.get("/b/up")
    topo.clock.advance(2)
    script.headers = {"Cache-Control": "max-age=60", "ETag": '"e"', "X-A": "2"}
    resp, body = await topo.get("/b/up")
    again, body2 = await topo.get("/b/up")
    assert resp.headers["X-A"] == "2" and again.headers["X-A"] == "2"
    assert body == body2 == b"hello" and again.headers["Content-Length"] == "5"
    assert edge_member(again).get("hit")


async def test_stale_while_revalidate_serves_at_once_and_revalidates_once(
        make_topology: Make) -> None:
    topo = await make_topology(shields=0)
    script = topo.origin.set("/b/swr", b"old", headers={
        "Cache-Control": "max-age=1, stale-while-revalidate=60", "ETag": '"1"'})
    await topo.get("/b/swr")
    topo.clock.advance(3)
    script.body, script.headers = b"new", {
        "Cache-Control": "max-age=60, stale-while-revalidate=60", "ETag": '"2"'}
    script.head_delay = 0.3
    results = await asyncio.gather(*(topo.get("/b/swr") for _ in range(5)))
    assert all(body == b"old" for _resp, body in results)
    member = edge_member(results[0][0])
    assert member.get("hit") and member["detail"] == "stale-while-revalidate"
    assert int(str(member["ttl"])) < 0
    await asyncio.sleep(0.8)
    resp, body = await topo.get("/b/swr")
    assert body == b"new"
    assert topo.origin.count("/b/swr") == 2  # one background revalidation for all five


async def test_stale_if_error_on_5xx(topo: Topology) -> None:
    script = topo.origin.set("/b/sie", b"good", headers={
        "Cache-Control": "max-age=1, stale-if-error=60"})
    await topo.get("/b/sie")
    topo.clock.advance(5)
    script.status, script.body, script.headers = 503, b"down", {}
    resp, body = await topo.get("/b/sie")
    assert resp.status == 200 and body == b"good"
    shield, edge = (params for _name, params in parse_members(resp.headers["Cache-Status"]))
    assert shield["fwd"] == "stale" and shield["detail"] == "stale-if-error"
    assert shield["fwd-status"] == "503" and int(str(shield["ttl"])) < 0
    assert edge["fwd-status"] == "200"  # the shield answered the edge with its stale copy
    topo.clock.advance(120)  # past the window: the error goes through
    resp, body = await topo.get("/b/sie")
    assert resp.status == 503


async def test_stale_if_error_on_connection_failure(make_topology: Make) -> None:
    topo = await make_topology(shields=0)
    topo.origin.set("/b/down", b"good", headers={"Cache-Control": "max-age=1"})
    await topo.get("/b/down")
    topo.clock.advance(5)
    await topo.origin_server.close()
    resp, body = await topo.get("/b/down")
    assert resp.status == 200 and body == b"good"
    assert edge_member(resp)["fwd"] == "stale"


async def test_must_revalidate_is_not_served_stale_on_error(make_topology: Make) -> None:
    topo = await make_topology(shields=0)
    topo.origin.set("/b/mr", b"good", headers={"Cache-Control": "max-age=1, must-revalidate"})
    await topo.get("/b/mr")
    topo.clock.advance(5)
    await topo.origin_server.close()
    resp, _ = await topo.get("/b/mr")
    assert resp.status == 502


async def test_request_directives(topo: Topology) -> None:
    topo.origin.set("/b/rq", b"x", headers={"Cache-Control": "max-age=10", "ETag": '"e"'})
    await topo.get("/b/rq")
    topo.clock.advance(20)
    stale_ok, _ = await topo.get("/b/rq", headers={"Cache-Control": "max-stale=100"})
    assert edge_member(stale_ok)["detail"] == "max-stale"
    oic, _ = await topo.get("/b/rq", headers={"Cache-Control": "only-if-cached"})
    assert oic.status == 504
    cold, _ = await topo.get("/b/cold", headers={"Cache-Control": "only-if-cached"})
    assert cold.status == 504 and topo.origin.count("/b/cold") == 0
    no_cache, _ = await topo.get("/b/rq", headers={"Cache-Control": "no-cache"})
    assert edge_member(no_cache)["fwd"] == "request"
    unknown, _ = await topo.get("/b/rq", headers={"Cache-Control": "x-unknown=1"})
    assert edge_member(unknown).get("hit")


async def test_unsafe_method_invalidates_location_and_content_location(topo: Topology) -> None:
    for path in ("/b/a", "/b/loc", "/b/cl"):
        topo.origin.set(path, b"x", headers={"Cache-Control": "max-age=60"})
        await topo.get(path)
    topo.origin.set("/b/a", b"done", status=201,
                    headers={"Location": "loc", "Content-Location": "/b/cl"})
    resp, _ = await topo.request("M-SEARCH", "/b/a", data=b"body")
    assert resp.status == 201 and topo.origin.last("/b/a").body == b"body"
    topo.origin.set("/b/a", b"x", headers={"Cache-Control": "max-age=60"})
    for path in ("/b/a", "/b/loc", "/b/cl"):
        await topo.get(path)
        assert topo.origin.count(path, "GET") == 2, path


async def test_failed_unsafe_method_does_not_invalidate(topo: Topology) -> None:
    topo.origin.set("/b/f", b"x", headers={"Cache-Control": "max-age=60"})
    await topo.get("/b/f")
    topo.origin.set("/b/f", b"no", status=500)
    await topo.request("POST", "/b/f", data=b"1")
    topo.origin.set("/b/f", b"x", headers={"Cache-Control": "max-age=60"})
    await topo.get("/b/f")
    assert topo.origin.count("/b/f", "GET") == 1


async def test_several_ranges_are_multipart_and_unsatisfiable_is_416(topo: Topology) -> None:
    topo.origin.set("/b/r", b"0123456789", headers={"Cache-Control": "max-age=60",
                                                    "Content-Type": "text/plain"})
    await topo.get("/b/r")
    multi, body = await topo.get("/b/r", headers={"Range": "bytes=0-1,5-6"})
    assert multi.status == 206
    assert multi.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert b"Content-Range: bytes 0-1/10\r\n\r\n01" in body
    assert b"Content-Range: bytes 5-6/10\r\n\r\n56" in body
    bad, _ = await topo.get("/b/r", headers={"Range": "bytes=50-60"})
    assert bad.status == 416 and bad.headers["Content-Range"] == "bytes */10"
    stale_if_range, body = await topo.get("/b/r", headers={"Range": "bytes=0-1",
                                                           "If-Range": '"other"'})
    assert stale_if_range.status == 200 and body == b"0123456789"


async def test_hop_by_hop_dropped_end_to_end_kept(make_topology: Make) -> None:
    topo = await make_topology(shields=0)
    topo.origin.set("/b/h", b"x", headers={"X-End": "1", "Connection": "x-hop",
                                           "X-Hop": "secret"})
    resp, _ = await topo.get("/b/h", headers={"X-Client": "c", "Connection": "x-private",
                                              "X-Private": "p"})
    seen = topo.origin.last("/b/h").headers
    assert seen.get("X-Client") == "c" and "X-Private" not in seen
    assert resp.headers["X-End"] == "1" and "X-Hop" not in resp.headers


async def test_collapsed_waiter_gives_up_after_timeout_and_the_first_fetch_still_stores(
        make_topology: Make) -> None:
    topo = await make_topology(shields=0, edge={"collapse_timeout": 0.2})
    arrived = asyncio.Event()
    script = topo.origin.set("/b/slow", b"x" * 10, headers={"Cache-Control": "max-age=60"},
                             head_delay=0.6, arrived=arrived)
    first = asyncio.create_task(topo.get("/b/slow"))
    await arrived.wait()
    script.head_delay = 0.0  # the second fetch is answered at once
    second, body = await topo.get("/b/slow")
    assert body == b"x" * 10 and not edge_member(second).get("collapsed")
    assert not first.done()
    resp, body = await first
    assert body == b"x" * 10 and edge_member(resp).get("stored")
    third, _ = await topo.get("/b/slow")
    assert edge_member(third).get("hit") and topo.origin.count("/b/slow") == 2


async def test_head_200_freshens_a_stale_stored_get_without_validators(topo: Topology) -> None:
    # RFC 9111 §4.3.5: with no validator to revalidate with, a HEAD's 200 of the same length
    # updates the stored GET response at every tier it passes, so the next GET is a hit.
    topo.origin.set("/b/hd", b"0123456789", headers={"Cache-Control": "max-age=10",
                                                     "X-Version": "1"})
    await topo.get("/b/hd")
    topo.clock.advance(20)
    topo.origin.set("/b/hd", b"0123456789", headers={"Cache-Control": "max-age=10",
                                                     "X-Version": "2"})
    head, _ = await topo.request("HEAD", "/b/hd")
    assert head.status == 200 and topo.origin.last("/b/hd").method == "HEAD"
    again, body = await topo.get("/b/hd")
    assert edge_member(again).get("hit") and body == b"0123456789"
    assert again.headers["X-Version"] == "2"
    assert topo.origin.count("/b/hd", method="GET") == 1


async def test_head_200_of_another_length_makes_the_stored_get_stale(topo: Topology) -> None:
    topo.origin.set("/b/hl", b"0123456789", headers={"Cache-Control": "max-age=10"})
    await topo.get("/b/hl")
    topo.clock.advance(5)  # still fresh; the client asks for a check
    topo.origin.set("/b/hl", b"0123456789AB", headers={"Cache-Control": "max-age=10"})
    await topo.request("HEAD", "/b/hl", headers={"Cache-Control": "max-age=0"})
    assert topo.origin.last("/b/hl").method == "HEAD"
    again, body = await topo.get("/b/hl")
    assert body == b"0123456789AB" and not edge_member(again).get("hit")
    assert topo.origin.count("/b/hl", method="GET") == 2
