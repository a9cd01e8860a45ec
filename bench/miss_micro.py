"""The edge's CPU per miss, measured inside the edge process (optionally under cProfile).

    python bench/miss_micro.py [--size 1k] [--seconds 5] [--connections 1,64]
                               [--profile] [--top 40] [--no-hit-path]

Starts the bench origin (nginx when installed, else ``static_origin.py``), then runs an edge
(``edge.server.build_app`` served as ``cdn edge`` serves it: uvloop, the hit path, the tuned
garbage collector) *in this process*, and drives it with wrk (``lua/misses.lua``: every
request a new URL) at each concurrency in turn. For each it prints req/s, wrk's p50/p99 and
the edge's CPU time per request (``getrusage`` of this process over the run: wrk and the
origin are other processes). ``--profile`` runs cProfile during the load and prints the top
functions by own and cumulative time (cProfile roughly doubles the cost per call, so read
its shares, not its absolute times).

It measures what ``edge_vs_peers.py --modes misses`` measures for our edge, minus the process
boundary, so a change can be judged in a few seconds on a noisy machine: CPU per request is
steadier than req/s when other work shares the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import pstats
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge_vs_peers import parse_size  # noqa: E402
from bench.loadgen import LUA, parse  # noqa: E402
from bench.origins import start_origin  # noqa: E402
from cdn.processes import free_port  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def wrk(url: str, size: int, tag: str, seconds: float, connections: int) -> str:
    threads = min(2, connections)
    proc = await asyncio.create_subprocess_exec(
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
        "--timeout", "10s", "-s", str(LUA / "misses.lua"), url, "--", str(size), tag,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds + 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {err.decode()}")
    return out.decode()


async def run(args: argparse.Namespace, origin_url: str) -> None:
    from aiohttp import web

    from cdn.roles import tune_gc, tune_malloc
    from edge.config import EdgeConfig
    from edge.server import build_app
    from httpcache.app import ENGINE
    from httpcache.fast_server import HitServer, app_handler_factory, proxied_elsewhere
    from httpcache.hit_path import HitPath

    size = parse_size(args.size)
    tune_malloc()  # as httpcache.serving does
    config = EdgeConfig(host="127.0.0.1", port=free_port(), upstream=origin_url,
                        region="bench", cache_max_bytes=256 * 1024 * 1024)
    app = build_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    if args.no_hit_path:
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        await site.start()
        listener = None
    else:
        hits = HitServer(HitPath(app[ENGINE]), app_handler_factory(runner),
                         app_paths=proxied_elsewhere(app))
        listener = await loop.create_server(hits, config.host, config.port, backlog=1024)
    url = f"http://{config.host}:{config.port}"
    tune_gc()
    try:
        await wrk(url, size, f"warm{time.time_ns()}", 1.0, 8)  # connections, code paths
        for connections in args.connections:
            profiler = cProfile.Profile() if args.profile else None
            before = cpu_seconds()
            if profiler is not None:
                profiler.enable()
            out = await wrk(url, size, f"r{time.time_ns()}", args.seconds, connections)
            if profiler is not None:
                profiler.disable()
            used = cpu_seconds() - before
            result = parse(out)
            print(f"misses {size} B, {connections:3d} conn: {result.rps:8.0f} req/s  "
                  f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                  f"edge CPU {used / max(result.requests, 1) * 1e6:6.1f} µs/req  "
                  f"errors {result.errors}", flush=True)
            if profiler is not None:
                text = io.StringIO()
                stats = pstats.Stats(profiler, stream=text)
                stats.sort_stats("tottime").print_stats(args.top)
                stats.sort_stats("cumulative").print_stats(args.top)
                print(text.getvalue())
                if args.dump:
                    stats.dump_stats(f"{args.dump}.{connections}")
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1k")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", default="1,64",
                        type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--origin", choices=("nginx", "aiohttp"), default="nginx")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--dump", help="with --profile: also save the stats here (pstats)")
    parser.add_argument("--no-hit-path", action="store_true")
    args = parser.parse_args()
    import uvloop

    # wrk drops its connections at the end of a run, mid-request: not worth a traceback
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    work = Path(tempfile.mkdtemp(prefix="bench-miss-micro-"))
    origin = start_origin(args.origin, work, [parse_size(args.size)])
    try:
        uvloop.run(run(args, origin.url))
    finally:
        origin.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
