"""The purge API against a real PostgreSQL and a real Redis."""

import asyncio
import json

import redis.asyncio as aioredis

from control.config import ControlConfig
from control.server import build_app

TOKEN = "test-token"


def _app(db: str, redis_url: str):
    return build_app(ControlConfig(database_url=db, redis_url=redis_url, purge_token=TOKEN,
                                   purge_channel="cdn:purge:test-control"))


async def test_purge_is_logged_then_published(aiohttp_client, fresh_database_url, redis_url):
    client = await aiohttp_client(_app(fresh_database_url, redis_url))
    sub = aioredis.from_url(redis_url)
    pubsub = sub.pubsub()
    await pubsub.subscribe("cdn:purge:test-control")
    await pubsub.get_message(timeout=1)  # subscribe confirmation
    try:
        resp = await client.post("/purge", json={"tags": ["product-1"]},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 200
        body = await resp.json()
        assert body["seq"] == 1 and body["tags"] == ["product-1"] and body["published"]
        msg = None
        for _ in range(20):
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if msg:
                break
        assert msg is not None
        event = json.loads(msg["data"])
        assert event["seq"] == 1 and event["tags"] == ["product-1"] and event["soft"] is False
    finally:
        await pubsub.aclose()
        await sub.aclose()

    resp = await client.post("/purge", json={"prefixes": ["/demo/"], "soft": True},
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert (await resp.json())["seq"] == 2
    resp = await client.get("/purge/log?after=1", headers={"Authorization": f"Bearer {TOKEN}"})
    log = await resp.json()
    assert log["last_seq"] == 2
    assert [e["seq"] for e in log["events"]] == [2]
    assert log["events"][0]["prefixes"] == ["/demo/"] and log["events"][0]["soft"] is True


async def test_purge_requires_the_token(aiohttp_client, fresh_database_url, redis_url):
    client = await aiohttp_client(_app(fresh_database_url, redis_url))
    resp = await client.post("/purge", json={"tags": ["x"]})
    assert resp.status == 401
    assert "bearer" in (await resp.json())["message"].lower()
    resp = await client.post("/purge", json={"tags": ["x"]},
                             headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    resp = await client.get("/purge/log")
    assert resp.status == 401


async def test_bad_purge_bodies_get_400_and_nothing_is_logged(
    aiohttp_client, fresh_database_url, redis_url
):
    client = await aiohttp_client(_app(fresh_database_url, redis_url))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.post("/purge", data=b"not json", headers=auth)
    assert resp.status == 400
    resp = await client.post("/purge", json={"tags": []}, headers=auth)
    assert resp.status == 400
    resp = await client.get("/purge/log?after=abc", headers=auth)
    assert resp.status == 400
    resp = await client.get("/purge/log", headers=auth)
    assert (await resp.json()) == {"events": [], "last_seq": 0}


async def test_purge_is_durable_when_redis_is_down(aiohttp_client, fresh_database_url):
    # Nothing listens on port 1: publishing fails, the log still has the purge.
    client = await aiohttp_client(_app(fresh_database_url, "redis://127.0.0.1:1/0"))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.post("/purge", json={"urls": ["/demo/a.txt"]}, headers=auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["published"] is False
    await asyncio.sleep(0)
    log = await (await client.get("/purge/log", headers=auth)).json()
    assert log["events"][0]["urls"] == ["/demo/a.txt"]


async def test_the_log_records_a_token_fingerprint_never_the_token(
    aiohttp_client, fresh_database_url, redis_url
):
    import asyncpg

    client = await aiohttp_client(_app(fresh_database_url, redis_url))
    resp = await client.post("/purge", json={"tags": ["t"]},
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    conn = await asyncpg.connect(fresh_database_url)
    try:
        who = await conn.fetchval("SELECT requested_by FROM purge_log")
    finally:
        await conn.close()
    assert who.startswith("token:") and TOKEN[:4] not in who
