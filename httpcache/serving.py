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
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys

from aiohttp import web

from cdn.roles import tune_gc, tune_malloc
from httpcache.app import ENGINE
from httpcache.fast_server import HitServer, app_handler_factory, proxied_elsewhere
from httpcache.hit_path import HitPath

log = logging.getLogger("cdn.serving")


def serve(app: web.Application, host: str, port: int, *, hit_path: bool = True,
          workers: int = 1) -> int:
    """Run ``app`` until SIGINT/SIGTERM; the exit status of the process."""
    if workers <= 1:
        _serve_one(app, host, port, hit_path=hit_path, reuse_port=False)
        return 0
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker
            _die_with_parent()
            code = 0
            try:
                _serve_one(app, host, port, hit_path=hit_path, reuse_port=True,
                           worker=index + 1)
            except BaseException:  # noqa: BLE001 - reported, then the worker exits
                log.exception("worker %d failed", index + 1)
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(sig: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _pid, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the supervising parent dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _serve_one(app: web.Application, host: str, port: int, *, hit_path: bool,
               reuse_port: bool, worker: int = 0) -> None:
    tune_malloc()  # as cdn.roles.serve does for every role
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - non-posix
        pass
    asyncio.run(_main(app, host, port, hit_path=hit_path, reuse_port=reuse_port,
                      worker=worker))


async def _main(app: web.Application, host: str, port: int, *, hit_path: bool,
                reuse_port: bool, worker: int) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    hits: HitServer | None = None
    if hit_path:
        hits = HitServer(HitPath(app[ENGINE]), app_handler_factory(runner),
                         app_paths=proxied_elsewhere(app))
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(hits, host, port, reuse_port=reuse_port or None,
                                            backlog=1024)
        site_close = listener.close
    else:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024)
        await site.start()
        site_close = None
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    who = f" (worker {worker}, pid {os.getpid()})" if worker else ""
    log.info("listening on http://%s:%d%s%s", host, port, who,
             " with the hit path" if hit_path else "")
    print(f"ready http://{host}:{port}{who}", flush=True)
    await stop.wait()
    if site_close is not None:
        site_close()
    if hits is not None:
        hits.close_connections()
    await runner.cleanup()
