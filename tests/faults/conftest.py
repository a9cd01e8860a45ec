"""Fault-injection tests: one disposable cluster (own PostgreSQL, 7 nodes, origin) for the
module; tests put back what they break."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from origin.client import S3Client
from origin.workers.base import ClusterContext
from origin.workers.cli_context import cluster_context
from tests.faults.cluster import ACCESS_KEY, SECRET_KEY, FaultCluster, start_fault_cluster


@pytest.fixture(scope="module")
def faults(shared_tmp: Path) -> Iterator[FaultCluster]:
    cluster = start_fault_cluster(shared_tmp / "faults")
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.postgres.stop()


@pytest.fixture
async def s3(faults: FaultCluster) -> AsyncIterator[S3Client]:
    async with S3Client(faults.endpoint, ACCESS_KEY, SECRET_KEY) as client:
        yield client


@pytest.fixture
async def ctx(faults: FaultCluster) -> AsyncIterator[ClusterContext]:
    async with cluster_context(faults.database_url, node_timeout=3) as context:
        yield context
