"""Typed configuration of the origin API and of one storage node.

Both are frozen dataclasses loaded once by ``cdn.settings.load_config`` (defaults < TOML
``[origin]`` / ``[storage_node]`` < env ``CDN_ORIGIN_*`` / ``CDN_NODE_*`` < CLI flags) and
validated in ``__post_init__`` so a bad value stops the process at start-up with the numbers in
the message. Derived values (the effective write quorum, the node list) are properties, never
second copies that could drift (the storage policy is a cached property: the fields it derives
from are frozen, and the PUT path reads it per request).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdn.settings import ConfigError

if TYPE_CHECKING:
    from origin.storage_class import StorageClassPolicy

GIB = 1 << 30


def _opt(default: Any, help_text: str) -> Any:
    """A field with a default and the help text ``cdn ROLE --help`` shows."""
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class NodeSpec:
    """One storage node as the origin sees it: id, failure domain and base URL."""

    node_id: str
    zone: str
    url: str


def parse_node_spec(name: str, url: str) -> NodeSpec:
    """``("node-1@zone-a", "http://127.0.0.1:9101")`` → ``NodeSpec``; zone is mandatory
    because placement spreads fragments over zones and a silent default would defeat it."""
    node_id, sep, zone = name.partition("@")
    node_id, zone, url = node_id.strip(), zone.strip(), url.strip().rstrip("/")
    if not sep or not node_id or not zone:
        raise ConfigError(f"origin.nodes: {name!r} must look like 'node-id@zone'")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"origin.nodes: address of {node_id!r} must be an http(s) URL, "
                          f"got {url!r}")
    return NodeSpec(node_id, zone, url)


@dataclass(frozen=True)
class OriginConfig:
    """The origin API server (``cdn origin``)."""

    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(9000, "port to listen on")
    database_url: str = _opt("", "PostgreSQL URL; empty means $CDN_DATABASE_URL")
    nodes: dict[str, str] = field(default_factory=dict, metadata={
        "help": "storage nodes as node-id@zone=http://host:port,... (at least k+m)"})
    ec_ndata: int = _opt(6, "data fragments per segment (k)")
    ec_nparity: int = _opt(3, "parity fragments per segment (m)")
    ec_type: str = _opt("isa_l_rs_cauchy", "pyeclib backend")
    segment_size: int = _opt(1 << 20, "bytes per erasure-coded segment")
    # 0 means ndata + 1: one fragment more than strictly needed, so a single later loss
    # still leaves the segment readable while the reconstructor catches up.
    write_quorum: int = _opt(0, "durable fragments a segment needs; 0 = ec_ndata + 1")
    admin_access_key: str = _opt("cdnadmin", "access key of the admin credential")
    admin_secret_key: str = _opt("cdnadmin-secret-key", "secret key of the admin credential")
    region: str = _opt("us-east-1", "region signed requests must name")
    max_object_size: int = _opt(5 * GIB, "largest object a PUT may store (bytes)")
    node_timeout: float = _opt(10.0, "seconds a storage-node request may take")
    health_interval: float = _opt(2.0, "seconds between storage-node health probes")
    # Small fragments to one node leave together once this many batches to it are in flight;
    # a lone request never waits (see origin.coalescer). 1 measured best with 4 KiB objects:
    # larger batches (6.7 vs 4.6 fragments per store at 32 clients), fewer node requests.
    node_batch_inflight: int = _opt(1, "batch requests in flight per storage node and "
                                       "direction (0: one request per fragment)")
    # Overlaps network and codec work while bounding memory to about (depth + 1) segments.
    pipeline_depth: int = _opt(2, "segments in flight per request")
    # Reads: the first k fragments to arrive win. Writes: once the quorum is durable, slower
    # slots get this long and are then left for the reconstructor. One slow node costs little.
    hedge_after: float = _opt(1.0, "seconds a slow node gets before reads hedge to parity and "
                                   "writes stop waiting for it (after quorum)")
    # Plain object GETs and PUTs are parsed with httptools and answered by the same handlers
    # without aiohttp's request/response objects (origin.api.front); everything else, and
    # any body larger than front_max_body (read whole before the handler runs), is aiohttp's.
    front: bool = _opt(True, "answer plain object GET/PUT on the protocol-level front")
    front_max_body: int = _opt(256 << 10, "largest PUT body (bytes) the front reads whole; "
                                          "larger ones stream through aiohttp")
    # Off by default: behind shields the origin mostly serves first reads (origin.object_cache).
    object_cache_bytes: int = _opt(0, "memory (bytes) for decoded small objects kept by "
                                      "their immutable id; 0 disables")
    # More than one: see origin.api.processes (each process its own memos, cache and metrics
    # registry; /_metrics answers for all of them).
    processes: int = _opt(1, "origin processes sharing the port (SO_REUSEPORT); background "
                             "workers run in the first")
    db_pool_max: int = _opt(16, "PostgreSQL connections per origin process")
    max_clock_skew: int = _opt(900, "allowed X-Amz-Date skew in seconds (S3: 15 min)")
    # Credentials and buckets are read on every request; another origin's change to either is
    # seen within this long (this process's own changes at once). 0 disables the memo.
    lookup_cache_ttl: float = _opt(2.0, "seconds a credential or bucket row is reused")
    lifecycle_interval: float = _opt(3600.0, "seconds between lifecycle passes (expiration, "
                                              "transitions, abandoned uploads); 0 disables")
    # Durability (issue 4): storage classes and the background workers.
    storage_classes: dict[str, str] = field(default_factory=dict, metadata={
        "help": "extra storage classes as NAME=ec:K+M or NAME=replicated:N,... (STANDARD = "
                "ec_ndata+ec_nparity and REPLICATED = ec_nparity+1 copies always exist)"})
    small_object_threshold: int = _opt(512, "objects smaller than this (bytes) in an erasure-"
                                            "coded class are stored as m+1 replicas")
    background_workers: bool = _opt(True, "run reconstructor, scrubber, GC and compactor")
    worker_interval: float = _opt(60.0, "seconds between background worker passes")
    gc_grace: float = _opt(72 * 3600.0, "seconds an unreferenced fragment is kept before GC")
    max_put_seconds: float = _opt(3600.0, "longest a PUT may take (GC safety: gc_grace must "
                                          "be at least twice this)")
    repair_rate: float = _opt(50e6, "reconstructor bytes/s cap")
    scrub_rate: float = _opt(20e6, "scrubber bytes/s cap per origin")
    compact_dead_ratio: float = _opt(0.5, "dead fraction of a volume that triggers compaction")
    compact_drain: float = _opt(10.0, "seconds an old volume is kept after compaction moved "
                                      "its live records (in-flight reads finish)")
    node_lost_after: float = _opt(3600.0, "seconds of silence after which a node counts as "
                                          "lost and its fragments are rebuilt elsewhere")

    def __post_init__(self) -> None:
        if not self.effective_database_url:
            raise ConfigError("origin: database_url is empty and CDN_DATABASE_URL is not set "
                              "(set CDN_ORIGIN_DATABASE_URL, --database-url or CDN_DATABASE_URL)")
        if self.ec_ndata < 1 or self.ec_nparity < 1:
            raise ConfigError(f"origin: ec_ndata and ec_nparity must both be >= 1, got "
                              f"{self.ec_ndata}+{self.ec_nparity}")
        nodes = self.storage_nodes  # parses and validates every entry
        if len(nodes) < self.fragments_per_segment:
            raise ConfigError(
                f"origin: {len(nodes)} storage nodes configured but ec_ndata + ec_nparity = "
                f"{self.ec_ndata} + {self.ec_nparity} = {self.fragments_per_segment} distinct "
                f"nodes are needed")
        if self.write_quorum and not (
            self.ec_ndata <= self.write_quorum <= self.fragments_per_segment
        ):
            raise ConfigError(f"origin: write_quorum {self.write_quorum} must be between "
                              f"ec_ndata {self.ec_ndata} and ec_ndata + ec_nparity "
                              f"{self.fragments_per_segment} (or 0 for ndata + 1)")
        if self.segment_size < 4096:
            raise ConfigError(f"origin: segment_size {self.segment_size} is below 4096 bytes")
        if self.processes < 1:
            raise ConfigError(f"origin: processes ({self.processes}) must be >= 1")
        if self.object_cache_bytes < 0 or self.front_max_body < 0:
            raise ConfigError(f"origin: object_cache_bytes ({self.object_cache_bytes}) and "
                              f"front_max_body ({self.front_max_body}) must be >= 0")
        if self.node_batch_inflight < 0:
            raise ConfigError(f"origin: node_batch_inflight ({self.node_batch_inflight}) "
                              f"must be >= 0")
        if self.max_object_size < 0 or self.pipeline_depth < 1 or self.node_timeout <= 0:
            raise ConfigError(
                f"origin: max_object_size ({self.max_object_size}) must be >= 0, pipeline_depth "
                f"({self.pipeline_depth}) >= 1 and node_timeout ({self.node_timeout}) > 0")
        if not self.admin_access_key or not self.admin_secret_key:
            raise ConfigError("origin: admin_access_key and admin_secret_key must not be empty")
        if self.gc_grace < 2 * self.max_put_seconds:
            raise ConfigError(f"origin: gc_grace ({self.gc_grace} s) must be at least twice "
                              f"max_put_seconds ({self.max_put_seconds} s), or GC could reclaim "
                              f"fragments of a PUT still in flight")
        from origin.storage_class import StorageClassError

        try:
            policy = self.storage_policy
        except StorageClassError as exc:
            raise ConfigError(f"origin: {exc}") from None
        if policy.widest > len(nodes):
            raise ConfigError(f"origin: a storage class needs {policy.widest} distinct nodes, "
                              f"{len(nodes)} are configured")
        from origin.erasure import ECScheme, ErasureError

        try:
            ECScheme(self.ec_ndata, self.ec_nparity, self.segment_size, self.ec_type)
        except ErasureError as exc:
            raise ConfigError(f"origin: erasure scheme {self.ec_type} "
                              f"{self.ec_ndata}+{self.ec_nparity}: {exc}") from None

    @property
    def effective_database_url(self) -> str:
        return self.database_url or os.environ.get("CDN_DATABASE_URL", "")

    @property
    def fragments_per_segment(self) -> int:
        """k + m: how many fragments (and distinct nodes) one segment is spread over."""
        return self.ec_ndata + self.ec_nparity

    @property
    def effective_write_quorum(self) -> int:
        """Durable fragments a segment needs before the PUT may succeed."""
        if self.write_quorum:
            return self.write_quorum
        return min(self.ec_ndata + 1, self.fragments_per_segment)

    @functools.cached_property
    def storage_policy(self) -> StorageClassPolicy:
        """The storage classes this origin offers (STANDARD, REPLICATED and configured).
        Built once (the fields are frozen): every PUT asks it for the requested class."""
        from origin.storage_class import default_policy

        return default_policy(self.ec_ndata, self.ec_nparity, self.ec_type,
                              self.storage_classes, self.small_object_threshold)

    @property
    def storage_nodes(self) -> tuple[NodeSpec, ...]:
        """The configured nodes, parsed, in a stable order (sorted by node id)."""
        specs = [parse_node_spec(name, url) for name, url in self.nodes.items()]
        ids = [s.node_id for s in specs]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ConfigError(f"origin.nodes: node ids used twice: {duplicates}")
        return tuple(sorted(specs, key=lambda s: s.node_id))


@dataclass(frozen=True)
class StorageNodeConfig:
    """One storage node (``cdn storage-node``)."""

    node_id: str = _opt("node-1", "this node's id (as in the origin's --nodes)")
    zone: str = _opt("zone-a", "failure domain label")
    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(9101, "port to listen on")
    data_dir: str = _opt("", "where volumes live; empty means .cdn-data/nodes/{node_id}")
    volume_max_bytes: int = _opt(GIB, "seal a volume file and start a new one past this size")
    # Off only for throwaway test data: an acknowledged fragment must survive power loss.
    fsync: bool = _opt(True, "fsync before acknowledging a fragment")
    max_fragment_bytes: int = _opt(64 << 20, "largest fragment accepted in one POST")
    # Registration: with a database URL the node records itself (id, zone, address, capacity)
    # in the origin's metadata and heartbeats, so origins place on it without reconfiguration.
    database_url: str = _opt("", "origin metadata PostgreSQL URL to register and heartbeat in "
                                 "(empty: no self-registration)")
    advertise_url: str = _opt("", "URL origins reach this node at; empty = http://host:port")
    heartbeat_interval: float = _opt(5.0, "seconds between heartbeats")
    volume_max_age: float = _opt(3600.0, "seal the active volume after this many seconds (so "
                                         "garbage in it can age past the GC grace period)")

    def __post_init__(self) -> None:
        if not self.node_id or "/" in self.node_id or "@" in self.node_id:
            raise ConfigError(f"storage_node: node_id {self.node_id!r} must be non-empty and "
                              f"contain neither '/' nor '@'")
        if self.volume_max_bytes < 1 << 16:
            raise ConfigError(f"storage_node: volume_max_bytes {self.volume_max_bytes} is "
                              f"below 65536")
        if self.max_fragment_bytes < 1:
            raise ConfigError(f"storage_node: max_fragment_bytes {self.max_fragment_bytes} "
                              f"must be positive")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else Path(".cdn-data/nodes") / self.node_id

    @property
    def volumes_path(self) -> Path:
        return self.data_path / "volumes"
