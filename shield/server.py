"""The shield server: the shared cache engine facing the origin, open only to edges.

``cdn shield`` runs it (flags from ``ShieldConfig``). The origin may be any HTTP/1.1 server.
When ``edge_secret`` is set, every proxied request must carry a valid ``X-CDN-Edge-Auth``
(``shield.edge_auth``); ``/_health`` and ``/_metrics`` are exempt. ``Surrogate-Key`` is kept
on responses so the edge can index the same tags.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import aiohttp
from aiohttp import web

from cdn.roles import run_role
from httpcache import serving
from httpcache.app import LEAN
from httpcache.engine import Gate, GateRequest
from httpcache.tier import build_tier_app
from httpcache.upstream import HttpUpstream
from shield import edge_auth
from shield.config import ShieldConfig
from shield.origin_auth import sigv4_signer

CONFIG = web.AppKey("shield_config", ShieldConfig)


def edge_auth_gate(secret: str) -> Gate:
    def gate(request: GateRequest, target: str, now: float) -> str:
        edge_auth.verify(request.headers.get(edge_auth.HEADER), secret, request.method,
                         target, now)
        return target

    return gate


def build_app(config: ShieldConfig, *, clock: Callable[[], float] = time.time
              ) -> web.Application:
    engine_config = config.engine_config(
        config.cache_name,
        drop_request_fields=frozenset({edge_auth.HEADER}),
        gates=(edge_auth_gate(config.edge_secret),) if config.edge_secret else (),
        answers_purge_seq=True,
    )

    signer = None
    if config.origin_access_key:
        signer = sigv4_signer(config.origin, config.origin_access_key, config.origin_secret_key,
                              config.origin_region)

    def upstream(app: web.Application, session: aiohttp.ClientSession) -> HttpUpstream:
        return HttpUpstream(session, config.origin, signer, lean=app[LEAN])

    app = build_tier_app(config, engine_config, upstream, clock=clock)
    app[CONFIG] = config
    return app


def main(argv: Sequence[str]) -> int:
    """``cdn shield``: flags from ``ShieldConfig``, served by ``httpcache.serving`` with the
    fast front end, as at the edge."""
    return run_role(
        argv, prog="cdn shield", cls=ShieldConfig, prefix="CDN_SHIELD_", section="shield",
        build_app=build_app, host_port=lambda c: (c.host, c.port),
        serve_app=lambda config, app: serving.serve(
            app, config.host, config.port, hit_path=config.hit_path))
