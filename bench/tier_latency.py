"""What each cache tier adds to a miss: p50 of a direct origin GET vs the same GET through
edge → origin and edge → shield → origin, and time to first byte against body size.

    python bench/tier_latency.py [--requests 400] [--rounds 3] [--size 1k]
                                 [--ttfb-sizes 1k,1m,10m] [--ttfb-requests 20]

Starts the bench origin (``origins.py``: nginx when installed), one shield in front of it,
one edge straight to the origin and one edge to the shield (edge → shield requests signed with
an edge secret, as deployed), each a ``cdn`` child process. A single keep-alive client
(``http.client`` in this process) then GETs a new URL each time, so every tier misses,
interleaving the three paths request by request (noise from other work on the machine hits
them alike). Per path: p50/p90 of the whole exchange (request sent → last body byte) and of
the time to first byte (status line parsed); "added" is the difference of p50s between a
path and the one with one tier fewer, the issue's "≤ 1 ms at p50 per tier".

Streaming: for each path and ``--ttfb-sizes`` size, new URLs; if bodies stream, the time to
first byte stays flat while the total grows with the size.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge_vs_peers import label, parse_size  # noqa: E402
from bench.origins import start_origin  # noqa: E402
from bench.procs import Proc, cdn_role  # noqa: E402
from cdn.processes import free_port  # noqa: E402

SECRET = "bench-edge-secret"
CACHE = str(256 * 1024 * 1024)


def start(name: str, role: str, args: list[str], work: Path) -> tuple[Proc, int]:
    port = free_port()
    proc = cdn_role(name, role, ["--host", "127.0.0.1", "--port", str(port),
                                 "--cache-max-bytes", CACHE, "--log-level", "WARNING", *args],
                    work).start()
    proc.ready(f"http://127.0.0.1:{port}/_health")
    return proc, port


class Client:
    """One keep-alive connection; times one GET (whole exchange, and to the head)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str, size: int) -> tuple[float, float]:
        start = time.perf_counter()
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        first = time.perf_counter()
        body = resp.read()
        end = time.perf_counter()
        if resp.status != 200 or len(body) != size:
            raise RuntimeError(f"{path}: {resp.status}, {len(body)} bytes")
        return end - start, first - start

    def close(self) -> None:
        self.conn.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="1k")
    parser.add_argument("--ttfb-sizes", default="1k,1m,10m")
    parser.add_argument("--ttfb-requests", type=int, default=20)
    parser.add_argument("--origin", choices=("nginx", "aiohttp"), default="nginx")
    args = parser.parse_args()
    size = parse_size(args.size)
    ttfb_sizes = [parse_size(s) for s in args.ttfb_sizes.split(",") if s]
    work = Path(tempfile.mkdtemp(prefix="bench-tier-latency-"))
    procs: list[Proc] = []
    origin = start_origin(args.origin, work, sorted({size, *ttfb_sizes}))
    try:
        shield, shield_port = start("shield", "shield", [
            "--origin", origin.url, "--edge-secret", SECRET], work)
        procs.append(shield)
        edge_direct, direct_port = start("edge-direct", "edge", [
            "--upstream", origin.url, "--region", "direct"], work)
        procs.append(edge_direct)
        edge_shield, shielded_port = start("edge-shield", "edge", [
            "--shields", f"shield-1=http://127.0.0.1:{shield_port}",
            "--edge-secret", SECRET, "--region", "shielded"], work)
        procs.append(edge_shield)
        paths = {"origin": origin.port, "edge → origin": direct_port,
                 "edge → shield → origin": shielded_port}
        clients = {name: Client(port) for name, port in paths.items()}
        for name, client in clients.items():  # connections open, code paths warm
            for i in range(50):
                client.get(f"/{size}/warm-{name[:4]}-{i}", size)
        totals: dict[str, list[float]] = {name: [] for name in paths}
        firsts: dict[str, list[float]] = {name: [] for name in paths}
        medians: dict[str, list[float]] = {name: [] for name in paths}
        tag = time.time_ns()
        print(f"# misses of {label(size)}, {args.requests} per path and round, "
              f"{args.rounds} rounds, one keep-alive client, paths interleaved", flush=True)
        for rnd in range(args.rounds):
            round_totals: dict[str, list[float]] = {name: [] for name in paths}
            for i in range(args.requests):
                for k, (name, client) in enumerate(clients.items()):
                    total, first = client.get(f"/{size}/lat-{tag}-{rnd}-{i}-{k}", size)
                    round_totals[name].append(total)
                    totals[name].append(total)
                    firsts[name].append(first)
            print(f"round {rnd + 1}: " + ", ".join(
                f"{name} p50 {statistics.median(v) * 1e3:.3f} ms"
                for name, v in round_totals.items()), flush=True)
            for name, v in round_totals.items():
                medians[name].append(statistics.median(v))
        print(f"\n{'path':<24} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'TTFB p50':>9} "
              f"{'added p50':>10} {'round p50s (ms)'}")
        previous = None
        for name in paths:
            v = totals[name]
            p50 = statistics.median(v)
            added = "" if previous is None else f"{(p50 - previous) * 1e3:+.3f}"
            print(f"{name:<24} {p50 * 1e3:8.3f} {pct(v, 0.9) * 1e3:8.3f} "
                  f"{pct(v, 0.99) * 1e3:8.3f} {statistics.median(firsts[name]) * 1e3:9.3f} "
                  f"{added:>10} {' '.join(f'{m * 1e3:.3f}' for m in medians[name])}")
            previous = p50
        print("\n# streaming (new URLs): time to first byte vs total, p50 ms")
        ttfb: dict[tuple[str, int], float] = {}
        for name, client in clients.items():
            for body_size in ttfb_sizes:
                got = [client.get(f"/{body_size}/ttfb-{tag}-{name[:4]}-{i}", body_size)
                       for i in range(args.ttfb_requests)]
                ttfb[name, body_size] = statistics.median(g[1] for g in got)
                print(f"{name:<24} {label(body_size):>8}: TTFB "
                      f"{ttfb[name, body_size] * 1e3:7.3f}, total "
                      f"{statistics.median(g[0] for g in got) * 1e3:8.3f}", flush=True)
        # what each tier adds to the TTFB, per size: flat if the tier streams (the origin's
        # own TTFB may grow with the size; that is not the tier's)
        names = list(clients)
        print("\n# TTFB added by each tier over the path with one tier fewer, p50 ms")
        for lower, upper in zip(names, names[1:], strict=False):
            print(f"{upper:<24} " + "  ".join(
                f"{label(size)}: {(ttfb[upper, size] - ttfb[lower, size]) * 1e3:+.3f}"
                for size in ttfb_sizes))
        for client in clients.values():
            client.close()
    finally:
        for proc in reversed(procs):
            proc.stop()
        origin.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
