"""``CDN-Purge-Seq`` between edge and shield (``httpcache.purge_watermark``), over a real Redis.

The edge and the shield listen on separate channels here, so a test decides when each applies
a purge: the edge ahead of its shield is the case the exchange is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from edge.server import edge_signer
from httpcache import purge_watermark
from httpcache.app import ENGINE
from httpcache.fast_server import HitServer, proxied_elsewhere
from httpcache.hit_path import HitPath
from httpcache.purge_subscriber import PURGE_SUBSCRIBER
from tests.integration.cache.conftest import SECRET, Topology
from tests.integration.cache.test_hit_path import get, read_response
from tests.integration.cache.test_purge import TOKEN, fwd

V1 = {"Cache-Control": "max-age=600", "ETag": '"v1"', "Surrogate-Key": "t1"}
V2 = {"Cache-Control": "max-age=600", "ETag": '"v2"', "Surrogate-Key": "t1"}


@dataclass
class TwoChannels:
    """Edge and shield each on a purge channel of its own; ``/b/k`` cached by both as v1 and
    changed to v2 at the origin, as it is before a purge."""

    topo: Topology
    redis: aioredis.Redis
    channels: dict[str, str]  # "edge", "shield" -> channel

    async def purge(self, tier: str, seq: int = 1, *, wait: bool = True) -> None:
        """Purge tag ``t1`` as event ``seq`` of the log at ``tier`` alone."""
        event = json.dumps({"seq": seq, "tags": ["t1"]})
        assert await self.redis.publish(self.channels[tier], event) == 1
        if wait:
            app = self.topo.edge_app if tier == "edge" else self.topo.shield_app()
            async with asyncio.timeout(5):
                await app[PURGE_SUBSCRIBER].wait_for_seq(seq)


@pytest.fixture
async def tiers(make_topology: Callable[..., Awaitable[Topology]], redis_url: str
                ) -> AsyncIterator[TwoChannels]:
    channels = {tier: f"cdn:purge:wm-{tier}-{uuid.uuid4().hex[:8]}" for tier in ("edge", "shield")}

    def purge(tier: str) -> dict[str, str]:
        return {"redis_url": redis_url, "purge_channel": channels[tier], "purge_token": TOKEN}

    topo = await make_topology(edge=purge("edge"), shield=purge("shield"))
    async with asyncio.timeout(5):
        await topo.edge_app[PURGE_SUBSCRIBER].wait_connected()
        await topo.shield_app()[PURGE_SUBSCRIBER].wait_connected()
    topo.origin.set("/b/k", b"v1", headers=V1)
    resp, body = await topo.get("/b/k")
    assert body == b"v1" and fwd(resp.headers) == ["uri-miss", "uri-miss"]
    topo.origin.set("/b/k", b"v2", headers=V2)
    client = aioredis.from_url(redis_url)
    yield TwoChannels(topo, client, channels)
    await client.aclose()


async def kept(topo: Topology, requests: int = 1) -> None:
    """v2 was stored valid at the edge: the next ``requests`` are hits, no more origin GETs."""
    for _ in range(requests):
        resp, body = await topo.get("/b/k")
        assert body == b"v2" and fwd(resp.headers)[-1] == "hit"
    assert topo.origin.count("/b/k") == 2


async def test_an_edge_ahead_of_its_shield_waits_for_it_and_keeps_the_new_bytes(
        tiers: TwoChannels) -> None:
    topo = tiers.topo
    await tiers.purge("edge")
    fetch = asyncio.create_task(topo.get("/b/k"))
    await asyncio.sleep(0.3)
    assert not fetch.done()  # the shield holds the edge's fetch until it has purge 1
    await tiers.purge("shield", wait=False)
    resp, body = await fetch
    assert body == b"v2"  # not the shield's purged copy
    assert fwd(resp.headers) == ["uri-miss", "uri-miss"]
    assert purge_watermark.FIELD not in resp.headers  # between tiers only

    # the shield said its answer reflects purge 1: stored valid, so the next request is a hit
    # (without the exchange, every request would revalidate for the purge grace)
    await kept(topo)


async def test_once_both_tiers_have_a_purge_the_refetch_is_kept_at_once(
        tiers: TwoChannels) -> None:
    topo = tiers.topo
    await tiers.purge("shield")
    await tiers.purge("edge")
    resp, body = await topo.get("/b/k")
    assert body == b"v2" and fwd(resp.headers) == ["uri-miss", "uri-miss"]
    await kept(topo, requests=3)


async def test_a_shield_that_does_not_catch_up_leaves_the_edge_in_doubt(
        tiers: TwoChannels) -> None:
    topo = tiers.topo
    await tiers.purge("edge")
    started = time.monotonic()
    resp, body = await topo.get("/b/k")
    waited = time.monotonic() - started
    assert purge_watermark.WAIT * 0.9 <= waited < purge_watermark.WAIT + 2
    assert body == b"v1"  # all the shield has; it does not claim to reflect purge 1
    # so the edge stored it invalid: the next request revalidates instead of hitting
    resp, _body = await topo.get("/b/k")
    assert fwd(resp.headers)[-1] == "stale"


async def test_the_shield_answers_the_field_from_its_hit_path_only_when_asked(
        tiers: TwoChannels) -> None:
    topo = tiers.topo
    sign = edge_signer(SECRET, topo.clock)

    def request(*extra: str) -> bytes:  # as an edge sends it to its shield
        return get("/b/k", *(f"{k}: {v}" for k, v in sign("GET", "/b/k").items()), *extra)

    async with shield_hit_front(topo) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request())
            plain = await read_response(reader)
            writer.write(request(f"{purge_watermark.FIELD}: 0"))
            asked = await read_response(reader)
        finally:
            writer.close()
    assert plain.status == asked.status == 200 and plain.body == asked.body == b"v1"
    assert purge_watermark.LOWER not in plain.headers  # a pre-serialised hit, as before
    assert asked.headers[purge_watermark.LOWER] == "0"  # the engine's: applied through 0


@contextlib.asynccontextmanager
async def shield_hit_front(topo: Topology) -> AsyncIterator[int]:
    """The shield application behind a hit-path front (as ``cdn shield`` serves it)."""
    shield = topo.shields["shield-1"]
    assert shield.runner is not None and shield.runner.server is not None
    server = HitServer(HitPath(shield.app[ENGINE]), shield.runner.server,
                       app_paths=proxied_elsewhere(shield.app))
    listener = await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        server.close_connections()
