"""The storage node's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class NodeMetrics:
    """Counters of one node, in a registry of its own (never the process-global one).
    Children counted per fragment or per batch request are bound once here."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.appends = Counter("storage_node_appends_total", "Fragments appended durably",
                               registry=self.registry)
        self.append_bytes = Counter("storage_node_append_bytes_total",
                                    "Payload bytes appended durably", registry=self.registry)
        self.commits = Counter("storage_node_commits_total",
                               "Write+fsync passes (one per group-commit batch)",
                               registry=self.registry)
        self.batch_size = Histogram("storage_node_commit_batch_fragments",
                                    "Fragments per group-commit batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                                    registry=self.registry)
        self.reads = Counter("storage_node_reads_total", "Fragment reads by outcome",
                             ["result"], registry=self.registry)
        self.reads_ok = self.reads.labels(result="ok")
        self.read_bytes = Counter("storage_node_read_bytes_total", "Payload bytes served",
                                  registry=self.registry)
        self.batch_requests = Counter("storage_node_batch_requests_total",
                                      "Batch requests by kind (store, read)", ["kind"],
                                      registry=self.registry)
        self.batch_fragments = Counter("storage_node_batch_fragments_total",
                                       "Fragments carried by batch requests, by kind",
                                       ["kind"], registry=self.registry)
        self.batch_store_requests = self.batch_requests.labels(kind="store")
        self.batch_read_requests = self.batch_requests.labels(kind="read")
        self.batch_store_fragments = self.batch_fragments.labels(kind="store")
        self.batch_read_fragments = self.batch_fragments.labels(kind="read")
        self.front_connections = Counter(
            "storage_node_front_connections_total",
            "Connections accepted by the protocol-level front, by who answered them "
            "(front: batch requests only; aiohttp: handed over)", ["served_by"],
            registry=self.registry)
        self.scrubbed_bytes = Counter("storage_node_scrubbed_bytes_total",
                                      "Payload bytes verified by scrub walks",
                                      registry=self.registry)

    def record_batch(self, count: int, nbytes: int) -> None:
        self.commits.inc()
        self.batch_size.observe(count)
        self.appends.inc(count)
        self.append_bytes.inc(nbytes)
