"""The edge's Python cost per fresh hit, without sockets: bytes in, bytes out, in-process.

    python bench/hit_micro.py [--size 1k] [--requests 200000] [--repeat 5]
                              [--header "Accept: */*"] [--profile]

Starts the bench origin, builds an edge (``edge.server.build_app``, the hit path's
``HitServer`` on a real listening socket), fills 16 URLs through that socket with real GETs
and checks they are hits. Then it hands one ``HitProtocol`` a sink transport that only
counts bytes and feeds it the same requests wrk's ``hits.lua`` sends, one request per
``data_received`` (as without pipelining), ``--requests`` times per repeat. It prints the
median µs per hit over the repeats: the user-space cost of parsing, policy, ``Age``/``Date``,
metrics and serialisation that every hit pays on top of the kernel's socket work (which
``/proc`` shows to be about the same for nginx and for us: see ``bench/README.md``).

The sink transport stands in for the kernel only in this measurement; the real transport is
used by every other bench and by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge_vs_peers import parse_size  # noqa: E402
from bench.inprocess import edge_in_process, profile_tables, with_origin  # noqa: E402

URLS = 16


class SinkTransport:
    """Counts what the protocol writes; nothing else."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, parts: list[bytes]) -> None:
        self.written += sum(len(p) for p in parts)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def run(args: argparse.Namespace, origin_url: str) -> None:
    size = parse_size(args.size)
    async with edge_in_process(origin_url) as edge:
        await asyncio.get_running_loop().run_in_executor(None, fill, edge.url, size)
        extra = "".join(f"{h}\r\n" for h in args.header)
        host = edge.url.removeprefix("http://")
        requests = [(f"GET /{size}/hit-{k} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").encode()
                    for k in range(1, URLS + 1)]
        sink = SinkTransport()
        assert edge.hits is not None
        proto = edge.hits()
        proto.connection_made(sink)
        feed = proto.data_received
        per_hit: list[float] = []
        profiler = cProfile.Profile() if args.profile else None
        for _ in range(args.repeat):
            n = args.requests
            if profiler is not None:
                profiler.enable()
            start = time.process_time()
            for i in range(n):
                feed(requests[i & (URLS - 1)])
            used = time.process_time() - start
            if profiler is not None:
                profiler.disable()
            per_hit.append(used / n * 1e6)
        proto.connection_lost(None)
    expected = args.requests * args.repeat
    if sink.written < expected * size:
        raise RuntimeError(f"only {sink.written} bytes written for {expected} hits")
    print(f"hits {size} B: {statistics.median(per_hit):.2f} µs/hit median "
          f"(runs: {', '.join(f'{x:.2f}' for x in per_hit)}), "
          f"{sink.written / expected:.0f} B written per hit", flush=True)
    if profiler is not None:
        print(profile_tables(profiler, args.top, "tottime"))


def fill(base: str, size: int) -> None:
    """Fetch each hit URL twice through the edge's socket; the second must be a hit."""
    for k in range(1, URLS + 1):
        for _ in range(2):
            with urllib.request.urlopen(f"{base}/{size}/hit-{k}", timeout=30) as resp:
                resp.read()
                status = resp.headers.get("Cache-Status", "")
        if "hit" not in status:
            raise RuntimeError(f"/{size}/hit-{k} is not a hit: {status!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1k")
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--header", action="append", default=[],
                        help="an extra request field line, e.g. 'Accept: */*'")
    parser.add_argument("--origin", choices=("nginx", "aiohttp"), default="nginx")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    return with_origin(args.origin, parse_size(args.size), "bench-hit-micro-",
                       lambda origin_url: run(args, origin_url))

if __name__ == "__main__":
    sys.exit(main())
