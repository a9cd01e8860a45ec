"""Our edge against nginx proxy_cache and Varnish over the same origin: hits and misses.

    python bench/edge_vs_peers.py                # 1 KiB, 100 KiB, 1 MiB; warm-up + 3 runs each
    python bench/edge_vs_peers.py --quick        # 1 short run each
    python bench/edge_vs_peers.py --sizes 1k,1m --modes hits --json out.json

For every object size and mode, each server gets a warm-up run and then ``--runs`` wrk runs
(64 connections, 2 threads, ``--seconds`` long), interleaved server by server so drift on a
shared machine hits all alike; the table shows medians. HITS cycle over a small pre-warmed URL
set (each URL checked to be a hit first); MISSES ask for a URL nobody asked before on every
request (``lua/misses.lua``). Server CPU is utime+stime of the server's process tree read from
``/proc`` around each run, divided by the requests wrk completed.

PACED-HITS and PACED-MISSES are the hits and the misses again, but sent on a fixed schedule
(``lua/paced.lua``) at the same rate to every server: ``--paced-load`` (0.6) times the slowest
server's median rate of this run in that mode at that size, or ``--paced-rps``. Hits and
misses run each server flat out, and then the p99 wrk records depends on where the closed
loop's queue forms, in the server or in wrk's own threads on the same two cores; at one
offered load the latencies compare the servers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import WrkResult, median, run_wrk, spread  # noqa: E402
from bench.origins import start_origin  # noqa: E402
from bench.peers import (  # noqa: E402
    MemoryGuard,
    Server,
    start_edge,
    start_nginx,
    start_varnish,
)
from bench.static_origin import body  # noqa: E402

UNITS = {"k": 1024, "m": 1024 * 1024, "": 1}


def parse_size(text: str) -> int:
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = text[-1] if text[-1] in "km" else ""
    return int(float(text[:-1] if unit else text) * UNITS[unit])


def label(size: int) -> str:
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


def check_body(server: Server, path: str, size: int) -> None:
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as resp:
            got = resp.read()
    except OSError as exc:
        raise RuntimeError(f"{server.name}: GET {path} failed: {exc}") from None
    if got != body(size):
        raise RuntimeError(f"{server.name}: wrong body for {path} ({len(got)} bytes)")


def prewarm(server: Server, size: int, urls: int) -> None:
    # Each request is a new connection, which SO_REUSEPORT may hand to any worker, and each
    # worker has its own memory tier: ask until the URL has answered as a hit 4 times in a row.
    cold = []
    for k in range(1, urls + 1):
        check_body(server, f"/{size}/hit-{k}", size)
        streak = 0
        for _ in range(40):
            streak = streak + 1 if server.is_hit(f"/{size}/hit-{k}") else 0
            if streak == 4:
                break
        else:
            cold.append(k)
    if cold:
        raise RuntimeError(f"{server.name}: /{size}/hit-{cold[0]} is not a hit after warming")


def measure(server: Server, mode: str, size: int, tag: str, seconds: float,
            args: argparse.Namespace, rate: float = 0.0) -> tuple[WrkResult, float]:
    if mode == "paced-hits":
        script, extra = "paced.lua", ["hits", str(size), str(args.hit_urls),
                                      f"{rate / args.threads:.3f}"]
    elif mode == "paced-misses":
        script, extra = "paced.lua", ["misses", str(size), tag, f"{rate / args.threads:.3f}"]
    elif mode == "hits":
        script, extra = "hits.lua", [str(size), str(args.hit_urls)]
    else:
        script, extra = "misses.lua", [str(size), tag]
    cpu0 = server.proc.cpu_seconds()
    try:
        result = run_wrk(server.url, script, extra, seconds=seconds,
                         connections=args.connections, threads=args.threads)
    except RuntimeError:
        server.check()  # stopped by the memory guard: say that, not what wrk saw
        raise
    cpu = server.proc.cpu_seconds() - cpu0
    server.check()
    server.proc.check_alive()
    return result, cpu / max(1, result.requests) * 1e6


def left_out(failed: dict[str, str], server: Server, where: str, exc: Exception) -> None:
    """A server that failed (wrk could not run against it, or it died) is measured no more:
    the run goes on with the others, and its log is kept."""
    failed[server.name] = f"{where}: {exc}"
    server.stop()  # it may be what is wrong with the machine (memory)
    print(f"# {server.name} FAILED at {failed[server.name]}; stopped, and left out of the rest "
          f"of this run; its log: {server.proc.log_path}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1k,100k,1m", help="e.g. 1k,100k,1m")
    parser.add_argument("--modes", default="hits,misses,paced-hits,paced-misses")
    parser.add_argument("--paced-load", type=float, default=0.6,
                        help="paced rate: this fraction of the slowest server's req/s "
                             "flat out (hits or misses, same size, same run)")
    parser.add_argument("--paced-rps", type=float,
                        help="paced rate in req/s for every paced mode and size "
                             "(instead of --paced-load)")
    parser.add_argument("--servers", default="edge,nginx,varnish")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hit-urls", type=int, default=16)
    parser.add_argument("--origin", choices=("nginx", "aiohttp"), default="nginx")
    parser.add_argument("--nginx-sendfile", choices=("auto", "on", "off", "both"),
                        default="auto", help="auto: off below 1 MiB, on from 1 MiB")
    parser.add_argument("--edge-workers", type=int, default=2,
                        help="our edge's reuse_port workers (nginx runs 2)")
    parser.add_argument("--quick", action="store_true", help="1 run of 4 s, 1 s warm-up")
    parser.add_argument("--json", help="also write every run's figures here")
    parser.add_argument("--report", nargs="+", metavar="JSON",
                        help="measure nothing: print the table of runs saved with --json "
                             "(several files: medians over all their runs)")
    args = parser.parse_args()
    if args.report:
        saved = [{**r, "batch": i} for i, f in enumerate(args.report)
                 for r in json.loads(Path(f).read_text())]
        print_table(saved, sorted({r["size"] for r in saved}),
                    list(dict.fromkeys(r["mode"] for r in saved)))
        return 0
    if args.quick:
        args.runs, args.seconds, args.warmup = 1, 4.0, 1.0
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    # a paced mode takes its rate from the flat-out runs of the same size: after them
    modes = sorted(args.modes.split(","), key=lambda m: m.startswith("paced"))
    wanted = args.servers.split(",")

    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    print(f"# work dir {work}; {args.runs} run(s) x {args.seconds:g}s, warm-up "
          f"{args.warmup:g}s, wrk -t{args.threads} -c{args.connections}", flush=True)
    origin = start_origin(args.origin, work, sizes)
    print(f"# origin: {args.origin} at {origin.url}", flush=True)
    started: list[Server] = []
    records: list[dict[str, object]] = []
    failed: dict[str, str] = {}  # server -> why it was dropped from the remaining cells
    try:
        if "edge" in wanted:
            started.append(start_edge(origin.url, work, workers=args.edge_workers))
            print(f"# edge: {args.edge_workers} reuse_port worker(s), no shields, uvloop",
                  flush=True)
        nginx: dict[bool, Server] = {}
        if "nginx" in wanted:
            modes_sf = {"on": [True], "off": [False]}.get(args.nginx_sendfile, [False, True])
            if args.nginx_sendfile == "auto":
                modes_sf = sorted({s >= 1024 * 1024 for s in sizes})
            for sf in modes_sf:
                server = start_nginx(origin.port, work, sendfile=sf)
                if server:
                    nginx[sf] = server
                    started.append(server)
        if "varnish" in wanted:
            varnish = start_varnish(origin.port, work)
            if varnish:
                started.append(varnish)
        MemoryGuard(started).start()
        for size in sizes:
            servers = [s for s in started if not s.name.startswith("nginx")
                       and s.name not in failed]
            if args.nginx_sendfile == "auto":
                pick = nginx.get(size >= 1024 * 1024)
                servers[1:1] = [pick] if pick and pick.name not in failed else []
            else:
                servers[1:1] = [s for s in nginx.values() if s.name not in failed]
            for mode in modes:
                rate = 0.0
                paced = mode.startswith("paced-")
                if paced:
                    base = mode.removeprefix("paced-")
                    rate = args.paced_rps or paced_rate(records, base, size, args.paced_load)
                    if not rate:
                        print(f"# {mode}: needs {base} in --modes or --paced-rps; skipped",
                              flush=True)
                        continue
                    print(f"# {mode} {label(size)}: {rate:.0f} req/s to every server",
                          flush=True)
                stamp = time.time_ns()
                for server in servers:
                    try:
                        if mode in ("hits", "paced-hits"):
                            prewarm(server, size, args.hit_urls)
                        else:
                            check_body(server, f"/{size}/check-{time.time_ns()}", size)
                        measure(server, mode, size, f"w{stamp}", args.warmup, args, rate)
                    except (RuntimeError, OSError) as exc:  # wrk failed, or the server died
                        left_out(failed, server, f"{mode} {label(size)} warm-up", exc)
                for run in range(args.runs):
                    for server in servers:
                        if server.name in failed:
                            continue
                        try:
                            result, cpu_us = measure(server, mode, size, f"r{run}x{stamp}",
                                                     args.seconds, args, rate)
                        except RuntimeError as exc:
                            left_out(failed, server, f"{mode} {label(size)} run {run + 1}",
                                     exc)
                            continue
                        records.append({"mode": mode, "size": size, "server": server.name,
                                        "run": run, "rps": result.rps, "p50_ms": result.p50_ms,
                                        "p99_ms": result.p99_ms, "cpu_us": cpu_us,
                                        "requests": result.requests, "errors": result.errors,
                                        **({"offered_rps": rate, "p999_ms": result.p999_ms,
                                            "late": result.late,
                                            "late_max_ms": result.late_max_ms}
                                           if paced else {})})
                        tail = (f" p99.9 {result.p999_ms:7.2f} ms late {result.late}"
                                if paced else "")
                        print(f"  {mode:<12} {label(size):>8} {server.name:<18} run {run + 1}: "
                              f"{result.rps:>9.0f} req/s p50 {result.p50_ms:7.2f} ms p99 "
                              f"{result.p99_ms:7.2f} ms cpu {cpu_us:6.1f} us/req "
                              f"errors {result.errors}{tail}", flush=True)
    finally:
        for server in reversed(started):
            server.stop()
        origin.stop()
        if failed:  # the logs of what failed are the only account of why
            print(f"# kept {work} for the logs of: {', '.join(failed)}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
        if args.json:  # what was measured, even when a failure ends the run early
            Path(args.json).write_text(json.dumps(records, indent=1))
    print_table(records, sizes, modes)
    for name, why in failed.items():
        print(f"# {name} failed at {why}")  # under the table, where the reader looks
    return 1 if failed else 0


def paced_rate(records: list[dict], mode: str, size: int, load: float) -> float:
    """``load`` times the slowest server's median req/s in ``mode`` at ``size`` in this run
    (0: none measured)."""
    rows = [r for r in records if r["mode"] == mode and r["size"] == size]
    names = {r["server"] for r in rows}
    if not names:
        return 0.0
    return load * min(median([r["rps"] for r in rows if r["server"] == n]) for n in names)


def paced_line(rows: list[dict], names: list[str]) -> str:
    """Latency of every server at the one offered rate, and the sends that fell behind."""
    parts = []
    for name in names:
        mine = [r for r in rows if r["server"] == name]
        parts.append(f"{name} p99 {median([r['p99_ms'] for r in mine]):.2f} / p99.9 "
                     f"{median([r['p999_ms'] for r in mine]):.2f} ms, late sends "
                     f"{sum(r['late'] for r in mine)}")
    offered = sorted({round(r["offered_rps"]) for r in rows})  # one per run batch
    rates = "/".join(str(x) for x in offered)
    return f"at {rates} req/s offered: " + "; ".join(parts)


def paired_ratio(rows: list[dict], peer: str | None) -> float:
    """Median over runs of edge req/s ÷ ``peer`` req/s *in the same run* (servers take turns
    within a run, so each pair saw about the same background load); ``None``: the best
    other server of that run."""
    by_run: dict[tuple[int, int], dict[str, float]] = {}
    for r in rows:
        by_run.setdefault((r.get("batch", 0), r["run"]), {})[r["server"]] = r["rps"]
    ratios = []
    for v in by_run.values():
        others = [x for n, x in v.items() if n != "edge" and (peer is None or n == peer)]
        if "edge" in v and others:
            ratios.append(v["edge"] / max(others))
    return median(ratios)


def print_table(records: list[dict], sizes: list[int], modes: list[str]) -> None:
    print()
    print("ratios: median over runs of the per-run ratio (same run, servers took turns)")
    print(f"{'mode':<12} {'size':>8} {'server':<18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'cpu us/req':>10} {'errors':>6} {'req/s spread':>12}")
    for mode in modes:
        for size in sizes:
            rows = [r for r in records if r["mode"] == mode and r["size"] == size]
            names = list(dict.fromkeys(r["server"] for r in rows))
            med: dict[str, dict[str, float]] = {}
            for name in names:
                mine = [r for r in rows if r["server"] == name]
                med[name] = {k: median([r[k] for r in mine])
                             for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
                errors = sum(r["errors"] for r in mine)
                print(f"{mode:<12} {label(size):>8} {name:<18} {med[name]['rps']:>9.0f} "
                      f"{med[name]['p50_ms']:>8.2f} {med[name]['p99_ms']:>8.2f} "
                      f"{med[name]['cpu_us']:>10.1f} {errors:>6} "
                      f"{spread([r['rps'] for r in mine]):>11.0%}")
            if mode.startswith("paced-") and rows:
                print(f"{'':<22} {paced_line(rows, names)}")
                continue
            if "edge" in med:
                peers = [n for n in med if n != "edge"]
                parts = [f"edge/{n} {paired_ratio(rows, n):.2f}x" for n in peers]
                if peers:
                    best = max(peers, key=lambda n: med[n]["rps"])
                    parts.append(f"edge/best-of-run {paired_ratio(rows, None):.2f}x req/s; "
                                 f"p99 {med['edge']['p99_ms']:.2f} ms vs {best}'s "
                                 f"{med[best]['p99_ms']:.2f}")
                print(f"{'':<22} ratio: " + "; ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
