"""How fast a hot object is a cache hit again after it is purged, through edge → shield → origin.

    python bench/purge_recovery.py [--clients 16] [--rounds 3] [--seconds 4] [--size 1k]

Starts Redis (``CDN_REDIS_URL``, or an embedded one), the bench origin (``origins.py``), one
shield and one edge (``cdn`` child processes, edge → shield signed as deployed), both
subscribed to one purge channel. Each round, ``--clients`` keep-alive connections GET one hot
URL in a loop for ``--seconds``; a quarter of the way in, a URL purge of it is published on
Redis (as the control plane does). Per round, over the ``--window`` seconds after the purge:

* answers that were not edge hits (each waited on an upstream exchange, collapsed or not),
* the edge's upstream requests (``cdn_upstream_requests_total``, from its ``/_metrics``),
* p50/p99 latency of the answers, next to the same before the purge.

Before the ``CDN-Purge-Seq`` exchange (``httpcache.purge_watermark``), an edge stored every
refetch made within 2 s of a purge as invalid, so the whole 2 s went upstream. To compare with
a commit that predates this script, copy it into that commit's snapshot and run it there:

    snap=$(bench/snapshot.sh 3226401) && cp bench/purge_recovery.py "$snap/bench/" \\
        && .venv/bin/python "$snap/bench/purge_recovery.py"

Load stays on 127.0.0.1 and every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge_vs_peers import label, parse_size  # noqa: E402
from bench.origins import start_origin  # noqa: E402
from bench.procs import Proc, cdn_role  # noqa: E402
from cdn.embedded import EmbeddedRedis  # noqa: E402
from cdn.processes import free_port  # noqa: E402

SECRET = "bench-edge-secret"
CHANNEL = "cdn:purge:bench"


@dataclass
class Answer:
    done: float  # perf_counter when the body was read
    latency: float  # seconds from request written to body read
    hit: bool  # the edge's own Cache-Status member says hit


@dataclass
class Round:
    before: list[Answer] = field(default_factory=list)
    after: list[Answer] = field(default_factory=list)
    upstream: float = 0.0


def start(name: str, role: str, args: list[str], work: Path) -> tuple[Proc, int]:
    port = free_port()
    proc = cdn_role(name, role, ["--host", "127.0.0.1", "--port", str(port),
                                 "--log-level", "WARNING", *args], work).start()
    proc.ready(f"http://127.0.0.1:{port}/_health")
    return proc, port


def upstream_requests(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/_metrics", timeout=10).read()
    return sum(float(m.group(1)) for m in re.finditer(
        rb"^cdn_upstream_requests_total\{[^}]*\} ([0-9.e+]+)$", text, re.MULTILINE))


async def client(port: int, path: str, until: float, answers: list[Answer]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    try:
        while time.perf_counter() < until:
            sent = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            assert found is not None, head
            await reader.readexactly(int(found.group(1)))
            status = re.search(rb"(?i)\r\ncache-status: *([^\r]*)", head)
            ours = status.group(1).rsplit(b",", 1)[-1] if status else b""
            done = time.perf_counter()
            answers.append(Answer(done, done - sent, b"; hit" in ours))
    finally:
        writer.close()


async def one_round(args: argparse.Namespace, edge_port: int, redis_url: str, path: str,
                    seq: int) -> Round:
    import redis.asyncio as aioredis

    answers: list[Answer] = []
    begin = time.perf_counter()
    until = begin + args.seconds
    load = [asyncio.create_task(client(edge_port, path, until, answers))
            for _ in range(args.clients)]
    await asyncio.sleep(args.seconds / 4)
    before_upstream = await asyncio.to_thread(upstream_requests, edge_port)
    redis = aioredis.from_url(redis_url)
    purged_at = time.perf_counter()
    receivers = await redis.publish(CHANNEL, json.dumps({"seq": seq, "urls": [path]}))
    await redis.aclose()
    if receivers != 2:
        raise SystemExit(f"purge reached {receivers} subscribers, expected 2 (edge, shield)")
    await asyncio.sleep(max(0.0, purged_at + args.window - time.perf_counter()))
    after_upstream = await asyncio.to_thread(upstream_requests, edge_port)
    await asyncio.gather(*load)
    result = Round(upstream=after_upstream - before_upstream)
    for answer in answers:
        if begin + 0.2 < answer.done < purged_at:  # past the first (cold) answers
            result.before.append(answer)
        elif purged_at <= answer.done < purged_at + args.window:
            result.after.append(answer)
    return result


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1e3 if values else float("nan")


async def main_async(args: argparse.Namespace, edge_port: int, redis_url: str) -> None:
    size = parse_size(args.size)
    rounds = []
    for i in range(args.rounds):
        path = f"/{size}/purge-recovery-{os.getpid()}-{i}"
        rounds.append(await one_round(args, edge_port, redis_url, path, seq=i + 1))
        r = rounds[-1]
        misses = sum(not a.hit for a in r.after)
        print(f"round {i + 1}: {args.window:.1f} s after the purge: {len(r.after)} answers, "
              f"{misses} not edge hits, {r.upstream:.0f} edge upstream requests; "
              f"p50/p99 {pct([a.latency for a in r.after], .5):.2f}/"
              f"{pct([a.latency for a in r.after], .99):.2f} ms (before the purge "
              f"{pct([a.latency for a in r.before], .5):.2f}/"
              f"{pct([a.latency for a in r.before], .99):.2f} ms)", flush=True)
    med = statistics.median

    def latency(which: str, q: float) -> float:
        return med(pct([a.latency for a in getattr(r, which)], q) for r in rounds)

    not_hits = med(sum(not a.hit for a in r.after) for r in rounds)
    print(f"\n{label(size)}, {args.clients} clients, medians of {args.rounds} rounds, "
          f"{args.window:.1f} s after a purge:")
    print(f"  answers that were not edge hits  {not_hits:.0f} of "
          f"{med(len(r.after) for r in rounds):.0f}")
    print(f"  edge upstream requests           {med(r.upstream for r in rounds):.0f}")
    print(f"  p50 / p99 ms after the purge     {latency('after', .5):.2f} / "
          f"{latency('after', .99):.2f}")
    print(f"  p50 / p99 ms before the purge    {latency('before', .5):.2f} / "
          f"{latency('before', .99):.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="load per round")
    parser.add_argument("--window", type=float, default=2.5,
                        help="seconds after the purge that are counted")
    parser.add_argument("--size", default="1k")
    parser.add_argument("--origin", default="nginx", choices=("nginx", "aiohttp"))
    args = parser.parse_args()
    if not 0 < args.window <= args.seconds * 3 / 4:
        parser.error("--window must fit in the load after the purge (3/4 of --seconds)")
    commit = Path(__file__).resolve().parent.parent / ".bench-commit"
    print(f"# code: {commit.read_text().strip() if commit.exists() else 'working tree'}")
    with tempfile.TemporaryDirectory(prefix="purge-recovery-") as tmp:
        work = Path(tmp)
        redis_url = os.environ.get("CDN_REDIS_URL", "")
        redis = None
        if not redis_url:
            redis = EmbeddedRedis(work / "redis", free_port())
            redis_url = redis.start()
        started: list[Proc] = []
        try:
            origin = start_origin(args.origin, work, [parse_size(args.size)])
            started.append(origin.proc)
            purge = ["--redis-url", redis_url, "--purge-channel", CHANNEL,
                     "--edge-secret", SECRET]
            shield, shield_port = start("shield", "shield", [
                "--origin", origin.url, *purge], work)
            started.append(shield)
            edge, edge_port = start("edge", "edge", [
                "--shields", f"shield-1=http://127.0.0.1:{shield_port}", *purge], work)
            started.append(edge)
            time.sleep(0.5)  # both subscribed to the purge channel
            asyncio.run(main_async(args, edge_port, redis_url))
        finally:
            for proc in reversed(started):
                proc.stop()
            if redis is not None:
                redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
