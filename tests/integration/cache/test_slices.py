"""Large objects cached in fixed slices, end to end (origin → shield → edge): a ranged miss
fetches only the slices it needs, later requests only the missing ones."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest

from httpcache.app import ENGINE, STORE, TIERS
from httpcache.cache_status import parse_members
from httpcache.slices import RECORD_SLOT
from tests.integration.cache.conftest import Topology
from tests.integration.cache.scriptable_origin import Seen

MiB = 1024 * 1024
BODY = random.Random(7).randbytes(5 * MiB)  # no repeating pattern: misplaced bytes show
OTHER = random.Random(8).randbytes(5 * MiB)
HEADERS = {"Cache-Control": "max-age=60", "ETag": '"v1"', "Surrogate-Key": "big",
           "Content-Type": "application/octet-stream"}


def slice_range(index: int) -> str:
    return f"bytes={index * MiB}-{(index + 1) * MiB - 1}"


def edge_status(resp: aiohttp.ClientResponse) -> dict[str, str | bool]:
    return parse_members(resp.headers.get("Cache-Status"))[-1][1]


async def settled(topo: Topology) -> None:
    """Wait until no slice fetch is still running (they go on after the client has its
    bytes, to store the whole slice)."""
    for _ in range(200):
        if not any(len(app[ENGINE].collapser) for app in (topo.edge_app, topo.shield_app())):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("fetches still running")


async def settled_edge(topo: Topology) -> None:
    for _ in range(200):
        if not len(topo.edge_app[ENGINE].collapser):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("fetches still running")


def slice_entries(topo: Topology, app_name: str = "edge") -> list[str]:
    app = topo.edge_app if app_name == "edge" else topo.shield_app()
    return [k for k in app[STORE]._cache.keys() if "\x00#slice:" in k]


async def test_ranged_miss_fetches_only_the_slice_it_needs(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS, chunk_size=256 * 1024)

    resp, got = await topo.get("/b/big", headers={"Range": "bytes=2500000-2600000"})

    assert resp.status == 206 and got == BODY[2500000:2600001]
    assert resp.headers["Content-Range"] == f"bytes 2500000-2600000/{len(BODY)}"
    assert topo.origin.ranges_seen("/b/big") == [slice_range(2)]
    assert edge_status(resp) == {"fwd": "uri-miss", "fwd-status": "206", "stored": True}
    await settled(topo)
    assert len(slice_entries(topo)) == 1 and len(slice_entries(topo, "shield")) == 1

    again, got = await topo.get("/b/big", headers={"Range": "bytes=2100000-2200000"})
    assert again.status == 206 and got == BODY[2100000:2200001]
    assert edge_status(again).get("hit") is True
    assert topo.origin.count("/b/big") == 1


async def test_full_get_after_a_ranged_miss_fetches_only_the_missing_slices(
        topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS)
    await topo.get("/b/big", headers={"Range": "bytes=2500000-2600000"})
    await settled(topo)

    resp, got = await topo.get("/b/big")

    assert resp.status == 200 and got == BODY
    assert resp.headers["Content-Length"] == str(len(BODY))
    assert resp.headers["ETag"] == '"v1"' and "Content-Range" not in resp.headers
    assert edge_status(resp)["fwd"] == "partial"
    assert topo.origin.ranges_seen("/b/big") == [slice_range(i) for i in (2, 0, 1, 3, 4)]
    await settled(topo)
    hit, got = await topo.get("/b/big")
    assert got == BODY and edge_status(hit).get("hit") is True
    head, _ = await topo.request("HEAD", "/b/big")
    assert head.status == 200 and head.headers["Content-Length"] == str(len(BODY))
    assert topo.origin.count("/b/big") == 5


async def test_multiple_ranges_if_range_and_416_over_slices(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS)
    await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled(topo)

    multi, body = await topo.get("/b/big", headers={"Range": "bytes=0-9,4194304-4194313"})
    assert multi.status == 206
    assert multi.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert (f"Content-Range: bytes 0-9/{len(BODY)}\r\n\r\n".encode() + BODY[0:10]) in body
    assert (f"Content-Range: bytes 4194304-4194313/{len(BODY)}\r\n\r\n".encode()
            + BODY[4194304:4194314]) in body
    assert topo.origin.ranges_seen("/b/big") == [slice_range(0), slice_range(4)]

    bad, _ = await topo.get("/b/big", headers={"Range": f"bytes={len(BODY)}-"})
    assert bad.status == 416 and bad.headers["Content-Range"] == f"bytes */{len(BODY)}"
    tail, got = await topo.get("/b/big", headers={"Range": "bytes=-100"})
    assert tail.status == 206 and got == BODY[-100:]
    other, got = await topo.get("/b/big", headers={"Range": "bytes=0-9", "If-Range": '"v0"'})
    assert other.status == 200 and got == BODY  # If-Range failed: the whole representation
    same, got = await topo.get("/b/big", headers={"Range": "bytes=5-9", "If-Range": '"v1"'})
    assert same.status == 206 and got == BODY[5:10]
    cond, _ = await topo.get("/b/big", headers={"If-None-Match": '"v1"'})
    assert cond.status == 304


async def test_cold_suffix_range_is_asked_upstream_as_a_suffix(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS)
    resp, got = await topo.get("/b/big", headers={"Range": "bytes=-10"})
    assert resp.status == 206 and got == BODY[-10:]
    assert resp.headers["Content-Range"] == f"bytes {len(BODY) - 10}-{len(BODY) - 1}/{len(BODY)}"
    # one upstream request, a slice's worth of suffix: it is exactly the last slice
    assert topo.origin.ranges_seen("/b/big") == [f"bytes=-{MiB}"]
    await settled(topo)
    hit, got = await topo.get("/b/big", headers={"Range": f"bytes={4 * MiB}-{4 * MiB + 9}"})
    assert got == BODY[4 * MiB:4 * MiB + 10] and edge_status(hit).get("hit") is True
    assert topo.origin.count("/b/big") == 1


async def test_cold_suffix_over_unaligned_slices_stores_the_whole_ones_it_got(
        topo: Topology) -> None:
    odd = BODY + OTHER[:1000]  # slices 0-4 of 1 MiB, slice 5 of 1000 bytes
    topo.origin.set("/b/odd", odd, headers=HEADERS)

    resp, got = await topo.get("/b/odd", headers={"Range": f"bytes=-{MiB + 1500}"})

    assert resp.status == 206 and got == odd[-(MiB + 1500):]
    assert topo.origin.ranges_seen("/b/odd") == [f"bytes=-{MiB + 1500}"]
    await settled(topo)
    assert len(slice_entries(topo)) == 2  # slices 4 and 5 (3 was only partly in it)
    tail, got = await topo.get("/b/odd", headers={"Range": f"bytes=-{MiB + 800}"})
    assert got == odd[-(MiB + 800):] and edge_status(tail).get("hit") is True
    more, got = await topo.get("/b/odd", headers={"Range": f"bytes=-{2 * MiB}"})
    assert got == odd[-2 * MiB:] and edge_status(more)["fwd"] == "partial"
    assert topo.origin.ranges_seen("/b/odd")[1:] == [slice_range(3)]


async def test_cold_suffix_of_a_small_object_is_the_whole_object(topo: Topology) -> None:
    small = BODY[:300_000]
    topo.origin.set("/b/small", small, headers=HEADERS)
    resp, got = await topo.get("/b/small", headers={"Range": "bytes=-100"})
    assert resp.status == 206 and got == small[-100:]
    await settled(topo)
    full, got = await topo.get("/b/small")
    assert got == small and edge_status(full).get("hit") is True
    assert topo.origin.ranges_seen("/b/small") == [f"bytes=-{MiB}"]


async def test_changed_representation_is_detected_before_the_head(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS)
    await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled(topo)
    topo.origin.set("/b/big", OTHER, headers={**HEADERS, "ETag": '"v2"'})

    resp, got = await topo.get("/b/big")  # slice 0 is cached (v1), slice 1 comes back v2

    assert resp.status == 200 and got == OTHER and resp.headers["ETag"] == '"v2"'
    await settled(topo)
    again, got = await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    assert got == OTHER[:11] and edge_status(again).get("hit") is True


async def test_stale_slices_are_revalidated_with_range_and_if_none_match(
        topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers={**HEADERS, "Cache-Control": "max-age=5"})
    await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled(topo)
    topo.clock.advance(6)

    resp, got = await topo.get("/b/big", headers={"Range": "bytes=100-200"})

    assert resp.status == 206 and got == BODY[100:201]
    last = topo.origin.last("/b/big")
    assert last.headers.get("Range") == slice_range(0)
    assert last.headers.get("If-None-Match") == '"v1"'
    assert edge_status(resp)["fwd"] == "stale"
    fresh, _ = await topo.get("/b/big", headers={"Range": "bytes=0-1"})
    assert edge_status(fresh).get("hit") is True and topo.origin.count("/b/big") == 2


async def test_representation_change_mid_stream_cuts_the_response(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS)

    def change_after_first(seen: Seen) -> None:  # runs before the origin answers `seen`
        if topo.origin.count("/b/big") == 2:
            topo.origin.set("/b/big", OTHER, headers={**HEADERS, "ETag": '"v2"'})

    topo.origin.on_request = change_after_first
    with pytest.raises(aiohttp.ClientPayloadError):
        await topo.get("/b/big", headers={"Range": "bytes=0-"})  # head sent after slice 0
    topo.origin.on_request = None

    resp, got = await topo.get("/b/big")
    assert resp.status == 200 and got == OTHER


async def test_purge_by_tag_removes_slices_and_their_record(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS)
    await topo.get("/b/big", headers={"Range": "bytes=0-10,3000000-3000010"})
    await settled(topo)
    assert len(slice_entries(topo)) == 2

    for app in (topo.edge_app, topo.shield_app()):
        assert app[TIERS].purge_tag("big").removed == 3  # record + 2 slices
        assert not [k for k in app[STORE]._cache.keys() if k.startswith("/b/big")]
        app[STORE].check_indexes()
    await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled(topo)
    assert topo.origin.count("/b/big") == 3


async def test_concurrent_ranged_misses_on_one_slice_collapse(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS, head_delay=0.2)

    results = await asyncio.gather(*(
        topo.get("/b/big", headers={"Range": f"bytes={1100000 + i}-{1200000 + i}"})
        for i in range(20)))

    assert all(got == BODY[1100000 + i:1200001 + i] for i, (_r, got) in enumerate(results))
    assert topo.origin.ranges_seen("/b/big") == [slice_range(1)]
    assert sum(1 for r, _ in results if edge_status(r).get("collapsed")) == 19


async def test_origin_ignoring_range_is_cached_whole(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS, ranges=False)

    resp, got = await topo.get("/b/big", headers={"Range": "bytes=3000000-3000099"})
    await settled(topo)
    assert resp.status == 206 and got == BODY[3000000:3000100]
    assert topo.origin.ranges_seen("/b/big") == [slice_range(2)]
    # the shield stored the whole 200 and answers the edge's slice requests from it
    assert "/b/big" in topo.shield_app()[STORE] and not slice_entries(topo, "shield")
    again, got = await topo.get("/b/big", headers={"Range": "bytes=10-19"})
    assert again.status == 206 and got == BODY[10:20]
    assert parse_members(again.headers["Cache-Status"])[0][1].get("hit") is True
    full, got = await topo.get("/b/big")
    assert full.status == 200 and got == BODY
    assert topo.origin.count("/b/big") == 1


async def test_edge_straight_to_an_origin_ignoring_range_caches_it_whole(
        make_topology) -> None:  # type: ignore[no-untyped-def]
    topo = await make_topology(shields=0)
    topo.origin.set("/b/big", BODY, headers=HEADERS, ranges=False)

    resp, got = await topo.get("/b/big", headers={"Range": "bytes=3000000-3000099"})
    await settled_edge(topo)
    assert resp.status == 206 and got == BODY[3000000:3000100]
    again, got = await topo.get("/b/big", headers={"Range": "bytes=10-19"})
    assert again.status == 206 and got == BODY[10:20]
    assert edge_status(again).get("hit") is True
    assert topo.origin.count("/b/big") == 1
    assert "/b/big" in topo.edge_store() and not slice_entries(topo)


async def test_partial_response_without_strong_validator_is_forwarded_not_stored(
        topo: Topology) -> None:
    topo.origin.set("/b/weak", BODY, headers={**HEADERS, "ETag": 'W/"v1"'})

    resp, got = await topo.get("/b/weak", headers={"Range": "bytes=2000000-2000009"})

    assert resp.status == 206 and got == BODY[2000000:2000010]
    # the shield asks for the slice, forwards the edge's Range and remembers the key as
    # unsliceable, so the edge's forwarded request makes it fetch (and store) the whole
    assert topo.origin.ranges_seen("/b/weak") == [slice_range(1), slice_range(1), None]
    assert not slice_entries(topo) and not slice_entries(topo, "shield")
    assert f"/b/weak\x00{RECORD_SLOT}" not in topo.edge_store()


async def test_slices_go_to_the_disk_tier_and_are_served_from_it(
        make_topology, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tiers = {"edge": {"cache_dir": str(tmp_path / "edge"), "disk_min_object_bytes": 512 * 1024},
             "shield": {"cache_dir": str(tmp_path / "shield"),
                        "disk_min_object_bytes": 512 * 1024}}
    topo = await make_topology(**tiers)
    topo.origin.set("/b/big", BODY, headers=HEADERS)

    await topo.get("/b/big", headers={"Range": "bytes=1500000-1500009"})
    await settled(topo)
    disk = topo.edge_app[ENGINE].disk
    assert disk is not None and len(disk) == 1 and not slice_entries(topo)

    resp, got = await topo.get("/b/big", headers={"Range": "bytes=1000000-2100000"})
    assert resp.status == 206 and got == BODY[1000000:2100001]
    await settled(topo)
    full, got = await topo.get("/b/big")
    assert got == BODY and topo.origin.count("/b/big") == 5
    await settled(topo)  # the last slice is committed to disk after its bytes were sent
    hit, got = await topo.get("/b/big")
    assert got == BODY and edge_status(hit).get("hit") is True


async def test_soft_purge_revalidates_slices_with_a_conditional_range(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS)
    await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled(topo)
    for app in (topo.edge_app, topo.shield_app()):
        assert app[TIERS].purge_tag("big", soft=True).invalidated == 2  # record + slice

    resp, got = await topo.get("/b/big", headers={"Range": "bytes=20-29"})

    assert resp.status == 206 and got == BODY[20:30]
    last = topo.origin.last("/b/big")
    assert (last.headers.get("Range"), last.headers.get("If-None-Match")) == (
        slice_range(0), '"v1"')
    assert edge_status(resp) == {"fwd": "stale", "fwd-status": "304"}
    assert topo.origin.count("/b/big") == 2  # only the validation: the slice was kept


async def test_stale_if_error_serves_cached_slices(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers={
        **HEADERS, "Cache-Control": "max-age=5, stale-if-error=60"})
    await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled(topo)
    topo.clock.advance(6)
    topo.origin.set("/b/big", b"down", status=503)

    resp, got = await topo.get("/b/big", headers={"Range": "bytes=5-15"})

    assert resp.status == 206 and got == BODY[5:16]
    shield = parse_members(resp.headers["Cache-Status"])[0][1]
    assert shield["fwd"] == "stale" and shield["detail"] == "stale-if-error"
    assert shield["fwd-status"] == "503"


async def test_stale_while_revalidate_serves_stale_slices_at_once_and_revalidates_once(
        make_topology) -> None:  # type: ignore[no-untyped-def]
    topo = await make_topology(shields=0)
    script = topo.origin.set("/b/big", BODY, headers={
        **HEADERS, "Cache-Control": "max-age=5, stale-while-revalidate=60"})
    await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled_edge(topo)
    topo.clock.advance(8)
    script.body, script.headers = OTHER, {**HEADERS, "ETag": '"v2"'}
    script.head_delay = 0.3

    results = await asyncio.gather(*(
        topo.get("/b/big", headers={"Range": f"bytes={i}-{i + 99}"}) for i in range(5)))

    assert all(r.status == 206 and got == BODY[i:i + 100]
               for i, (r, got) in enumerate(results))  # the stale bytes, not the new ones
    member = edge_status(results[0][0])
    assert member.get("hit") is True and member["detail"] == "stale-while-revalidate"
    assert int(str(member["ttl"])) < 0
    head, _ = await topo.request("HEAD", "/b/big")
    assert head.status == 200 and head.headers["ETag"] == '"v1"'
    await settled_edge(topo)
    revalidation = topo.origin.last("/b/big")
    assert (revalidation.headers.get("Range"), revalidation.headers.get("If-None-Match")) == (
        slice_range(0), '"v1"')
    assert topo.origin.count("/b/big") == 2  # one background revalidation for all six
    fresh, got = await topo.get("/b/big", headers={"Range": "bytes=0-99"})
    assert got == OTHER[:100] and edge_status(fresh).get("hit") is True
    assert topo.origin.count("/b/big") == 2


async def test_stale_while_revalidate_304_refreshes_the_record_in_the_background(
        make_topology) -> None:  # type: ignore[no-untyped-def]
    topo = await make_topology(shields=0)
    topo.origin.set("/b/big", BODY, headers={
        **HEADERS, "Cache-Control": "max-age=5, stale-while-revalidate=60"})
    await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled_edge(topo)
    topo.clock.advance(8)

    stale, _ = await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled_edge(topo)
    fresh, got = await topo.get("/b/big", headers={"Range": "bytes=0-10"})

    assert edge_status(stale)["detail"] == "stale-while-revalidate"
    assert edge_status(fresh) == {"hit": True, "ttl": "5"} and got == BODY[:11]
    assert topo.origin.count("/b/big") == 2  # the slice, one 304


async def test_max_stale_on_slices_says_so(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers={**HEADERS, "Cache-Control": "max-age=5"})
    await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled(topo)
    topo.clock.advance(8)
    resp, got = await topo.get("/b/big", headers={"Range": "bytes=0-10",
                                                  "Cache-Control": "max-stale=60"})
    assert got == BODY[:11] and edge_status(resp)["detail"] == "max-stale"
    assert topo.origin.count("/b/big") == 1


async def test_only_if_cached_is_served_from_slices_and_504_when_one_is_missing(
        topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS)
    await topo.get("/b/big", headers={"Range": "bytes=0-10"})
    await settled(topo)
    oic = {"Cache-Control": "only-if-cached"}

    hit, got = await topo.get("/b/big", headers={"Range": "bytes=100-199", **oic})
    assert hit.status == 206 and got == BODY[100:200] and edge_status(hit).get("hit") is True
    head, _ = await topo.request("HEAD", "/b/big", headers=oic)
    assert head.status == 200 and head.headers["Content-Length"] == str(len(BODY))
    spans, _ = await topo.get("/b/big", headers={"Range": f"bytes=0-{MiB}", **oic})
    assert spans.status == 504
    whole, _ = await topo.get("/b/big", headers=oic)
    assert whole.status == 504
    assert topo.origin.count("/b/big") == 1


async def test_unsliceable_key_is_remembered_and_fetched_once_per_miss(
        make_topology) -> None:  # type: ignore[no-untyped-def]
    topo = await make_topology(shields=0)
    topo.origin.set("/b/weak", BODY, headers={**HEADERS, "ETag": 'W/"v1"'})
    await topo.get("/b/weak", headers={"Range": "bytes=2000000-2000009"})
    await settled_edge(topo)
    first = topo.origin.count("/b/weak")  # the slice request, then the client's range

    resp, got = await topo.get("/b/weak", headers={"Range": "bytes=3000000-3000009"})
    await settled_edge(topo)

    assert resp.status == 206 and got == BODY[3000000:3000010]
    assert topo.origin.count("/b/weak") == first + 1
    assert topo.origin.ranges_seen("/b/weak")[-1] is None  # the whole object, now cached
    again, got = await topo.get("/b/weak", headers={"Range": "bytes=10-19"})
    assert got == BODY[10:20] and edge_status(again).get("hit") is True
    assert topo.origin.count("/b/weak") == first + 1


async def test_unsliceable_private_key_is_forwarded_with_its_range(topo: Topology) -> None:
    topo.origin.set("/b/priv", BODY, headers={**HEADERS, "Cache-Control": "private"})
    await topo.get("/b/priv", headers={"Range": "bytes=0-9"})
    first = topo.origin.count("/b/priv")

    resp, got = await topo.get("/b/priv", headers={"Range": "bytes=3000000-3000009"})

    assert resp.status == 206 and got == BODY[3000000:3000010]
    assert topo.origin.count("/b/priv") == first + 1
    assert topo.origin.ranges_seen("/b/priv")[-1] == "bytes=3000000-3000009"


async def test_unsafe_method_invalidates_the_record_and_its_slices(topo: Topology) -> None:
    topo.origin.set("/b/big", BODY, headers=HEADERS)
    await topo.get("/b/big", headers={"Range": "bytes=0-10,3000000-3000010"})
    await settled(topo)
    assert len(slice_entries(topo)) == 2

    post, _ = await topo.request("POST", "/b/big", data=b"x")

    assert post.status == 200
    for app in (topo.edge_app, topo.shield_app()):
        assert not [k for k in app[STORE]._cache.keys() if k.startswith("/b/big")]
        app[STORE].check_indexes()
