"""``cdn origin --processes 2`` on the session cluster's database and nodes: both processes
serve the port (each its own /_metrics), writes through one are read through the other, and
SIGTERM to the parent stops them all."""

from __future__ import annotations

import asyncio
import os
import re
import urllib.request
import uuid

import pytest

from origin.client import S3Client
from tests.integration.origin.conftest import ACCESS_KEY, SECRET_KEY, Cluster
from tests.procs import child_pids, is_running


async def test_two_processes_share_the_port(cluster: Cluster,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    logs = tmp_path_factory.mktemp("two-processes")
    proc = cluster.another_origin(logs / "origin.log", "--processes", "2")
    proc.start()
    try:
        assert proc.proc is not None
        children = child_pids(proc.proc.pid)
        assert len(children) == 2
        bucket = f"procs-{uuid.uuid4().hex[:10]}"
        data = {f"k{i}": os.urandom(1000 + i) for i in range(40)}
        async with S3Client(cluster.endpoint, ACCESS_KEY, SECRET_KEY) as other:
            await other.create_bucket(bucket)
        # A new client (new connections) per request: the kernel spreads them.
        for key, body in data.items():
            async with S3Client(proc.url, ACCESS_KEY, SECRET_KEY) as s3:
                await s3.put_object(bucket, key, body)
        for key, body in data.items():
            async with S3Client(proc.url, ACCESS_KEY, SECRET_KEY) as s3:
                assert await s3.get_object(bucket, key) == body
        counts = _get_counts_seen(proc.url, tries=40)
        # each process counts the GETs it answered; together, all of them
        assert counts == {len(data) / 2} or (len(counts) == 2 and sum(counts) == len(data))
    finally:
        proc.stop()
    await asyncio.sleep(0.2)
    assert not any(is_running(child) for child in children)


def _get_counts_seen(url: str, tries: int) -> set[float]:
    """The object GET counts ``/_metrics`` reports over ``tries`` connections (either
    process may answer each)."""
    seen = set()
    for _ in range(tries):
        with urllib.request.urlopen(url + "/_metrics", timeout=5) as resp:
            text = resp.read().decode()
        found = re.search(
            r'^origin_object_requests_total\{method="GET",status="200"\} ([\d.e+]+)',
            text, re.M)
        seen.add(float(found[1]) if found else 0.0)
    return seen

