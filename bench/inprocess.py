"""What ``hit_micro.py`` and ``miss_micro.py`` share: an edge served in this process as
``cdn edge`` serves it (uvloop, the hit path in front of the aiohttp app), the bench origin
around a run, and cProfile's tables.

Running the edge in the measuring process lets a bench read its CPU time with
``getrusage``/``process_time`` and profile it with cProfile, without a process boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import pstats
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.origins import start_origin
from cdn.processes import free_port


@dataclass
class InProcessEdge:
    app: Any  # aiohttp.web.Application
    hits: Any | None  # httpcache.fast_server.HitServer, None without the hit path
    url: str


@contextlib.asynccontextmanager
async def edge_in_process(origin_url: str, *, hit_path: bool = True
                          ) -> AsyncIterator[InProcessEdge]:
    """An edge in front of ``origin_url`` (256 MiB memory tier) on a free loopback port."""
    from aiohttp import web

    from cdn.roles import tune_gc, tune_malloc
    from edge.config import EdgeConfig
    from edge.server import build_app
    from httpcache.app import ENGINE
    from httpcache.fast_server import HitServer, app_handler_factory, proxied_elsewhere
    from httpcache.hit_path import HitPath

    tune_malloc()  # as httpcache.serving does
    config = EdgeConfig(host="127.0.0.1", port=free_port(), upstream=origin_url,
                        region="bench", cache_max_bytes=256 * 1024 * 1024)
    app = build_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    hits = None
    listener = None
    if hit_path:
        hits = HitServer(HitPath(app[ENGINE]), app_handler_factory(runner),
                         app_paths=proxied_elsewhere(app))
        listener = await asyncio.get_running_loop().create_server(
            hits, config.host, config.port, backlog=1024)
    else:
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        await site.start()
    tune_gc()
    try:
        yield InProcessEdge(app, hits, f"http://{config.host}:{config.port}")
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()


def with_origin(kind: str, size: int, prefix: str,
                run: Callable[[str], Coroutine[Any, Any, None]]) -> int:
    """Start the bench origin serving ``size``-byte bodies, run ``run(origin_url)`` on uvloop,
    stop the origin and remove its files."""
    import uvloop

    work = Path(tempfile.mkdtemp(prefix=prefix))
    origin = start_origin(kind, work, [size])
    try:
        uvloop.run(run(origin.url))
    finally:
        origin.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def profile_tables(profiler: cProfile.Profile, top: int, *orders: str) -> str:
    """cProfile's top ``top`` functions by each of ``orders`` ("tottime", "cumulative")."""
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    for order in orders:
        stats.sort_stats(order).print_stats(top)
    return text.getvalue()
