"""``cdn repair``: run the reconstructor (and optionally scrub, GC, compaction) once, now.

    cdn repair [--mark-lost NODE ...] [--scrub] [--gc --grace S] [--compact]

Progress is printed every ``--progress`` seconds (objects and segments repaired, fragments and
bytes rebuilt, MB/s so far). Work is derived from the metadata, so an interrupted
``cdn repair`` simply resumes when run again.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from cdn.locate import find_database_url
from origin.metadata.fragments import set_node_state
from origin.workers.cli_context import ToolError, cluster_context
from origin.workers.compactor import Compactor
from origin.workers.gc import DEFAULT_GRACE, GarbageCollector
from origin.workers.reconstructor import Reconstructor, ReconstructorStats
from origin.workers.scrubber import Scrubber

PROG = "cdn repair"


def progress_line(p: ReconstructorStats, seconds: float) -> str:
    """One line of progress for a pass that has run ``seconds`` so far."""
    rate = p.bytes_written / 1e6 / seconds if seconds > 0 else 0.0
    return (f"repair: {p.objects_repaired}/{p.objects_examined} objects, "
            f"{p.segments_repaired}/{p.segments_examined} segments repaired, "
            f"{p.fragments_rebuilt} fragments rebuilt, {p.bytes_written / 1e6:.1f} MB written "
            f"({p.bytes_read / 1e6:.1f} MB read), {rate:.1f} MB/s, {seconds:.0f} s")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="cdn repair", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="default: $CDN_DATABASE_URL, else the running `cdn up`'s")
    parser.add_argument("--data-dir", default=None, help="data dir of `cdn up` (.cdn-data)")
    parser.add_argument("--mark-lost", action="append", default=[], metavar="NODE",
                        help="declare a node gone for good (its fragments are rebuilt)")
    parser.add_argument("--scrub", action="store_true", help="scrub every node first")
    parser.add_argument("--gc", action="store_true", help="collect garbage afterwards")
    parser.add_argument("--compact", action="store_true", help="compact afterwards")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE,
                        help="GC grace period in seconds (default 72 h)")
    parser.add_argument("--rate", type=float, default=100e6, help="repair bytes/s cap")
    parser.add_argument("--lost-after", type=float, default=3600.0)
    parser.add_argument("--progress", type=float, default=2.0, metavar="S",
                        help="seconds between progress lines (default 2)")
    args = parser.parse_args(list(argv))
    args.database_url = find_database_url(PROG, args.database_url, args.data_dir)

    async def run() -> int:
        async with cluster_context(args.database_url, lost_after=args.lost_after) as ctx:
            for node_id in args.mark_lost:
                if not await set_node_state(ctx.pool, node_id, "lost"):
                    print(f"cdn repair: unknown node {node_id}", file=sys.stderr)
                    return 2
            if args.scrub:
                print(f"scrub: {await Scrubber(ctx, bytes_per_second=0).run_once()}")
            worker = Reconstructor(ctx, bytes_per_second=args.rate)
            task = asyncio.ensure_future(worker.run_once())
            while not task.done():
                await asyncio.wait([task], timeout=max(args.progress, 0.1))
                if not task.done():
                    print(progress_line(worker.progress, worker.elapsed()), flush=True)
            stats = task.result()
            print(progress_line(stats, stats.seconds).replace("repair:", "repair done:", 1)
                  + f", {stats.segments_unrepairable} unrepairable, "
                    f"{stats.segments_deferred} deferred", flush=True)
            if args.gc:
                print(f"gc: {await GarbageCollector(ctx, grace=args.grace).run_once()}")
            if args.compact:
                print(f"compact: {await Compactor(ctx, grace=args.grace).run_once()}")
            return 1 if stats.segments_unrepairable else 0

    try:
        return asyncio.run(run())
    except ToolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
