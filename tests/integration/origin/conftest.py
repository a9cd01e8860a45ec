"""A real origin cluster for the whole session: 9 storage-node processes in 3 zones and one
origin process on its own fresh database. Tests that kill nodes put them back (``restore``)
so the next test starts from a healthy cluster."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cdn.processes import free_port
from origin.client import S3Client
from tests.integration.origin.cluster_parts import (
    create_database,
    nodes_flag,
    storage_node,
    wait_nodes_up,
)
from tests.procs import RoleProcess

ZONES = ("zone-a", "zone-b", "zone-c")
NODE_COUNT = 9
ACCESS_KEY = "test-admin"
SECRET_KEY = "test-admin-secret"
SEGMENT_SIZE = 256 << 10  # small segments: multi-segment objects stay small and fast
EXTRA_CLASSES = {"COLD": "ec:4+2"}  # besides STANDARD (ec:6+3) and REPLICATED (4 copies)


@dataclass
class Cluster:
    nodes: dict[str, RoleProcess]
    zones: dict[str, str]
    data_dirs: dict[str, Path]
    origin: RoleProcess
    database_url: str
    killed: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return self.origin.url

    def kill(self, node_ids: list[str]) -> None:
        for node_id in node_ids:
            self.nodes[node_id].kill()
            self.killed.append(node_id)

    def restore(self) -> None:
        """Restart killed nodes (same port, same data) and wait until the origin sees all."""
        if not self.killed:
            return
        with ThreadPoolExecutor(len(self.killed)) as pool:
            list(pool.map(lambda n: self.nodes[n].start(), self.killed))
        self.killed.clear()
        self.wait_all_up()

    def wait_all_up(self, timeout: float = 15.0) -> None:
        wait_nodes_up(self.origin.url, NODE_COUNT, timeout)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.origin.url + "/_metrics", timeout=2) as resp:
            return resp.read().decode()

    def another_origin(self, log_path: Path, *flags: str) -> RoleProcess:
        """One more origin process (not started) on this cluster's database and nodes,
        without background workers, with ``flags`` added (``--no-front``, ``--processes 2``
        …)."""
        port = free_port()
        return RoleProcess("origin", [
            "--port", str(port), "--database-url", self.database_url,
            "--nodes", nodes_flag(self.nodes, self.zones),
            "--segment-size", str(SEGMENT_SIZE), "--admin-access-key", ACCESS_KEY,
            "--admin-secret-key", SECRET_KEY, "--no-background-workers",
            "--lifecycle-interval", "0", *flags], port=port, log_path=log_path)


@pytest.fixture(scope="session")
def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("origin-cluster")
    logs = root / "logs"
    logs.mkdir()
    zones = {f"node-{i + 1}": ZONES[i % 3] for i in range(NODE_COUNT)}
    data_dirs = {n: root / n for n in zones}
    nodes = {n: storage_node(n, z, data_dirs[n], logs, "--volume-max-bytes", str(8 << 20))
             for n, z in zones.items()}
    db_url = asyncio.run(create_database(database_url, f"origin_{uuid.uuid4().hex[:10]}"))
    node_flag = nodes_flag(nodes, zones)
    port = free_port()
    origin = RoleProcess("origin", [
        "--port", str(port), "--database-url", db_url, "--nodes", node_flag,
        "--segment-size", str(SEGMENT_SIZE), "--admin-access-key", ACCESS_KEY,
        "--admin-secret-key", SECRET_KEY, "--health-interval", "0.3",
        "--node-timeout", "5",
        "--storage-classes", ",".join(f"{n}={spec}" for n, spec in EXTRA_CLASSES.items()),
        # Workers are driven explicitly by the tests that exercise them (run_once).
        "--no-background-workers"], port=port, log_path=logs / "origin.log")
    started: list[RoleProcess] = []
    try:
        with ThreadPoolExecutor(NODE_COUNT) as pool:
            for proc in pool.map(lambda p: p.start(), nodes.values()):
                started.append(proc)
        origin.start()
        started.append(origin)
        yield Cluster(nodes, zones, data_dirs, origin, db_url)
    finally:
        for proc in [origin, *nodes.values()]:
            proc.stop()


@pytest.fixture
def healthy_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """The session cluster, with every node put back after the test."""
    try:
        yield cluster
    finally:
        cluster.restore()


@pytest.fixture
async def s3(cluster: Cluster) -> AsyncIterator[S3Client]:
    async with S3Client(cluster.endpoint, ACCESS_KEY, SECRET_KEY) as client:
        yield client


@pytest.fixture
async def bucket(s3: S3Client) -> str:
    name = f"b-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(name)
    return name
