"""Hit ratios of the memory tier's eviction policies on synthetic traces.

    python bench/eviction_policies.py [--requests N] [--catalogue N] [--seed N]

Compares LRU (``cachetools.LRUCache``, the memory tier's policy before S3-FIFO) with
S3-FIFO (``httpcache.s3fifo``, promotion from the small queue at 1 and at 2 reads) on:

* ``zipf-s``: independent requests over a catalogue with Zipf popularity (exponent s);
* ``zipf+scan``: the same, with 30% of requests replaced by sequential scans over keys
  never seen before (a crawler, a backup, a cold-catalogue export) in runs of 2,000;
* ``zipf+shift``: popularity ranks reshuffled every 20% of the trace (a changing hot set,
  where a frequency-heavy policy could hold on to yesterday's hits).

Objects all cost one unit so the ratios are object hit ratios; the cache holds 1% and 10% of
the catalogue. Prints one line per (trace, cache size) with each policy's hit ratio.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cachetools import LRUCache  # noqa: E402

from httpcache.s3fifo import S3FIFO  # noqa: E402


def zipf_sampler(n: int, s: float, rng: random.Random) -> Callable[[], int]:
    weights = [1.0 / (rank ** s) for rank in range(1, n + 1)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    return lambda: bisect.bisect_left(cumulative, rng.random() * total)


def zipf_trace(requests: int, catalogue: int, s: float, seed: int) -> list[int]:
    rng = random.Random(seed)
    draw = zipf_sampler(catalogue, s, rng)
    return [draw() for _ in range(requests)]


def scan_trace(requests: int, catalogue: int, s: float, seed: int,
               scan_share: float = 0.3, scan_run: int = 2000) -> list[int]:
    rng = random.Random(seed)
    draw = zipf_sampler(catalogue, s, rng)
    fresh = itertools.count(catalogue)  # keys beyond the catalogue: each seen once
    out: list[int] = []
    while len(out) < requests:
        if rng.random() < scan_share * 1.0 / scan_run * 10:
            out.extend(next(fresh) for _ in range(scan_run))
        else:
            out.extend(draw() for _ in range(10))
    return out[:requests]


def shift_trace(requests: int, catalogue: int, s: float, seed: int,
                phases: int = 5) -> list[int]:
    rng = random.Random(seed)
    draw = zipf_sampler(catalogue, s, rng)
    out: list[int] = []
    per = requests // phases
    for _ in range(phases):
        mapping = list(range(catalogue))
        rng.shuffle(mapping)
        out.extend(mapping[draw()] for _ in range(per))
    return out


def hit_ratio(cache: object, trace: Iterable[int]) -> float:
    get = cache.get  # type: ignore[attr-defined]
    hits = total = 0
    for key in trace:
        total += 1
        if get(key) is not None:
            hits += 1
        else:
            cache[key] = True  # type: ignore[index]
    return hits / total if total else 0.0


def policies(size: int) -> Iterator[tuple[str, object]]:
    yield "lru", LRUCache(size)
    yield "s3fifo", S3FIFO(size, getsizeof=lambda _v: 1)
    yield "s3fifo(promote>=2)", S3FIFO(size, getsizeof=lambda _v: 1, promote_at=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--catalogue", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    traces: list[tuple[str, list[int]]] = []
    for s in (0.8, 1.0):
        traces.append((f"zipf-{s}", zipf_trace(args.requests, args.catalogue, s, args.seed)))
    traces.append(("zipf-0.9+scan", scan_trace(args.requests, args.catalogue, 0.9, args.seed)))
    traces.append(("zipf-0.9+shift", shift_trace(args.requests, args.catalogue, 0.9,
                                                 args.seed)))
    print(f"# {args.requests} requests, catalogue {args.catalogue}, seed {args.seed}")
    print(f"{'trace':<16} {'cache':>6}  " + "  ".join(
        f"{name:>18}" for name, _ in policies(1)))
    for name, trace in traces:
        for share in (0.01, 0.10):
            size = max(1, int(args.catalogue * share))
            started = time.perf_counter()
            ratios = [hit_ratio(cache, trace) for _, cache in policies(size)]
            elapsed = time.perf_counter() - started
            print(f"{name:<16} {share:>6.0%}  " + "  ".join(f"{r:>18.4f}" for r in ratios)
                  + f"   ({elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
