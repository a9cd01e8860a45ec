"""How the memory tier's costs grow: lookup, eviction and purge by tag at 10 k and 1 M cached
objects, plus resident memory per cached byte and a full GC pass at that size.

    python bench/cache_scaling.py [--counts 10000,1000000] [--body 1024]

Uses ``httpcache.store.MemoryStore`` directly (``put``, ``get``, ``purge_tag``, ``len``,
``current_bytes``), so it measures the store and nothing around it. Every object has its own
body and one tag shared with 9 others (``g{i // 10}``), so a tag purge removes 10 keys at
any cache size; a 1,000-key tag is measured too. The store's API is being reworked: the script
prints the commit of ``httpcache/store.py`` it ran against.

Each object's field names and values are new strings parsed from its own head, as an upstream
response's are, and its timestamps its own floats (constants shared by every object would
hide their cost). "Bytes cached" is
what the objects weigh on the wire: body plus field lines (``name: value\r\n``); the RSS
overhead is printed against that and against the bodies alone.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from httpcache.headers import Fields  # noqa: E402
from httpcache.messages import StoredResponse  # noqa: E402
from httpcache.store import MemoryStore  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
HEADERS = (("content-type", "application/octet-stream"), ("cache-control", "public, max-age=3600"),
           ("etag", '"5d41402abc4b2a76b9719d911017c592"'),
           ("last-modified", "Sat, 21 Nov 2026 08:00:00 GMT"),
           ("date", "Sat, 21 Nov 2026 09:00:00 GMT"))


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def response(i: int, body_size: int, now: float) -> StoredResponse:
    body = (i.to_bytes(8, "little") * (body_size // 8 + 1))[:body_size]  # a new object each
    head = b"\r\n".join(b"%s: %s" % (n.encode(), v.encode()) for n, v in (
        *HEADERS, ("content-length", str(body_size)), ("surrogate-key", f"g{i // 10}")))
    lines = head.decode("latin-1").split("\r\n")
    headers = Fields((name, value) for name, _, value in (x.partition(": ") for x in lines))
    return StoredResponse(cache_key=f"/bucket/object-{i:08d}", status=200, headers=headers,
                          body=body, request_time=now + i * 1e-6,  # each its own, as real
                          response_time=now + i * 1e-6 + 0.01,
                          surrogate_keys=frozenset({f"g{i // 10}", f"k{i // 1000}"}))


def per_op(seconds: float, ops: int) -> str:
    return f"{seconds / ops * 1e9:8.0f} ns"


def run(count: int, body_size: int, ops: int) -> None:
    gc.collect()
    now = time.time()
    base_rss = rss()
    probe = response(count - 1, body_size, now)  # the largest (longest tag names)
    store = MemoryStore(probe.byte_size() * count + 1, max_object_bytes=probe.byte_size() * 2)
    start = time.perf_counter()
    field_bytes = 0
    for i in range(count):
        stored = response(i, body_size, now)
        field_bytes += stored.headers.byte_size()
        store.put(stored)
    fill = time.perf_counter() - start
    del stored
    assert len(store) == count and store.evictions == 0, (len(store), store.evictions)
    grown = rss() - base_rss
    body_bytes = count * body_size
    cached = body_bytes + field_bytes
    accounted = store.current_bytes

    keys = [f"/bucket/object-{random.randrange(count):08d}" for _ in range(ops)]
    start = time.perf_counter()
    for key in keys:
        store.get(key)
    lookup = time.perf_counter() - start
    start = time.perf_counter()
    for key in keys:
        store.get(key + "-absent")
    lookup_miss = time.perf_counter() - start
    hot = [keys[i % 16] for i in range(len(keys))]  # a hot set: read again and again
    start = time.perf_counter()
    for key in hot:
        store.get(key)
    lookup_hot = time.perf_counter() - start

    fresh = [response(count + i, body_size, now) for i in range(ops)]
    start = time.perf_counter()
    for stored in fresh:
        store.put(stored)  # the store is full: each put evicts the least recently used
    evicting = time.perf_counter() - start
    evicted = store.evictions
    del fresh

    passes = []
    for _ in range(3):  # what one full pass costs, even with gc "off"
        gc_start = time.perf_counter()
        gc.collect()
        passes.append(time.perf_counter() - gc_start)
    gc_full = statistics.median(passes)

    # tags of objects certainly present: the ones just put (lookups above reordered the rest)
    big_tag = f"k{(count + ops // 2) // 1000}"
    start = time.perf_counter()
    big_removed = store.purge_tag(big_tag).removed
    purge_big = time.perf_counter() - start
    first_tag = count // 10 + 1
    tags = [f"g{t}" for t in range(first_tag, first_tag + min(1000, ops // 10 - 1))]
    start = time.perf_counter()
    removed = sum(store.purge_tag(tag).removed for tag in tags)
    purge10 = time.perf_counter() - start

    print(f"{count:>9} objects of {body_size} B (store {accounted / 1e6:.0f} MB "
          f"accounted, gc {'on' if gc.isenabled() else 'off'}):")
    print(f"    insert (no eviction) {per_op(fill, count)}/put   lookup hit "
          f"{per_op(lookup, ops)}/get   lookup miss {per_op(lookup_miss, ops)}/get   "
          f"hot (16 keys) {per_op(lookup_hot, ops)}/get")
    print(f"    put with eviction    {per_op(evicting, ops)}/put ({evicted} evicted)")
    print(f"    purge_tag, 10 keys   {purge10 / len(tags) * 1e6:8.1f} us/tag "
          f"({removed} keys removed by {len(tags)} tags, "
          f"{purge10 / max(1, removed) * 1e9:.0f} ns/key)")
    print(f"    purge_tag, {big_removed} keys {purge_big * 1e3:8.2f} ms "
          f"({purge_big / max(1, big_removed) * 1e9:.0f} ns/key)")
    print(f"    RSS grew {grown / 1e6:.0f} MB, {grown / count:.0f} B per object, for "
          f"{cached / 1e6:.0f} MB cached ({body_bytes / 1e6:.0f} MB bodies + "
          f"{field_bytes / 1e6:.0f} MB field lines): overhead {grown / cached - 1:+.0%} over "
          f"bytes cached ({(grown - cached) / count:.0f} B per object), "
          f"{grown / body_bytes - 1:+.0%} over body bytes")
    print(f"    gc.collect() with the store alive: {gc_full * 1e3:.0f} ms median of 3 "
          f"({len(gc.get_objects()) / 1e6:.1f} M tracked objects)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="10000,1000000")
    parser.add_argument("--body", type=int, default=1024, help="body bytes per object")
    parser.add_argument("--gc", choices=("on", "off"), default="on",
                        help="off: gc.disable() while measuring (shows the collector's share)")
    parser.add_argument("--ops", type=int, default=100_000, help="lookups / evicting puts")
    args = parser.parse_args()
    snapshot = ROOT / ".bench-commit"  # written by bench/snapshot.sh
    commit = snapshot.read_text().strip() if snapshot.exists() else subprocess.run(
        ["git", "log", "-1", "--format=%h %cs", "--", "httpcache/store.py"],
        cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    print(f"# httpcache/store.py at {commit or 'unknown (not a git checkout)'}; "
          f"python {sys.version.split()[0]}")
    random.seed(1)
    if args.gc == "off":
        gc.disable()
    for count in (int(c) for c in args.counts.split(",")):
        run(count, args.body, min(args.ops, count // 2))
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
