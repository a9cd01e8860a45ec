"""The edge PoP server: signed-URL check, then the shared cache engine, then a shield.

``cdn edge`` runs it (flags from ``EdgeConfig``). Misses go to the shield rendezvous hashing
picks for the cache key (``edge.shield_selection``), signed with the edge secret, or straight
to ``upstream`` when no shields are configured. Requests for signed buckets are checked before
anything else: a bad signature is a 403 with no upstream request, and the signature
parameters never reach the cache key or the upstream. ``Surrogate-Key`` is indexed for purges
but not shown to browsers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import Gauge

from cdn.roles import run_role
from edge import signing
from edge.config import EdgeConfig
from edge.shield_selection import HealthChecker, ShieldPool, ShieldUpstream
from httpcache import serving
from httpcache.app import LEAN, METRICS, SESSION
from httpcache.cache_key import make_target, split_target
from httpcache.engine import Gate, GateRequest
from httpcache.tier import build_tier_app
from httpcache.upstream import HttpUpstream, RequestSigner
from shield import edge_auth

CONFIG = web.AppKey("edge_config", EdgeConfig)
SHIELD_POOL = web.AppKey("shield_pool", ShieldPool)


def signed_url_gate(keys: dict[str, str], signed_buckets: tuple[str, ...]) -> Gate:
    def gate(request: GateRequest, target: str, now: float) -> str:
        path, query = split_target(target)
        if not signing.requires_signature(path, signed_buckets):
            return target
        verified = signing.verify(path, query, keys, now, request.remote)
        return make_target(path, verified.query)

    return gate


def edge_signer(secret: str, clock: Callable[[], float]) -> RequestSigner:
    def sign(method: str, target: str) -> dict[str, str]:
        return {edge_auth.HEADER: edge_auth.sign(secret, method, target, clock())}

    return sign


def _health_context(pool: ShieldPool, interval: float
                    ) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        checker = HealthChecker(pool, app[SESSION], interval)
        task = asyncio.create_task(checker.run(), name="shield-health")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


def build_app(config: EdgeConfig, *, clock: Callable[[], float] = time.time
              ) -> web.Application:
    gates: list[Gate] = []
    if config.signed_buckets:
        gates.append(signed_url_gate(dict(config.signing_keys), config.signed_buckets))
    engine_config = config.engine_config(
        config.cache_name,
        # tier-private fields: tags, and the targeted fields of RFC 9213 that our tiers obey
        # ("CDN-Cache-Control ... is not forwarded" to clients past the edge)
        strip_response_fields=frozenset({"surrogate-key", "cdn-cache-control",
                                         "surrogate-control"}),
        drop_request_fields=frozenset({edge_auth.HEADER}),
        gates=tuple(gates),
    )
    signer = edge_signer(config.edge_secret, clock) if config.edge_secret else None
    shields = config.effective_shields
    pool = ShieldPool(shields) if shields else None
    contexts: list[Any] = []

    def upstream(app: web.Application, session: aiohttp.ClientSession
                 ) -> ShieldUpstream | HttpUpstream:
        if pool is not None:
            return ShieldUpstream(pool, session, signer, lean=app[LEAN])
        return HttpUpstream(session, config.upstream, signer, lean=app[LEAN])

    if pool is not None:
        contexts.append(_health_context(pool, config.shield_health_interval))
    app = build_tier_app(config, engine_config, upstream, clock=clock, contexts=contexts)
    app[CONFIG] = config
    if pool is not None:
        app[SHIELD_POOL] = pool
        shield_up = Gauge("cdn_shield_up", "1 while the edge believes the shield is up",
                          ["shield"], registry=app[METRICS].registry)
        for name in pool.urls:
            shield_up.labels(name).set_function(functools.partial(_up_value, pool, name))
    return app


def _up_value(pool: ShieldPool, name: str) -> float:
    return 1.0 if pool.is_up(name) else 0.0


def main(argv: Sequence[str]) -> int:
    """``cdn edge``: flags from ``EdgeConfig``, served by ``httpcache.serving`` (the fast front end
    and reuse_port workers)."""
    return run_role(
        argv, prog="cdn edge", cls=EdgeConfig, prefix="CDN_EDGE_", section="edge",
        build_app=build_app, host_port=lambda c: (c.host, c.port),
        serve_app=lambda config, app: serving.serve(
            app, config.host, config.port, hit_path=config.hit_path, workers=config.workers))
