"""The control plane's HTTP API: ``POST /purge`` and the purge log for catch-up.

A purge is committed to the PostgreSQL log first (that is when the API answers), then
published on Redis. Caches that miss the message (down, reconnecting) read
``GET /purge/log?after=SEQ`` when they reconnect, so nothing purged is served afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from cdn.migrations import apply_migrations
from cdn.roles import run_role
from control import purge_log
from control.config import ControlConfig
from control.errors import BadPurgeRequest, ControlError, PurgeLogUnavailable, Unauthorized
from control.purge_request import parse_purge_request

log = logging.getLogger("cdn.control")

CONFIG = web.AppKey("config", ControlConfig)
POOL = web.AppKey("pool", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)


class ControlMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.purges = Counter("cdn_purges_total", "Purges accepted", ["soft"],
                              registry=self.registry)
        self.publish_failures = Counter("cdn_purge_publish_failures_total",
                                        "Purges durable in the log but not published",
                                        registry=self.registry)
        self.last_seq = Gauge("cdn_purge_last_seq", "Highest purge sequence written",
                              registry=self.registry)
        self.commit_seconds = Histogram("cdn_purge_commit_seconds",
                                        "Time to make a purge durable and publish it",
                                        registry=self.registry)


METRICS = web.AppKey("metrics", ControlMetrics)


def check_token(request: web.Request, token: str) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    valid = hmac.compare_digest(given.strip().encode(), token.encode())
    if scheme.lower() != "bearer" or not valid:
        raise Unauthorized("missing or wrong bearer token (Authorization: Bearer <purge token>)")
    # Who asked, without storing any part of the secret: a short fingerprint of the token.
    return "token:" + hashlib.sha256(given.strip().encode()).hexdigest()[:12]


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as exc:
        return web.json_response({"error": exc.code, "message": exc.message}, status=exc.status)
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("purge log unavailable: %s", exc)
        err = PurgeLogUnavailable(f"purge log unavailable: {exc.__class__.__name__}")
        return web.json_response({"error": err.code, "message": err.message}, status=err.status)


async def post_purge(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    who = check_token(request, config.purge_token)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadPurgeRequest("body must be JSON, e.g. {\"tags\": [\"product-42\"]}") from None
    purge = parse_purge_request(body, max_items=config.max_items_per_purge)
    purge = type(purge)(purge.tags, purge.urls, purge.prefixes, purge.soft, requested_by=who)
    metrics = request.app[METRICS]
    started = time.perf_counter()
    event = await purge_log.append(request.app[POOL], purge)
    metrics.purges.labels(soft=str(purge.soft).lower()).inc()
    metrics.last_seq.set(event["seq"])
    receivers: int | None
    try:
        receivers = int(await request.app[REDIS].publish(config.purge_channel, json.dumps(event)))
    except (aioredis.RedisError, OSError) as exc:
        # Durable already: subscribers catch up from the log when they reconnect.
        log.warning("purge %d durable but not published: %s", event["seq"], exc)
        metrics.publish_failures.inc()
        receivers = None
    metrics.commit_seconds.observe(time.perf_counter() - started)
    return web.json_response({**event, "published": receivers is not None,
                              "receivers": receivers})


async def get_purge_log(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    check_token(request, config.purge_token)
    try:
        after = int(request.query.get("after", "0"))
        limit = min(int(request.query.get("limit", str(config.max_log_page))), config.max_log_page)
    except ValueError:
        raise BadPurgeRequest("'after' and 'limit' must be integers") from None
    if after < 0 or limit < 1:
        raise BadPurgeRequest("'after' must be >= 0 and 'limit' >= 1")
    pool = request.app[POOL]
    events = await purge_log.read_after(pool, after, limit)
    return web.json_response({"events": events, "last_seq": await purge_log.last_seq(pool)})


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _database(app: web.Application) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(app[CONFIG].effective_database_url, min_size=1, max_size=8)
    async with pool.acquire() as conn:
        await apply_migrations(conn, "control", "control.migrations")
    app[POOL] = pool
    app[METRICS].last_seq.set(await purge_log.last_seq(pool))
    yield
    await pool.close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    client = aioredis.from_url(app[CONFIG].effective_redis_url)
    app[REDIS] = client
    yield
    await client.aclose()


def build_app(config: ControlConfig) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=1 << 20)
    app[CONFIG] = config
    app[METRICS] = ControlMetrics()
    app.cleanup_ctx.extend([_database, _redis])
    app.router.add_post("/purge", post_purge)
    app.router.add_get("/purge/log", get_purge_log)
    app.router.add_get("/_health", health)
    app.router.add_get("/_metrics", metrics)
    return app


def main(argv: Sequence[str]) -> int:
    return run_role(argv, prog="cdn control", cls=ControlConfig, prefix="CDN_CONTROL_",
                    section="control", build_app=build_app,
                    host_port=lambda c: (c.host, c.port))
