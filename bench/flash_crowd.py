"""A flash crowd: 1,000 concurrent requests for one cold 10 MiB object through our edge.

    python bench/flash_crowd.py [--clients 1000] [--size 10m] [--origin-rate 200e6] [--repeat 3]

Reports the origin GETs the crowd caused (from the origin's own counter: the goal is exactly
1), whether every client got exactly the origin's bytes, time to first body byte of a lone
cold request vs each crowd member's (median, p99, max), and the crowd's completion time vs
the same requests once the object is a cache hit. Connections are opened before the clock
starts (a ``/_health`` round on each), so the figures are about the cache, not TCP setup.
The origin sends a body at ``--origin-rate`` bytes/s, so a waiter that only got its first
byte after the fetch completed would show it (10 MiB at 200 MB/s ≈ 52 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from bench.edge_vs_peers import parse_size  # noqa: E402
from bench.origins import start_origin  # noqa: E402
from bench.peers import start_edge  # noqa: E402
from bench.static_origin import body  # noqa: E402

LONE_SAMPLES = 5  # the lone request's TTFB is the median of this many cold fetches


@dataclass(frozen=True)
class Fetch:
    ttfb: float  # seconds from sending to the first body byte
    total: float  # seconds from sending to the last byte
    exact: bool
    cache_status: str


async def fetch(session: aiohttp.ClientSession, url: str, expected: bytes) -> Fetch:
    view = memoryview(expected)
    start = time.perf_counter()
    ttfb = 0.0
    exact = True
    offset = 0
    async with session.get(url) as resp:
        status = resp.headers.get("Cache-Status", "")
        async for chunk in resp.content.iter_any():
            if not offset:
                ttfb = time.perf_counter() - start
            end = offset + len(chunk)
            if exact and view[offset:end] != chunk:
                exact = False
            offset = end
        exact = exact and offset == len(expected) and resp.status == 200
    return Fetch(ttfb, time.perf_counter() - start, exact, status)


async def open_connections(session: aiohttp.ClientSession, base: str, n: int) -> None:
    async def one() -> None:
        async with session.get(base + "/_health") as resp:
            await resp.read()

    await asyncio.gather(*(one() for _ in range(n)))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def crowd_round(edge: str, origin: str, size: int, clients: int, tag: str,
                      edge_cpu: Callable[[], float]) -> dict[str, float]:
    expected = body(size)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:
        lones = [await fetch(session, f"{edge}/{size}/lone-{tag}-{i}", expected)
                 for i in range(LONE_SAMPLES)]
        await open_connections(session, edge, clients)
        url = f"{edge}/{size}/crowd-{tag}"
        cpu0, client0, start = edge_cpu(), time.process_time(), time.perf_counter()
        crowd = await asyncio.gather(*(fetch(session, url, expected) for _ in range(clients)))
        crowd_time = time.perf_counter() - start
        cpu1, client1, start = edge_cpu(), time.process_time(), time.perf_counter()
        hits = await asyncio.gather(*(fetch(session, url, expected) for _ in range(clients)))
        hits_time = time.perf_counter() - start
        cpu2, client2 = edge_cpu(), time.process_time()
        async with session.get(origin + "/_count") as resp:
            counts = json.loads(await resp.read())
    ttfbs = [f.ttfb for f in crowd]
    return {
        "origin_gets": counts.get(f"/{size}/crowd-{tag}", 0),
        "exact": sum(f.exact for f in crowd), "hits_exact": sum(f.exact for f in hits),
        "hit_answers": sum("hit" in f.cache_status for f in hits),
        "lone_ttfb_ms": statistics.median(f.ttfb for f in lones) * 1e3,
        "lone_total_ms": statistics.median(f.total for f in lones) * 1e3,
        "lones_exact": sum(f.exact for f in lones),
        "ttfb_p50_ms": statistics.median(ttfbs) * 1e3, "ttfb_p99_ms": pct(ttfbs, 0.99) * 1e3,
        "ttfb_max_ms": max(ttfbs) * 1e3,
        "crowd_s": crowd_time, "hits_s": hits_time,
        "edge_cpu_crowd_s": cpu1 - cpu0, "edge_cpu_hits_s": cpu2 - cpu1,
        "client_cpu_crowd_s": client1 - client0, "client_cpu_hits_s": client2 - client1,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--size", default="10m")
    parser.add_argument("--origin-rate", type=float, default=200e6,
                        help="bytes/s the origin sends one body at (0 = no cap)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each a new cold URL")
    args = parser.parse_args()
    size = parse_size(args.size)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    work = Path(tempfile.mkdtemp(prefix="bench-crowd-"))
    origin = start_origin("aiohttp", work, [size], rate=args.origin_rate)
    edge = None
    rounds = []
    try:
        edge = start_edge(origin.url, work)
        print(f"# {args.clients} clients, {size} bytes, origin at {args.origin_rate / 1e6:g} MB/s"
              f" per body; edge one process; work dir {work}", flush=True)
        for r in range(args.repeat):
            got = asyncio.run(crowd_round(edge.url, origin.url, size, args.clients,
                                          f"{time.time_ns()}", edge.proc.cpu_seconds))
            rounds.append(got)
            print(f"round {r + 1}: origin GETs {got['origin_gets']}, exact bytes "
                  f"{got['exact']}/{args.clients} (as hits {got['hits_exact']}, hit answers "
                  f"{got['hit_answers']}); TTFB lone (median of {LONE_SAMPLES}) "
                  f"{got['lone_ttfb_ms']:.1f} ms (total "
                  f"{got['lone_total_ms']:.1f} ms), crowd p50 {got['ttfb_p50_ms']:.1f} p99 "
                  f"{got['ttfb_p99_ms']:.1f} max {got['ttfb_max_ms']:.1f} ms; crowd done in "
                  f"{got['crowd_s']:.2f} s vs as hits {got['hits_s']:.2f} s "
                  f"({got['crowd_s'] / got['hits_s']:.2f}x); CPU s edge/client: crowd "
                  f"{got['edge_cpu_crowd_s']:.1f}/{got['client_cpu_crowd_s']:.1f}, hits "
                  f"{got['edge_cpu_hits_s']:.1f}/{got['client_cpu_hits_s']:.1f}", flush=True)
            edge.proc.check_alive()
    finally:
        if edge:
            edge.stop()
        origin.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"\nmedian of {len(rounds)}: origin GETs {med['origin_gets']:g} (goal 1); exact "
          f"{med['exact']:g}/{args.clients}; waiter TTFB p50 {med['ttfb_p50_ms']:.1f} ms = "
          f"{med['ttfb_p50_ms'] / med['lone_ttfb_ms']:.1f}x lone ({med['lone_ttfb_ms']:.1f} ms),"
          f" p99 {med['ttfb_p99_ms']:.1f} ms = {med['ttfb_p99_ms'] / med['lone_ttfb_ms']:.1f}x "
          f"(goal <= 1.5x); crowd {med['crowd_s']:.2f} s vs hits {med['hits_s']:.2f} s = "
          f"{med['crowd_s'] / med['hits_s']:.2f}x (goal <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
