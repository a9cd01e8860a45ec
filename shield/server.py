"""The shield server: the shared cache engine facing the origin, open only to edges.

``cdn shield`` runs it (flags from ``ShieldConfig``). The origin may be any HTTP/1.1 server.
When ``edge_secret`` is set, every proxied request must carry a valid ``X-CDN-Edge-Auth``
(``shield.edge_auth``); ``/_health`` and ``/_metrics`` are exempt. ``Surrogate-Key`` is kept
on responses so the edge can index the same tags.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence

import aiohttp
from aiohttp import web

from cdn.roles import add_config_arguments, config_from_args
from cdn.settings import ConfigError
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
    """``cdn shield``: ``cdn.roles.run_role``'s command line, served by ``httpcache.serving``
    (the hit path in front, as at the edge)."""
    prog = "cdn shield"
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", help="TOML file (default: $CDN_CONFIG)")
    parser.add_argument("--log-level", default="INFO")
    add_config_arguments(parser, ShieldConfig)
    args = parser.parse_args(list(argv))
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s {prog} %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(ShieldConfig, args, prefix="CDN_SHIELD_", section="shield")
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return 2
    return serving.serve(build_app(config), config.host, config.port,
                         hit_path=config.hit_path)
