"""The aiohttp application around a ``CacheEngine``, shared by edge and shield.

Resources live in cleanup contexts under typed ``AppKey``s: the client session (one per app,
keep-alive), the lean client's connection pools (``LEAN``: the upstream factory's GETs) and
the engine are created when the app starts and closed, with every in-flight
fetch cancelled and awaited, when it stops. Roles add their own contexts (shield health
checks, the purge subscriber) after these, so those can use the session.

Routes: ``GET /_health``, ``GET /_metrics``; everything else goes to the engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from http import HTTPStatus

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CONTENT_TYPE_LATEST

from cdn.worker_metrics import GATHERER
from httpcache.cache_status import CacheStatus
from httpcache.disk_store import DiskStore
from httpcache.engine import CacheEngine, EngineConfig
from httpcache.errors import CacheError, ClientSideError
from httpcache.headers import Fields
from httpcache.lean_client import LeanPools
from httpcache.metrics import CacheMetrics
from httpcache.shared_store import SharedStore
from httpcache.store import PURGE_GRACE, MemoryStore
from httpcache.tiers import CacheTiers
from httpcache.upstream import Upstream, new_client_session

log = logging.getLogger("cdn.httpcache")

ENGINE_CONFIG = web.AppKey("engine_config", EngineConfig)
STORE = web.AppKey("cache_store", MemoryStore)
TIERS = web.AppKey("cache_tiers", CacheTiers)
METRICS = web.AppKey("cache_metrics", CacheMetrics)
SESSION = web.AppKey("http_session", aiohttp.ClientSession)
LEAN = web.AppKey("lean_client_pools", LeanPools)  # GETs upstream (httpcache.lean_client)
ENGINE = web.AppKey("cache_engine", CacheEngine)

UpstreamFactory = Callable[[web.Application, aiohttp.ClientSession], Upstream]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_body(exc: CacheError) -> str:
    phrase = HTTPStatus(exc.status).phrase
    return f"{exc.status} {phrase}: {exc.message}\n"


def error_answer(exc: CacheError, engine: CacheEngine, method: str, target: str
                 ) -> tuple[Fields, bytes]:
    """Count (and, for an upstream-side error, log) ``exc``, and the fields and body that
    answer it with ``exc.status``: a short readable text, our ``Cache-Status`` member naming
    the error, never stored. Both fronts answer errors with this (``errors_middleware``, and
    ``HitPath.serve_miss`` for misses answered outside aiohttp)."""
    if isinstance(exc, ClientSideError):
        engine.counter("denied" if exc.status == 403 else "refused").inc()
    else:
        engine.counter("error").inc()
        log.warning("%s %s: %s", method, target, exc.message)
    body = error_body(exc).encode()
    status = CacheStatus(engine.config.name, detail=exc.__class__.__name__)
    return Fields([("Content-Type", "text/plain; charset=utf-8"),
                   ("Cache-Status", status.format()), ("Cache-Control", "no-store"),
                   ("Content-Length", str(len(body)))]), body


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map our errors to short readable responses at the handler edge (``error_answer``)."""
    try:
        return await handler(request)
    except CacheError as exc:
        fields, body = error_answer(exc, request.app[ENGINE], request.method, request.path)
        return web.Response(status=exc.status, body=body,
                            headers=CIMultiDict(fields.without("content-length")))


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def metrics_handler(request: web.Request) -> web.Response:
    """This application's metrics; every worker's when it runs as one of several
    (``cdn.worker_metrics``)."""
    gatherer = request.app.get(GATHERER)
    body = await gatherer.exposition() if gatherer is not None else request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def proxy(request: web.Request) -> web.StreamResponse:
    return await request.app[ENGINE].handle(request)


def build_cache_app(
    config: EngineConfig,
    upstream_factory: UpstreamFactory,
    *,
    max_bytes: int,
    max_object_bytes: int | None = None,
    clock: Callable[[], float] = time.time,
    contexts: Sequence[CleanupContext] = (),
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    disk: Callable[[], DiskStore] | None = None,
    shared: Callable[[CacheMetrics], SharedStore] | None = None,
    purge_grace: float = PURGE_GRACE,
) -> web.Application:
    """An application running ``config``'s engine in front of ``upstream_factory``'s hop;
    ``disk`` and ``shared`` make the optional lower tiers (at start-up, closed at cleanup)."""
    metrics = CacheMetrics(config.name)
    store = MemoryStore(max_bytes, max_object_bytes, on_evict=lambda _s: metrics.evictions.inc(),
                        purge_grace=purge_grace)
    metrics.cache_objects.set_function(lambda: len(store))
    metrics.cache_bytes.set_function(lambda: store.current_bytes)

    app = web.Application(middlewares=[errors_middleware], handler_args={"max_field_size": 16384})
    app[ENGINE_CONFIG] = config
    app[STORE] = store
    app[METRICS] = metrics

    async def engine_context(app: web.Application) -> AsyncIterator[None]:
        session = new_client_session(connect_timeout, read_timeout)
        app[SESSION] = session
        # a body the memory tier could keep is read straight into one buffer (lean_client)
        lean = LeanPools(connect_timeout=connect_timeout, read_timeout=read_timeout,
                         direct_max=store.max_object_bytes)
        app[LEAN] = lean
        disk_store = disk() if disk is not None else None
        if disk_store is not None:
            metrics.disk_objects.set_function(lambda: len(disk_store))
            metrics.disk_bytes.set_function(lambda: disk_store.current_bytes)
        shared_store = shared(metrics) if shared is not None else None
        engine = CacheEngine(config, upstream_factory(app, session), store, metrics, clock=clock,
                             disk=disk_store, shared=shared_store)
        app[ENGINE] = engine
        app[TIERS] = engine.tiers
        yield
        await engine.aclose()
        if shared_store is not None:
            await shared_store.aclose()
        if disk_store is not None:
            disk_store.close()
        lean.close()
        await session.close()

    app.cleanup_ctx.append(engine_context)
    app.cleanup_ctx.extend(contexts)
    app.router.add_get("/_health", health)
    app.router.add_get("/_metrics", metrics_handler)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app
