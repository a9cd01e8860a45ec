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
import logging
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge_vs_peers import parse_size  # noqa: E402
from bench.inprocess import edge_in_process, profile_tables, with_origin  # noqa: E402
from bench.loadgen import LUA, parse  # noqa: E402


def cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


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
    size = parse_size(args.size)
    async with edge_in_process(origin_url, hit_path=not args.no_hit_path) as edge:
        await wrk(edge.url, size, f"warm{time.time_ns()}", 1.0, 8)  # connections, code paths
        for connections in args.connections:
            profiler = cProfile.Profile() if args.profile else None
            before = cpu_seconds()
            if profiler is not None:
                profiler.enable()
            out = await wrk(edge.url, size, f"r{time.time_ns()}", args.seconds, connections)
            if profiler is not None:
                profiler.disable()
            after = cpu_seconds()
            user, system = after[0] - before[0], after[1] - before[1]
            result = parse(out)
            per = 1e6 / max(result.requests, 1)
            print(f"misses {size} B, {connections:3d} conn: {result.rps:8.0f} req/s  "
                  f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                  f"edge CPU {(user + system) * per:6.1f} µs/req "
                  f"(user {user * per:.1f}, sys {system * per:.1f})  "
                  f"errors {result.errors}", flush=True)
            if profiler is not None:
                print(profile_tables(profiler, args.top, "tottime", "cumulative"))
                if args.dump:
                    profiler.dump_stats(f"{args.dump}.{connections}")


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
    # wrk drops its connections at the end of a run, mid-request: not worth a traceback
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    return with_origin(args.origin, parse_size(args.size), "bench-miss-micro-",
                       lambda origin_url: run(args, origin_url))

if __name__ == "__main__":
    sys.exit(main())
