"""The disk tier and the shared (Redis) tier end to end: edge straight to the scriptable
origin, bodies streamed from files, purges reaching every tier, two edges of one PoP sharing
Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge.config import EdgeConfig
from edge.server import build_app as build_edge
from httpcache.app import ENGINE, STORE, TIERS
from httpcache.cache_status import parse_members
from tests.integration.cache.conftest import Topology, metric, url_of

BIG = bytes(range(256)) * 800  # 204,800 bytes
HEADERS = {"Cache-Control": "max-age=60", "ETag": '"big"', "Surrogate-Key": "big-tag",
           "Content-Type": "application/octet-stream"}

MakeTopology = Callable[..., Awaitable[Topology]]


def body_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("proc-*/body-*"))


def temp_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("proc-*/tmp-*"))


def last_member(resp: aiohttp.ClientResponse) -> dict[str, str | bool]:
    return parse_members(resp.headers["Cache-Status"])[-1][1]


async def settled(app: web.Application) -> None:
    """Wait until the edge's fetches have finished storing (the client may have its body
    before the file is committed)."""
    tasks = list(app[ENGINE].collapser._tasks)
    if tasks:
        await asyncio.wait(tasks)


async def disk_topology(make_topology: MakeTopology, cache_dir: Path, **edge: object
                        ) -> Topology:
    return await make_topology(shields=0, edge={"cache_dir": str(cache_dir),
                                                "disk_min_object_bytes": 100_000, **edge})


async def test_large_body_goes_to_disk_and_hits_stream_from_the_file(
        make_topology: MakeTopology, tmp_path: Path) -> None:
    topo = await disk_topology(make_topology, tmp_path)
    topo.origin.set("/b/big", BIG, headers=HEADERS, chunk_size=16384)
    topo.origin.set("/b/small", b"small", headers=HEADERS)

    first, body = await topo.get("/b/big")
    await settled(topo.edge_app)
    await topo.get("/b/small")
    assert first.status == 200 and body == BIG
    assert len(body_files(tmp_path)) == 1 and temp_files(tmp_path) == []
    assert "/b/big" not in topo.edge_store() and "/b/small" in topo.edge_store()

    again, body = await topo.get("/b/big")
    assert again.status == 200 and body == BIG
    assert again.headers["Content-Length"] == str(len(BIG))
    assert last_member(again).get("hit") is True
    assert topo.origin.count("/b/big") == 1
    assert metric(topo.edge_app, "cdn_disk_objects") == 1


async def test_ranges_conditionals_and_head_are_answered_from_the_file(
        make_topology: MakeTopology, tmp_path: Path) -> None:
    topo = await disk_topology(make_topology, tmp_path)
    topo.origin.set("/b/big", BIG, headers=HEADERS)
    await topo.get("/b/big")
    await settled(topo.edge_app)

    resp, body = await topo.get("/b/big", headers={"Range": "bytes=1000-200999"})
    assert resp.status == 206 and body == BIG[1000:201000]
    assert resp.headers["Content-Range"] == f"bytes 1000-200999/{len(BIG)}"

    resp, body = await topo.get("/b/big", headers={"Range": "bytes=0-9,-10"})
    assert resp.status == 206
    boundary = resp.headers["Content-Type"].split("boundary=")[1]
    parts = [p for p in body.split(f"--{boundary}".encode()) if p.strip(b"-\r\n")]
    assert [p.split(b"\r\n\r\n", 1)[1][:-2] for p in parts] == [BIG[:10], BIG[-10:]]

    resp, _ = await topo.get("/b/big", headers={"Range": f"bytes={len(BIG)}-"})
    assert resp.status == 416

    resp, body = await topo.get("/b/big", headers={"If-None-Match": '"big"'})
    assert resp.status == 304 and body == b""

    resp, body = await topo.request("HEAD", "/b/big")
    assert resp.status == 200 and body == b""
    assert resp.headers["Content-Length"] == str(len(BIG))
    assert topo.origin.count("/b/big") == 1


async def test_revalidated_disk_entry_keeps_its_file(make_topology: MakeTopology,
                                                     tmp_path: Path) -> None:
    topo = await disk_topology(make_topology, tmp_path)
    topo.origin.set("/b/big", BIG, headers={**HEADERS, "Cache-Control": "max-age=5"})
    await topo.get("/b/big")
    await settled(topo.edge_app)
    files = body_files(tmp_path)
    topo.clock.advance(10)

    resp, body = await topo.get("/b/big")

    assert resp.status == 200 and body == BIG
    assert last_member(resp)["fwd-status"] == "304"
    assert body_files(tmp_path) == files
    again, _ = await topo.get("/b/big")
    assert last_member(again).get("hit") is True and topo.origin.count("/b/big") == 2


async def test_purges_reach_disk_entries_and_remove_their_files(
        make_topology: MakeTopology, tmp_path: Path) -> None:
    topo = await disk_topology(make_topology, tmp_path)
    topo.origin.set("/b/big", BIG, headers=HEADERS)
    topo.origin.set("/c/big", BIG, headers={**HEADERS, "Surrogate-Key": "other"})
    await topo.get("/b/big")
    await settled(topo.edge_app)
    await topo.get("/c/big")
    await settled(topo.edge_app)
    tiers = topo.edge_app[TIERS]

    assert tiers.purge_tag("big-tag").removed == 1
    assert len(body_files(tmp_path)) == 1
    assert tiers.purge_prefix("/c/", soft=True).invalidated == 1
    resp, body = await topo.get("/c/big")  # soft: revalidated, not refetched
    assert body == BIG and last_member(resp)["fwd"] == "stale"
    assert tiers.purge_url("/c/big").removed == 1
    assert body_files(tmp_path) == []
    resp, _ = await topo.get("/b/big")
    assert last_member(resp)["fwd"] == "uri-miss"


async def test_disk_tier_is_bounded_and_evicted_files_are_unlinked(
        make_topology: MakeTopology, tmp_path: Path) -> None:
    topo = await disk_topology(make_topology, tmp_path, disk_max_bytes=3 * len(BIG))
    for i in range(6):
        topo.origin.set(f"/b/{i}", BIG, headers=HEADERS)
        await topo.get(f"/b/{i}")
        await settled(topo.edge_app)
    disk = topo.edge_app[ENGINE].disk
    assert disk is not None and disk.current_bytes <= 3 * len(BIG)
    assert len(body_files(tmp_path)) == len(disk) == 2
    disk.index.check_indexes()


async def test_a_body_cut_short_leaves_no_file(make_topology: MakeTopology,
                                               tmp_path: Path) -> None:
    topo = await disk_topology(make_topology, tmp_path)
    topo.origin.set("/b/big", BIG, headers=HEADERS, chunk_size=16384, abort_after=120_000)
    try:
        await topo.get("/b/big")
    except aiohttp.ClientPayloadError:
        pass
    assert body_files(tmp_path) == [] and temp_files(tmp_path) == []
    assert len(topo.edge_app[ENGINE].disk) == 0  # type: ignore[arg-type]


async def test_a_file_removed_underneath_is_fetched_again(make_topology: MakeTopology,
                                                          tmp_path: Path) -> None:
    topo = await disk_topology(make_topology, tmp_path)
    topo.origin.set("/b/big", BIG, headers=HEADERS)
    await topo.get("/b/big")
    await settled(topo.edge_app)
    for path in body_files(tmp_path):
        path.unlink()
    resp, body = await topo.get("/b/big")
    assert resp.status == 200 and body == BIG and topo.origin.count("/b/big") == 2


# -- the shared tier ------------------------------------------------------------------------


async def second_edge(aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
                      topo: Topology, **edge: object) -> TestServer:
    config = EdgeConfig(region="test2", upstream=url_of(topo.origin_server), **edge)  # type: ignore[arg-type]
    return await aiohttp_server(build_edge(config, clock=topo.clock))


async def test_processes_of_one_pop_share_responses_through_redis(
        make_topology: MakeTopology, aiohttp_server: Callable[..., Awaitable[TestServer]],
        redis_url: str) -> None:
    shared = {"shared_cache_url": redis_url, "shared_cache_prefix": f"t-{uuid.uuid4().hex}:"}
    topo = await make_topology(shields=0, edge=shared)
    other = await second_edge(aiohttp_server, topo, **shared)
    topo.origin.set("/b/k", b"hello", headers={"Cache-Control": "max-age=60", "ETag": '"v"',
                                               "Surrogate-Key": "t1"})
    await topo.get("/b/k")
    await settled(topo.edge_app)
    await topo.edge_app[ENGINE].shared.drain()  # type: ignore[union-attr]

    assert topo.client is not None
    async with topo.client.get(url_of(other) + "/b/k") as resp:
        assert resp.status == 200 and await resp.read() == b"hello"
        assert last_member(resp).get("hit") is True
    assert topo.origin.count("/b/k") == 1
    assert "/b/k" in other.app[STORE]  # promoted into memory
    assert metric(other.app, "cdn_shared_hits_total") == 1

    # a purge applied by each process reaches Redis; the other process misses afterwards
    for app in (topo.edge_app, other.app):
        app[TIERS].begin_purge(1)
        app[TIERS].purge_tag("t1")
        await app[ENGINE].shared.drain()
    other.app[STORE].clear()
    async with topo.client.get(url_of(other) + "/b/k") as resp:
        assert last_member(resp)["fwd"] == "uri-miss"
    assert topo.origin.count("/b/k") == 2


async def test_shared_tier_down_is_a_miss_not_an_error(make_topology: MakeTopology) -> None:
    topo = await make_topology(shields=0, edge={"shared_cache_url": "redis://127.0.0.1:1/0"})
    topo.origin.set("/b/k", b"hello", headers={"Cache-Control": "max-age=60"})
    topo.edge_store().clear()
    resp, body = await topo.get("/b/k")
    assert resp.status == 200 and body == b"hello"
    topo.edge_store().clear()
    resp, body = await topo.get("/b/k")
    assert resp.status == 200 and body == b"hello"
    assert metric(topo.edge_app, "cdn_shared_errors_total") >= 1


async def test_stale_while_revalidate_and_stale_if_error_from_the_disk_tier(
        make_topology: MakeTopology, tmp_path: Path) -> None:
    topo = await disk_topology(make_topology, tmp_path)
    script = topo.origin.set("/b/big", BIG, headers={
        **HEADERS, "Cache-Control": "max-age=1, stale-while-revalidate=10, stale-if-error=60"})
    await topo.get("/b/big")
    await settled(topo.edge_app)
    topo.clock.advance(3)

    stale, got = await topo.get("/b/big", headers={"Range": "bytes=10-19"})
    assert stale.status == 206 and got == BIG[10:20]
    member = last_member(stale)
    assert member.get("hit") is True and member["detail"] == "stale-while-revalidate"
    await settled(topo.edge_app)  # the background 304 refreshed the disk entry's metadata
    fresh, got = await topo.get("/b/big")
    assert got == BIG and last_member(fresh) == {"hit": True, "ttl": "1"}
    assert topo.origin.count("/b/big") == 2 and len(body_files(tmp_path)) == 1

    topo.clock.advance(30)  # past stale-while-revalidate, within stale-if-error
    script.status, script.body, script.headers = 503, b"down", {}
    resp, got = await topo.get("/b/big")
    assert resp.status == 200 and got == BIG
    member = last_member(resp)
    assert (member["fwd"], member["fwd-status"], member["detail"]) == (
        "stale", "503", "stale-if-error")
    assert int(str(member["ttl"])) < 0


async def test_stale_while_revalidate_from_the_shared_tier(
        make_topology: MakeTopology, aiohttp_server: Callable[..., Awaitable[TestServer]],
        redis_url: str) -> None:
    shared = {"shared_cache_url": redis_url, "shared_cache_prefix": f"t-{uuid.uuid4().hex}:"}
    topo = await make_topology(shields=0, edge=shared)
    other = await second_edge(aiohttp_server, topo, **shared)
    script = topo.origin.set("/b/k", b"old", headers={
        "Cache-Control": "max-age=1, stale-while-revalidate=60", "ETag": '"1"'})
    await topo.get("/b/k")
    await settled(topo.edge_app)
    await topo.edge_app[ENGINE].shared.drain()  # type: ignore[union-attr]
    topo.clock.advance(3)
    script.body, script.headers = b"new", {"Cache-Control": "max-age=60", "ETag": '"2"'}

    assert topo.client is not None
    async with topo.client.get(url_of(other) + "/b/k") as resp:
        assert await resp.read() == b"old"  # from Redis, stale, served at once
        assert last_member(resp)["detail"] == "stale-while-revalidate"
    await settled(other.app)
    async with topo.client.get(url_of(other) + "/b/k") as resp:
        assert await resp.read() == b"new" and last_member(resp).get("hit") is True
    assert topo.origin.count("/b/k") == 2
