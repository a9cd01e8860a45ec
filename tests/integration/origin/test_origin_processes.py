"""``cdn origin --processes 2`` on the session cluster's database and nodes: both processes
serve the port, writes through one are read through the other, every scrape of /_metrics
holds both processes' samples (``cdn.worker_metrics``), a killed process is shown missing,
and SIGTERM to the parent stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest

from origin.client import S3Client
from tests.integration.origin.conftest import ACCESS_KEY, SECRET_KEY, Cluster
from tests.procs import child_pids, is_running
from tests.scrapes import scrape, scrape_until_all_up, worker_pids

GETS = "origin_object_requests_total"


async def test_two_processes_share_the_port_and_one_metrics(
        cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    logs = tmp_path_factory.mktemp("two-processes")
    proc = cluster.another_origin(logs / "origin.log", "--processes", "2")
    proc.start()
    try:
        assert proc.proc is not None and proc.log_path is not None
        children = child_pids(proc.proc.pid)
        assert len(children) == 2
        scrape_until_all_up(proc.url, 2)
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

        # Every scrape, whichever process answers it, holds both; the GETs add up to all.
        previous: dict[tuple[tuple[str, str], ...], float] = {}
        for _ in range(8):
            found = scrape(proc.url)
            gets = found.per_worker(GETS, method="GET", status="200")
            assert set(gets) == {"1", "2"}, found.text
            assert all(count > 0 for count in gets.values()), gets  # both served some
            assert sum(gets.values()) == len(data), gets
            counters = found.values("origin_requests_total")
            assert all(counters[labels] >= value for labels, value in previous.items())
            previous = counters

        os.kill(worker_pids(proc.log_path)["2"], signal.SIGKILL)
        await asyncio.sleep(0.3)
        for _ in range(4):
            found = scrape(proc.url)
            assert found.seconds < 2.0, found.seconds
            assert found.workers_up() == {"1": 1.0, "2": 0.0}
            assert set(found.per_worker(GETS, method="GET", status="200")) == {"1"}
    finally:
        proc.stop()
    await asyncio.sleep(0.2)
    assert not any(is_running(child) for child in children)
