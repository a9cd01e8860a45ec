"""``cdn fsck``: count objects by redundancy (full, degraded, lost) from the fragment map.

A fragment counts as usable when its row points at a node that is up (one probe round) and not
lost, and at that node's current disk: a volume below the ``volume_base`` the node reported
with its disk identity was written to an earlier disk, wiped or replaced
(``metadata/node_disks.py``), and counts as missing from the new disk's first heartbeat on.
Classification and the exit code are pure (``origin.workers.planning``): exit 0 when clean, 1
when more than ``--max-degraded`` objects are degraded, 2 when anything is lost.
``--deep`` additionally runs a scrub pass (every record's checksum, every row's volume) and
counts what it queued.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from cdn.locate import find_database_url
from origin.metadata.fragments import object_redundancy
from origin.workers.base import ClusterContext
from origin.workers.cli_context import ToolError, cluster_context
from origin.workers.planning import Redundancy, classify, fsck_exit_code
from origin.workers.scrubber import Scrubber


@dataclass
class FsckReport:
    counts: dict[Redundancy, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)       # "bucket/key" of lost objects
    degraded: list[str] = field(default_factory=list)
    unusable_nodes: list[str] = field(default_factory=list)
    queued_by_scrub: int = 0

    @property
    def objects(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return {"objects": self.objects,
                **{r.value: self.counts.get(r, 0) for r in Redundancy},
                "unusable_nodes": self.unusable_nodes, "lost_objects": self.lost[:100],
                "degraded_objects": self.degraded[:100],
                "queued_by_scrub": self.queued_by_scrub}


async def fsck(ctx: ClusterContext, *, page: int = 1000, deep: bool = False) -> FsckReport:
    report = FsckReport()
    rows = await ctx.node_rows()
    lost = set(await ctx.lost_nodes())
    report.unusable_nodes = sorted(r.node_id for r in rows
                                   if r.node_id in lost or not ctx.health.is_up(r.node_id))
    if deep:
        report.queued_by_scrub = (await Scrubber(ctx, bytes_per_second=0).run_once()
                                  ).repairs_queued
    counts: Counter[Redundancy] = Counter()
    after: str | None = None
    while True:
        batch = await object_redundancy(ctx.pool, report.unusable_nodes, after, page)
        for obj in batch:
            state = classify(obj.ndata, obj.width, obj.segments, obj.weakest)
            counts[state] += 1
            if state is Redundancy.LOST:
                report.lost.append(f"{obj.bucket}/{obj.key}")
            elif state is Redundancy.DEGRADED:
                report.degraded.append(f"{obj.bucket}/{obj.key}")
        if len(batch) < page:
            break
        after = batch[-1].object_id
    report.counts = dict(counts)
    return report


PROG = "cdn fsck"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="cdn fsck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None,
                        help="default: $CDN_DATABASE_URL, else the running `cdn up`'s")
    parser.add_argument("--data-dir", default=None, help="data dir of `cdn up` (.cdn-data)")
    parser.add_argument("--max-degraded", type=int, default=0,
                        help="degraded objects tolerated before exiting 1 (default 0)")
    parser.add_argument("--lost-after", type=float, default=3600.0,
                        help="seconds of silence after which a node counts as lost")
    parser.add_argument("--deep", action="store_true", help="also scrub every node first")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(list(argv))
    args.database_url = find_database_url(PROG, args.database_url, args.data_dir)

    async def run() -> FsckReport:
        async with cluster_context(args.database_url, lost_after=args.lost_after) as ctx:
            return await fsck(ctx, deep=args.deep)

    try:
        report = asyncio.run(run())
    except ToolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"objects: {report.objects}  " + "  ".join(
            f"{r.value}: {report.counts.get(r, 0)}" for r in Redundancy))
        if report.unusable_nodes:
            print(f"unusable nodes: {', '.join(report.unusable_nodes)}")
        for name in report.lost[:20]:
            print(f"LOST {name}")
        for name in report.degraded[:20]:
            print(f"degraded {name}")
    return fsck_exit_code(report.counts, args.max_degraded)
