"""What the session origin cluster (``conftest.py``) and the fault-injection cluster
(``tests/faults/cluster.py``) both need to start: a fresh database, storage-node processes,
the origin's ``--nodes`` flag and a wait until the origin sees the nodes up."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import asyncpg

from cdn.processes import free_port
from tests.procs import RoleProcess


async def create_database(server_url: str, name: str) -> str:
    """``CREATE DATABASE name`` on the server; the URL of the new database."""
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _sep, _db = server_url.rpartition("/")
    return f"{base}/{name}"


def storage_node(node_id: str, zone: str, data_dir: Path, logs: Path,
                 *extra: str) -> RoleProcess:
    """A storage-node process (not started) on a free loopback port."""
    port = free_port()
    return RoleProcess("storage-node", [
        "--node-id", node_id, "--zone", zone, "--port", str(port), "--data-dir", str(data_dir),
        *extra], port=port, log_path=logs / f"{node_id}.log")


def nodes_flag(nodes: Mapping[str, RoleProcess], zones: Mapping[str, str]) -> str:
    """The origin's ``--nodes`` value: ``node-id@zone=url,...``."""
    return ",".join(f"{n}@{zones[n]}={p.url}" for n, p in nodes.items())


def wait_nodes_up(origin_url: str, count: int, timeout: float = 15.0) -> None:
    """Until the origin's ``/_health`` counts at least ``count`` storage nodes up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(origin_url + "/_health", timeout=2) as resp:
                if int(json.load(resp)["storage_nodes_up"]) >= count:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"origin does not see {count} storage nodes up")
