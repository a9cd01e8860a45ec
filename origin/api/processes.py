"""``cdn origin --processes N``: N origin processes on one port (``SO_REUSEPORT``).

One origin process runs one event loop, and with the object cache on (``origin.object_cache``)
a 4 KiB GET costs the nodes nothing, so that one core becomes the limit while the machine
has CPU to spare. With ``processes`` > 1 the parent forks that many servers before any event
loop exists; each binds the same port with ``SO_REUSEPORT`` (the kernel spreads connections
over them) and runs its own application, exactly as several origins behind a load balancer
would: its own PostgreSQL pool, node connections, memos, object cache and metrics registry.
``/_metrics``, whichever process answers it, holds every process's samples labelled
``worker="1".."N"`` (``cdn.worker_metrics``), so the counters are the whole server's and do
not jump between processes' values. As between origins, a bucket change made through one
process is seen by the others within ``lookup_cache_ttl`` (objects are read from PostgreSQL
on every request and are always current). Background workers and the lifecycle worker run
in the first process only. The parent only supervises: it forwards SIGTERM/SIGINT and exits
when they have.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from aiohttp import web

from cdn.roles import serve_forked
from cdn.worker_metrics import WorkerMetrics
from origin.api.keys import METRICS
from origin.config import OriginConfig

ServeOne = Callable[[OriginConfig, web.Application, bool, str], None]


def serve_processes(config: OriginConfig, app: web.Application,
                    build_app: Callable[[OriginConfig], web.Application],
                    serve_one: ServeOne) -> int:
    """Run ``config.processes`` servers; ``serve_one(config, app, reuse_port, label)`` runs
    one until it is told to stop. The exit status of the whole."""
    if config.processes <= 1:
        serve_one(config, app, False, "")
        return 0

    def one(index: int, metrics: WorkerMetrics) -> None:
        own = config if index == 0 else dataclasses.replace(
            config, background_workers=False, lifecycle_interval=0.0)
        own_app = app if index == 0 else build_app(own)
        metrics.join(own_app, index + 1, own_app[METRICS].registry)
        serve_one(own, own_app, True, f" (process {index + 1}, pid {os.getpid()})")

    with WorkerMetrics(config.processes) as metrics:
        return serve_forked(config.processes, lambda index: one(index, metrics),
                            what="origin process")
