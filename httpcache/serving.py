"""How ``cdn edge`` and ``cdn shield`` run their application: the hit path in front, and
``reuse_port`` workers.

``serve(app, host, port, hit_path=True, workers=1)``:

* with ``hit_path`` the listening socket speaks ``httpcache.fast_server.HitProtocol``: fresh
  memory hits are answered on asyncio's protocol layer, every other request (and the rest of
  its connection) by the aiohttp application, as without it;
* with ``workers`` > 1 the process forks that many workers before any event loop exists; each
  binds the same port with ``SO_REUSEPORT`` (the kernel spreads connections over them) and
  runs its own application: **its own memory tier**. Workers share cached objects only
  through the lower tiers when configured (``--shared-cache-url``: a Redis tier, whose hits
  are promoted into the worker's memory; ``--cache-dir`` is per process). The trade-off: a
  popular object is fetched (or read from Redis) once per worker and held once per worker;
  ``--cache-max-bytes`` is per worker. Purges reach every worker (each subscribes). The
  parent only supervises: it forwards SIGTERM/SIGINT and exits when the workers have.
  With the hit path the workers also keep their connection counts level
  (``cdn.balance``): the kernel's spread of a few long keep-alive connections is uneven,
  and a worker holding more of them than the others answers each later.
  ``/_metrics`` answers every worker's samples labelled ``worker`` (``cdn.worker_metrics``),
  whichever worker the scrape reaches.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from aiohttp import web

from cdn.balance import BalancedFront, Balancer
from cdn.roles import Front, serve_forked
from cdn.roles import serve as serve_role
from cdn.worker_metrics import WorkerMetrics
from httpcache.app import ENGINE, METRICS
from httpcache.fast_server import HitServer, proxied_elsewhere
from httpcache.hit_path import HitPath


def serve(app: web.Application, host: str, port: int, *, hit_path: bool = True,
          workers: int = 1) -> int:
    """Run ``app`` until SIGINT/SIGTERM; the exit status of the process."""
    if workers <= 1:
        _serve_one(app, host, port, hit_path=hit_path, reuse_port=False)
        return 0
    balancer = Balancer(workers) if hit_path else None
    with WorkerMetrics(workers) as metrics:
        return serve_forked(workers, lambda index: _serve_one(
            app, host, port, hit_path=hit_path, reuse_port=True, worker=index + 1,
            balancer=balancer, metrics=metrics), what="worker",
            after_fork=balancer.close_parent_copies if balancer is not None else None)


def _serve_one(app: web.Application, host: str, port: int, *, hit_path: bool,
               reuse_port: bool, worker: int = 0, balancer: Balancer | None = None,
               metrics: WorkerMetrics | None = None) -> None:
    who = f" (worker {worker}, pid {os.getpid()})" if worker else ""
    if metrics is not None:
        metrics.join(app, worker, app[METRICS].registry)

    def balanced_front(app: web.Application, app_server: Callable[[], asyncio.Protocol]
                       ) -> Front:
        assert balancer is not None
        front = BalancedFront(_hit_front(app, app_server), balancer, worker - 1)
        app[METRICS].count_moved_connections(lambda: (front.moved_in, front.moved_out))
        return front

    front = None if not hit_path else _hit_front if balancer is None else balanced_front
    serve_role(app, host, port, reuse_port=reuse_port, label=who, front=front)


def _hit_front(app: web.Application, app_server: Callable[[], asyncio.Protocol]) -> HitServer:
    return HitServer(HitPath(app[ENGINE]), app_server, app_paths=proxied_elsewhere(app))
