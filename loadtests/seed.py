"""Upload the load-test catalogue to the origin (idempotent: existing objects are skipped)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from loadtests.catalogue import BUCKET, Catalogue, body_for


async def seed(topology: dict, catalogue: Catalogue, concurrency: int = 8) -> int:
    from origin.client import S3Client

    origin = topology["origin"]
    created = 0
    async with S3Client(origin["endpoint"], origin["access_key"], origin["secret_key"]) as s3:
        await s3.create_bucket(BUCKET, public=True)
        sem = asyncio.Semaphore(concurrency)

        async def one(rank: int) -> None:
            nonlocal created
            async with sem:
                await s3.put_object(
                    BUCKET, catalogue.key(rank), body_for(rank, catalogue.size(rank)),
                    content_type="application/octet-stream",
                    cache_control="public, max-age=300", surrogate_keys=(catalogue.tag(rank),),
                )
                created += 1

        await asyncio.gather(*(one(r) for r in range(1, catalogue.count + 1)))
    return created


def load_topology(path: str | None = None) -> dict:
    path = path or os.environ.get("CDN_TOPOLOGY", ".cdn-data/topology.json")
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(f"no topology at {path}: start `cdn up` first, or set CDN_TOPOLOGY "
                         "to its data dir's topology.json") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topology", default=None)
    parser.add_argument("--count", type=int, default=Catalogue.count)
    args = parser.parse_args()
    n = asyncio.run(seed(load_topology(args.topology), Catalogue(count=args.count)))
    print(f"seeded {n} objects into bucket {BUCKET!r}")


if __name__ == "__main__":
    main()
