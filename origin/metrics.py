"""Prometheus metrics of one origin app, in a registry of its own.

An app-local ``CollectorRegistry`` (never the process-global one) lets several apps live in one
test process without "duplicated timeseries" errors, and keeps ``/_metrics`` to what this app
did. Counting object GETs: ``origin_object_requests_total{method="GET",status="200"}`` (plus
``"206"`` for ranges); ``origin_requests_total{method,status}`` counts every S3 request
(``/_health`` and ``/_metrics`` excluded). With ``--processes`` N > 1 a scrape holds every
process's samples, labelled ``worker="1".."N"`` (``cdn.worker_metrics``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class OriginMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._request_children: dict[
            tuple[str, int, bool],
            tuple[Counter, Counter | None, Histogram]] = {}
        self.requests = Counter("origin_requests_total", "S3 API requests by method and status",
                                ["method", "status"], registry=r)
        self.object_requests = Counter(
            "origin_object_requests_total",
            "Requests on /{bucket}/{key} by method and status", ["method", "status"],
            registry=r)
        self.request_seconds = Histogram("origin_request_seconds",
                                         "Time to answer S3 requests (until headers/body done)",
                                         ["method"], registry=r)
        self.bytes_in = Counter("origin_object_bytes_in_total", "Object bytes stored",
                                registry=r)
        self.bytes_out = Counter("origin_object_bytes_out_total", "Object bytes served",
                                 registry=r)
        self.fragment_writes = Counter("origin_fragment_writes_total",
                                       "Fragment stores by outcome (ok, unreachable, timeout,"
                                       " rejected, skipped, straggler)", ["result"], registry=r)
        self.fragment_reads = Counter("origin_fragment_reads_total",
                                      "Fragment reads by outcome (ok, unreachable, timeout, "
                                      "rejected, corrupt, not-found)", ["result"], registry=r)
        # Bound once: incremented per fragment on every small PUT and GET.
        self.fragment_writes_ok = self.fragment_writes.labels(result="ok")
        self.fragment_reads_ok = self.fragment_reads.labels(result="ok")
        lookups = Counter("origin_object_cache_lookups_total",
                          "Object cache lookups of one-segment GETs (origin.object_cache)",
                          ["result"], registry=r)
        self.object_cache_hits = lookups.labels(result="hit")
        self.object_cache_misses = lookups.labels(result="miss")
        self.degraded_segments = Counter("origin_degraded_segment_reads_total",
                                         "Segments decoded with at least one parity fragment",
                                         registry=r)
        self.failed_segment_writes = Counter("origin_failed_segment_writes_total",
                                             "Segments that missed the write quorum",
                                             registry=r)
        self.incomplete_segment_writes = Counter(
            "origin_incomplete_segment_writes_total",
            "Segments stored with quorum but fewer than k+m fragments (repair needed)",
            registry=r)

    def count_request(self, method: str, status: int, is_object: bool, seconds: float) -> None:
        """One answered S3 request; the labelled children are looked up once per (method,
        status), not per request (``labels()`` costs more than the increment)."""
        children = self._request_children.get((method, status, is_object))
        if children is None:
            text = str(status)
            children = (self.requests.labels(method=method, status=text),
                        self.object_requests.labels(method=method, status=text)
                        if is_object else None,
                        self.request_seconds.labels(method=method))
            if len(self._request_children) < 1024:  # methods and statuses are few
                self._request_children[(method, status, is_object)] = children
        requests, object_requests, request_seconds = children
        requests.inc()
        if object_requests is not None:
            object_requests.inc()
        request_seconds.observe(seconds)
