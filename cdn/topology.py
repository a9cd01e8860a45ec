"""The local one-machine topology as data: which processes, on which ports, with which flags.

Pure: no process is started here. ``cdn up`` turns a :class:`Plan` into processes, and tests
and tools read the resulting ``topology.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

ZONES = ("zone-a", "zone-b", "zone-c")


@dataclass(frozen=True)
class Secrets:
    """Generated once per data directory and kept, so a restart keeps the same credentials."""

    admin_access_key: str
    admin_secret_key: str
    edge_secret: str
    purge_token: str
    signing_key_id: str
    signing_secret: str


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    role: str  # the `cdn` subcommand
    port: int
    args: tuple[str, ...]
    region: str = ""
    zone: str = ""
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Plan:
    nodes: tuple[ProcessSpec, ...]
    origin: ProcessSpec
    control: ProcessSpec
    shields: tuple[ProcessSpec, ...]
    edges: tuple[ProcessSpec, ...]
    database_url: str
    redis_url: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def stages(self) -> tuple[tuple[ProcessSpec, ...], ...]:
        """Start order: each stage only needs the ones before it."""
        return (self.nodes, (self.origin, self.control), self.shields, self.edges)

    @property
    def all(self) -> tuple[ProcessSpec, ...]:
        return tuple(p for stage in self.stages for p in stage)


@dataclass(frozen=True)
class PortPlan:
    """Fixed offsets from a base port, so a restart reuses the same addresses."""

    base: int

    def edge(self, i: int) -> int:
        return self.base + 1 + i

    def shield(self, i: int) -> int:
        return self.base + 101 + i

    def origin(self) -> int:
        return self.base + 1000

    def node(self, i: int) -> int:
        return self.base + 1101 + i

    def control(self) -> int:
        return self.base + 1400

    def redis(self) -> int:
        return self.base + 1379

    def postgres(self) -> int:
        return self.base + 1432


def build_plan(
    *,
    data_dir: str,
    secrets: Secrets,
    database_url: str,
    redis_url: str,
    port: Callable[[str, int], int],
    regions: tuple[str, ...],
    shield_count: int,
    node_count: int,
    signed_buckets: tuple[str, ...],
    host: str = "127.0.0.1",
) -> Plan:
    """``port(kind, index)`` gives each process its port (fixed plan or free ports)."""
    nodes = tuple(
        ProcessSpec(
            name=f"node-{i + 1}", role="storage-node", port=port("node", i),
            zone=ZONES[i % len(ZONES)], host=host,
            args=("--node-id", f"node-{i + 1}", "--zone", ZONES[i % len(ZONES)],
                  "--host", host, "--port", str(port("node", i)),
                  "--data-dir", f"{data_dir}/nodes/node-{i + 1}",
                  # Nodes register and heartbeat in the metadata store (capacity, liveness).
                  "--database-url", database_url),
        )
        for i in range(node_count)
    )
    node_map = ",".join(f"{n.name}@{n.zone}={n.url}" for n in nodes)
    # secret values go as ``--flag=value``: ``token_urlsafe`` may start one with "-", which
    # argparse would take for an option after a separate ``--flag``
    origin = ProcessSpec(
        name="origin", role="origin", port=port("origin", 0), host=host,
        args=("--host", host, "--port", str(port("origin", 0)), "--database-url", database_url,
              "--nodes", node_map, "--admin-access-key", secrets.admin_access_key,
              f"--admin-secret-key={secrets.admin_secret_key}"),
    )
    control = ProcessSpec(
        name="control", role="control", port=port("control", 0), host=host,
        args=("--host", host, "--port", str(port("control", 0)), "--database-url", database_url,
              "--redis-url", redis_url, f"--purge-token={secrets.purge_token}"),
    )
    purge_args = ("--redis-url", redis_url, "--control-url", control.url,
                  f"--purge-token={secrets.purge_token}")
    shields = tuple(
        ProcessSpec(
            name=f"shield-{i + 1}", role="shield", port=port("shield", i), host=host,
            args=("--name", f"shield-{i + 1}", "--host", host, "--port", str(port("shield", i)),
                  "--origin", origin.url, f"--edge-secret={secrets.edge_secret}",
                  # Shields read private buckets with their own SigV4 signature; locally the
                  # admin key (a production shield gets a read-only user of its own).
                  "--origin-access-key", secrets.admin_access_key,
                  f"--origin-secret-key={secrets.admin_secret_key}", *purge_args),
        )
        for i in range(shield_count)
    )
    shield_map = ",".join(f"{s.name}={s.url}" for s in shields)
    edges = tuple(
        ProcessSpec(
            name=f"edge-{region}", role="edge", port=port("edge", i), region=region, host=host,
            args=("--region", region, "--host", host, "--port", str(port("edge", i)),
                  *(("--shields", shield_map) if shields else ("--upstream", origin.url)),
                  f"--edge-secret={secrets.edge_secret}",
                  "--signing-keys", f"{secrets.signing_key_id}={secrets.signing_secret}",
                  "--signed-buckets", ",".join(signed_buckets), *purge_args),
        )
        for i, region in enumerate(regions)
    )
    return Plan(nodes=nodes, origin=origin, control=control, shields=shields, edges=edges,
                database_url=database_url, redis_url=redis_url)
