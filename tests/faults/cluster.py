"""A disposable origin cluster for fault injection: its own embedded PostgreSQL, 7 storage-node
processes in 3 zones (4+2 erasure coding, write quorum 5: two nodes may be down and PUTs still
succeed, a third makes them fail), one origin with background workers on short intervals and a
GC grace period of seconds. Everything lives under one temp folder and is killed by PID."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cdn.embedded import EmbeddedPostgres
from cdn.processes import free_port
from tests.integration.origin.cluster_parts import (
    create_database,
    nodes_flag,
    storage_node,
    wait_nodes_up,
)
from tests.procs import RoleProcess

ZONES = ("zone-a", "zone-b", "zone-c")
NODE_COUNT = 7
NDATA, NPARITY = 4, 2
SEGMENT_SIZE = 64 << 10
GRACE = 6.0            # GC grace period (seconds)
MAX_PUT_SECONDS = 3.0  # GC safety: grace >= 2 × this
ACCESS_KEY, SECRET_KEY = "fault-admin", "fault-admin-secret"


@dataclass
class FaultCluster:
    root: Path
    postgres: EmbeddedPostgres
    database_url: str
    nodes: dict[str, RoleProcess] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)
    origin: RoleProcess | None = None
    faults: list[str] = field(default_factory=list)  # what was injected, for the report

    @property
    def endpoint(self) -> str:
        assert self.origin is not None
        return self.origin.url

    def data_dir(self, node_id: str) -> Path:
        return self.root / "nodes" / node_id

    def start(self) -> FaultCluster:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for i in range(NODE_COUNT):
            node_id = f"node-{i + 1}"
            self.zones[node_id] = ZONES[i % 3]
            self.nodes[node_id] = self._node(node_id)
        with ThreadPoolExecutor(NODE_COUNT) as pool:
            list(pool.map(lambda p: p.start(), self.nodes.values()))
        port = free_port()
        node_flag = nodes_flag(self.nodes, self.zones)
        self.origin = RoleProcess("origin", [
            "--port", str(port), "--database-url", self.database_url, "--nodes", node_flag,
            "--ec-ndata", str(NDATA), "--ec-nparity", str(NPARITY),
            "--segment-size", str(SEGMENT_SIZE), "--admin-access-key", ACCESS_KEY,
            "--admin-secret-key", SECRET_KEY, "--health-interval", "0.3",
            "--node-timeout", "3", "--hedge-after", "0.5", "--worker-interval", "1",
            "--gc-grace", str(GRACE), "--max-put-seconds", str(MAX_PUT_SECONDS),
            "--compact-drain", "0.5", "--repair-rate", "0", "--scrub-rate", "0"],
            port=port, log_path=logs / "origin.log")
        self.origin.start()
        return self

    def _node(self, node_id: str) -> RoleProcess:
        """A node that registers itself in the database and seals volumes quickly."""
        return storage_node(
            node_id, self.zones[node_id], self.data_dir(node_id), self.root / "logs",
            "--volume-max-bytes", str(1 << 20), "--database-url", self.database_url,
            "--heartbeat-interval", "1", "--volume-max-age", "2")

    def add_node(self, node_id: str, zone: str) -> None:
        """Start a node the origin was never told about; it registers itself."""
        self.zones[node_id] = zone
        self.nodes[node_id] = self._node(node_id)
        self.nodes[node_id].start()

    def stop(self) -> None:
        procs = [p for p in [self.origin, *self.nodes.values()] if p is not None]
        for proc in procs:
            proc.stop()

    # -- faults ----------------------------------------------------------------------------

    def kill_node(self, node_id: str) -> None:
        self.nodes[node_id].kill()
        self.faults.append(f"kill -9 {node_id}")

    def start_node(self, node_id: str) -> None:
        self.nodes[node_id].start()

    def wipe_node(self, node_id: str) -> None:
        """Disk replaced: kill the node, remove its whole data dir, start it empty."""
        self.kill_node(node_id)
        shutil.rmtree(self.data_dir(node_id))
        self.faults.append(f"rm -rf data dir of {node_id}")
        self.start_node(node_id)

    def kill_origin(self) -> None:
        assert self.origin is not None
        self.origin.kill()
        self.faults.append("kill -9 origin")

    def restart_origin(self) -> None:
        assert self.origin is not None
        self.origin.start()

    def stop_postgres(self) -> None:
        self.postgres.stop()
        self.faults.append("restart PostgreSQL")

    def start_postgres(self) -> None:
        """Call from the main thread: the server gets a parent-death signal bound to the
        thread that starts it, and a worker thread's exit would stop it again."""
        self.postgres.start()

    def up_count(self) -> int:
        with urllib.request.urlopen(self.endpoint + "/_health", timeout=2) as resp:
            return int(json.load(resp)["storage_nodes_up"])

    def wait_nodes_up(self, count: int = NODE_COUNT, timeout: float = 15.0) -> None:
        wait_nodes_up(self.endpoint, count, timeout)

    def restore_nodes(self) -> None:
        down = [n for n, p in self.nodes.items() if p.proc is None or p.proc.poll() is not None]
        with ThreadPoolExecutor(max(1, len(down))) as pool:
            list(pool.map(self.start_node, down))
        self.wait_nodes_up()


def start_fault_cluster(root: Path) -> FaultCluster:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    postgres = EmbeddedPostgres(root / "pg" / "data", free_port())
    server_url = postgres.start()
    db_url = asyncio.run(create_database(server_url, "faults"))
    cluster = FaultCluster(root, postgres, db_url)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        postgres.stop()
        raise
