"""Purges over Redis pub/sub (a real Redis) and catch-up from a purge log."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from httpcache.cache_status import parse_members
from httpcache.purge_subscriber import PURGE_SUBSCRIBER, PurgeSubscriber
from tests.integration.cache.conftest import Topology, url_of

TOKEN = "purge-token"


@pytest.fixture
def channel() -> str:
    return f"cdn:purge:test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


class PurgeLog:
    """A stand-in for the control plane's ``GET /purge/log`` (pages of 2 events)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_get("/purge/log", self.handle)
        self.requests: list[int] = []

    def add(self, **event: Any) -> dict[str, Any]:
        event = {"seq": len(self.events) + 1, "tags": [], "urls": [], "prefixes": [],
                 "soft": False, **event}
        self.events.append(event)
        return event

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthorized"}, status=401)
        after = int(request.query["after"])
        self.requests.append(after)
        page = [e for e in self.events if e["seq"] > after][:2]
        return web.json_response({"events": page, "last_seq": len(self.events)})


@pytest.fixture
async def purge_log(aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]
                    ) -> tuple[PurgeLog, str]:
    log = PurgeLog()
    return log, url_of(await aiohttp_server(log.app))


def subscribers(topo: Topology) -> list[PurgeSubscriber]:
    return [topo.edge_app[PURGE_SUBSCRIBER], topo.shield_app()[PURGE_SUBSCRIBER]]


async def connected(topo: Topology) -> None:
    async with asyncio.timeout(5):
        for sub in subscribers(topo):
            await sub.wait_connected()


async def applied(topo: Topology, seq: int) -> None:
    async with asyncio.timeout(5):
        for sub in subscribers(topo):
            await sub.wait_for_seq(seq)


def fwd(resp_headers: Any) -> list[Any]:
    return [params.get("fwd", "hit" if params.get("hit") else None)
            for _name, params in parse_members(resp_headers["Cache-Status"])]


async def make_purging(make_topology: Callable[..., Awaitable[Topology]], redis_url: str,
                       channel: str, control_url: str = "") -> Topology:
    purge = {"redis_url": redis_url, "purge_channel": channel, "control_url": control_url,
             "purge_token": TOKEN}
    topo = await make_topology(edge=purge, shield=purge)
    topo.origin.set("/b/k", b"k", headers={"Cache-Control": "max-age=600", "ETag": '"k"',
                                           "Surrogate-Key": "t1 shared"})
    topo.origin.set("/b/other", b"o", headers={"Cache-Control": "max-age=600",
                                               "Surrogate-Key": "t2 shared"})
    await connected(topo)
    return topo


async def test_tag_purge_over_pubsub_makes_both_tiers_miss(
        make_topology: Callable[..., Awaitable[Topology]], redis_url: str, channel: str,
        redis: aioredis.Redis) -> None:
    topo = await make_purging(make_topology, redis_url, channel)
    await topo.get("/b/k")
    await topo.get("/b/other")

    receivers = await redis.publish(channel, json.dumps({"seq": 1, "tags": ["t1"]}))
    assert receivers == 2
    await applied(topo, 1)

    resp, _ = await topo.get("/b/k")
    assert fwd(resp.headers) == ["uri-miss", "uri-miss"]
    resp, _ = await topo.get("/b/other")
    assert fwd(resp.headers) == ["uri-miss", "hit"]  # untouched
    assert topo.origin.count("/b/k") == 2


async def test_soft_purge_revalidates_instead_of_refetching(
        make_topology: Callable[..., Awaitable[Topology]], redis_url: str, channel: str,
        redis: aioredis.Redis) -> None:
    topo = await make_purging(make_topology, redis_url, channel)
    await topo.get("/b/k")
    await redis.publish(channel, json.dumps({"seq": 1, "urls": ["/b/k"], "soft": True}))
    await applied(topo, 1)

    resp, body = await topo.get("/b/k")
    assert body == b"k"
    assert fwd(resp.headers) == ["stale", "stale"]
    assert topo.origin.last("/b/k").headers["If-None-Match"] == '"k"'


async def test_startup_catches_up_from_the_purge_log(
        make_topology: Callable[..., Awaitable[Topology]], redis_url: str, channel: str,
        purge_log: tuple[PurgeLog, str]) -> None:
    log, control_url = purge_log
    for i in range(5):
        log.add(tags=[f"old-{i}"])
    topo = await make_purging(make_topology, redis_url, channel, control_url)
    assert [sub.last_seq for sub in subscribers(topo)] == [5, 5]


async def test_reconnect_catches_up_what_was_missed(
        make_topology: Callable[..., Awaitable[Topology]], redis_url: str, channel: str,
        redis: aioredis.Redis, purge_log: tuple[PurgeLog, str]) -> None:
    log, control_url = purge_log
    topo = await make_purging(make_topology, redis_url, channel, control_url)
    await topo.get("/b/k")
    await topo.get("/b/other")

    log.add(prefixes=["/b/k"])  # durable, but never published: the caches must catch up
    for client in await redis.client_list(_type="pubsub"):
        if client["name"].startswith("cdn-purge:"):
            await redis.client_kill_filter(_id=client["id"])
    await applied(topo, 1)
    assert log.requests.count(0) >= 4  # start-up and reconnect, for each tier
    assert log.requests.count(0) >= 4  # start-up and reconnect, for each tier

    resp, _ = await topo.get("/b/k")
    assert fwd(resp.headers) == ["uri-miss", "uri-miss"]
    resp, _ = await topo.get("/b/other")
    assert fwd(resp.headers) == ["uri-miss", "hit"]


async def test_sequence_gap_triggers_catch_up(
        make_topology: Callable[..., Awaitable[Topology]], redis_url: str, channel: str,
        redis: aioredis.Redis, purge_log: tuple[PurgeLog, str]) -> None:
    log, control_url = purge_log
    topo = await make_purging(make_topology, redis_url, channel, control_url)
    await topo.get("/b/k")
    log.add(tags=["t1"])  # seq 1: missed
    second = log.add(tags=["nothing"])  # seq 2: published
    await redis.publish(channel, json.dumps(second))
    await applied(topo, 2)

    resp, _ = await topo.get("/b/k")
    assert fwd(resp.headers) == ["uri-miss", "uri-miss"]
