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
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge_vs_peers import parse_size  # noqa: E402
from bench.origins import start_origin  # noqa: E402
from cdn.processes import free_port  # noqa: E402

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
    from aiohttp import web

    from cdn.roles import tune_gc, tune_malloc
    from edge.config import EdgeConfig
    from edge.server import build_app
    from httpcache.app import ENGINE
    from httpcache.fast_server import HitServer, app_handler_factory, proxied_elsewhere
    from httpcache.hit_path import HitPath

    size = parse_size(args.size)
    tune_malloc()
    config = EdgeConfig(host="127.0.0.1", port=free_port(), upstream=origin_url,
                        region="bench", cache_max_bytes=256 * 1024 * 1024)
    app = build_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    hits = HitServer(HitPath(app[ENGINE]), app_handler_factory(runner),
                     app_paths=proxied_elsewhere(app))
    listener = await loop.create_server(hits, config.host, config.port)
    base = f"http://{config.host}:{config.port}"

    def fill() -> None:
        for k in range(1, URLS + 1):
            for _ in range(2):
                with urllib.request.urlopen(f"{base}/{size}/hit-{k}", timeout=30) as resp:
                    resp.read()
                    status = resp.headers.get("Cache-Status", "")
            if "hit" not in status:
                raise RuntimeError(f"/{size}/hit-{k} is not a hit: {status!r}")

    try:
        await loop.run_in_executor(None, fill)
        extra = "".join(f"{h}\r\n" for h in args.header)
        requests = [(f"GET /{size}/hit-{k} HTTP/1.1\r\nHost: {config.host}:{config.port}\r\n"
                     f"{extra}\r\n").encode() for k in range(1, URLS + 1)]
        tune_gc()
        sink = SinkTransport()
        proto = hits()
        proto.connection_made(sink)  # type: ignore[arg-type]
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
        expected = args.requests * args.repeat
        if sink.written < expected * size:
            raise RuntimeError(f"only {sink.written} bytes written for {expected} hits")
        print(f"hits {size} B: {statistics.median(per_hit):.2f} µs/hit median "
              f"(runs: {', '.join(f'{x:.2f}' for x in per_hit)}), "
              f"{sink.written / expected:.0f} B written per hit", flush=True)
        if profiler is not None:
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text)
            stats.sort_stats("tottime").print_stats(args.top)
            print(text.getvalue())
        proto.connection_lost(None)
    finally:
        listener.close()
        await runner.cleanup()


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
    import uvloop

    work = Path(tempfile.mkdtemp(prefix="bench-hit-micro-"))
    origin = start_origin(args.origin, work, [parse_size(args.size)])
    try:
        uvloop.run(run(args, origin.url))
    finally:
        origin.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
