"""The origin's S3-style API server (``cdn origin``).

``build_app(config)`` wires routes, the middleware and two cleanup contexts: the metadata pool
(migrations, configured nodes and the admin credential are written at start-up) and the
storage side (one keep-alive ``ClientSession`` to all nodes, the health prober, which also
records the nodes' disks after each round (``disk_probe``), the EC writer and reader).
Handlers reach them through typed ``AppKey``s only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cdn.roles import run_role, serve
from cdn.worker_metrics import GATHERER
from origin.api import buckets, objects
from origin.api.auth import ADMIN_OWNER
from origin.api.front import OriginFront
from origin.api.keys import (
    BUCKETS,
    CONFIG,
    CREDENTIALS,
    HEALTH,
    KNOWN_VOLUMES,
    METRICS,
    NODES,
    OBJECT_CACHE,
    POOL,
    READER,
    SESSION,
    WRITER,
)
from origin.api.middleware import add_request_id, s3_middleware
from origin.api.processes import serve_processes
from origin.config import OriginConfig
from origin.disk_probe import DiskProbe
from origin.ec_reader import ECReader
from origin.ec_writer import ECWriter
from origin.erasure import cached_scheme
from origin.errors import MethodNotAllowed
from origin.metadata import db
from origin.metadata.credentials import upsert_credential
from origin.metadata.models import Credential
from origin.metadata.nodes import touch_nodes, upsert_nodes
from origin.metadata.volume_memo import KnownVolumes
from origin.metrics import OriginMetrics
from origin.nodeclient import NodeClient
from origin.nodehealth import NodeHealth, NodeStatus
from origin.object_cache import ObjectCache
from origin.ttl_cache import TTLCache
from origin.workers.base import Closeable, ClusterContext
from origin.workers.runtime import BackgroundWorkers, bad_fragment_reporter, refresh_node_directory


async def health(request: web.Request) -> web.Response:
    up = request.app[HEALTH].up_nodes() if HEALTH in request.app else []
    return web.json_response({"status": "ok", "storage_nodes_up": len(up)})


async def metrics(request: web.Request) -> web.Response:
    """This process's metrics; every process's with ``--processes`` > 1."""
    gatherer = request.app.get(GATHERER)
    body = (await gatherer.exposition() if gatherer is not None
            else generate_latest(request.app[METRICS].registry))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def not_allowed(_request: web.Request) -> web.Response:
    raise MethodNotAllowed()


async def _metadata(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    pool = await db.create_pool(config.effective_database_url, max_size=config.db_pool_max)
    try:
        await db.migrate(pool)
        await upsert_nodes(pool, config.storage_nodes)
        await upsert_credential(pool, Credential(config.admin_access_key,
                                                 config.admin_secret_key, ADMIN_OWNER))
    except BaseException:
        await pool.close()
        raise
    app[POOL] = pool
    app[KNOWN_VOLUMES] = KnownVolumes()
    yield
    await pool.close()


async def _storage(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    specs = {n.node_id: n for n in config.storage_nodes}
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=64, keepalive_timeout=30)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
    nodes = NodeClient(session, specs, config.node_timeout,
                       batch_inflight=config.node_batch_inflight)
    node_health = NodeHealth(specs)
    pool = app[POOL]
    zones = {n: s.zone for n, s in specs.items()}  # shared with the writer; grows on joins

    disks = DiskProbe()

    async def seen(up: dict[str, NodeStatus]) -> None:
        await touch_nodes(pool, list(up))
        rows = await refresh_node_directory(pool, nodes, node_health, zones,
                                            config.node_lost_after)
        await disks.record(pool, up, rows)  # nodes without heartbeats: origin/disk_probe.py

    node_health.start(nodes.probe, config.health_interval, seen)
    scheme = cached_scheme(config.ec_ndata, config.ec_nparity, config.segment_size,
                           config.ec_type)
    app[SESSION] = session
    app[NODES] = nodes
    app[HEALTH] = node_health
    app[WRITER] = ECWriter(scheme, nodes, node_health, zones,
                           quorum=config.effective_write_quorum,
                           pipeline_depth=config.pipeline_depth, metrics=app[METRICS],
                           straggler_wait=config.hedge_after, policy=config.storage_policy,
                           max_write_seconds=config.max_put_seconds)
    app[READER] = ECReader(nodes, node_health, pipeline_depth=config.pipeline_depth,
                           metrics=app[METRICS], hedge_after=config.hedge_after,
                           on_bad_fragment=bad_fragment_reporter(pool))
    workers = BackgroundWorkers(config, ClusterContext(
        pool, nodes, node_health, config.node_lost_after)) if config.background_workers else None
    yield
    if workers is not None:
        await workers.close()
    await node_health.stop()
    await nodes.close()
    await session.close()


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """The lifecycle worker (issue 5); transitions rewrite data through the storage-class
    code (``origin.storage_class_change``)."""
    config = app[CONFIG]
    if config.lifecycle_interval <= 0:
        yield
        return
    from origin.lifecycle.worker import LifecycleWorker
    from origin.storage_class_change import lifecycle_mover

    pool = app[POOL]
    worker = LifecycleWorker(pool, transition=lifecycle_mover(
        pool, app[WRITER], app[READER], config.storage_policy))
    loop = Closeable(worker, config.lifecycle_interval)
    yield
    await loop.close()


def build_app(config: OriginConfig) -> web.Application:
    # client_max_size bounds only bodies read whole (bucket creation); object bodies stream.
    app = web.Application(middlewares=[s3_middleware], client_max_size=1 << 20)
    app[CONFIG] = config
    app[METRICS] = OriginMetrics()
    app[CREDENTIALS] = TTLCache(config.lookup_cache_ttl)
    app[BUCKETS] = TTLCache(config.lookup_cache_ttl)
    if config.object_cache_bytes:
        app[OBJECT_CACHE] = ObjectCache(config.object_cache_bytes)
    app.cleanup_ctx.extend([_metadata, _storage, _lifecycle])
    app.on_response_prepare.append(add_request_id)
    r = app.router
    r.add_get("/_health", health)
    r.add_get("/_metrics", metrics)
    r.add_get("/", buckets.list_buckets)
    r.add_route("*", "/", not_allowed)
    bucket_paths = ("/{bucket}", "/{bucket}/")
    for path in bucket_paths:
        r.add_put(path, buckets.create_bucket)
        r.add_get(path, buckets.get_bucket, allow_head=False)
        r.add_head(path, buckets.head_bucket)
        r.add_delete(path, buckets.delete_bucket)
        r.add_post(path, buckets.post_bucket)
        r.add_route("*", path, not_allowed)
    key_path = "/{bucket}/{key:.+}"
    r.add_put(key_path, objects.put_object)
    r.add_get(key_path, objects.get_object)  # allow_head: HEAD shares the handler
    r.add_delete(key_path, objects.delete_object)
    r.add_post(key_path, objects.post_object)
    r.add_route("*", key_path, not_allowed)
    return app


def origin_front(app: web.Application, app_server: Callable[[], asyncio.Protocol]
                 ) -> OriginFront:
    """The protocol-level front (``origin.api.front``) over the started ``app``."""
    return OriginFront(app, app_server, max_body=app[CONFIG].front_max_body)


def _serve_one(config: OriginConfig, app: web.Application, reuse_port: bool,
               label: str) -> None:
    serve(app, config.host, config.port, reuse_port=reuse_port, label=label,
          front=origin_front if config.front else None)


def _serve(config: OriginConfig, app: web.Application) -> int:
    return serve_processes(config, app, build_app, _serve_one)


def main(argv: Sequence[str]) -> int:
    return run_role(argv, prog="cdn origin", cls=OriginConfig, prefix="CDN_ORIGIN_",
                    section="origin", build_app=build_app,
                    host_port=lambda c: (c.host, c.port), serve_app=_serve)
