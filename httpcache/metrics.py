"""Prometheus metrics of one cache application, in an app-local registry.

A local ``CollectorRegistry`` (not the process default) lets several edges and shields live
in one test process, and ``/_metrics`` of each shows only its own numbers.

Names and labels (stable: end-to-end tests and dashboards count on them):

* ``cdn_requests_total{result}`` — client requests by outcome: ``hit``, ``miss``,
  ``revalidated`` (stale/soft-purged, upstream said 304), ``refetched`` (stale, upstream sent
  a new 200), ``collapsed`` (joined another request's fetch), ``partial`` (a sliced object
  with some of the needed slices cached, the rest fetched), ``pass`` (forwarded: method,
  bypass), ``not_modified`` (client conditional answered 304 from cache — counted in addition
  to hit), ``denied`` (403), ``error`` (5xx we generated).
* ``cdn_upstream_requests_total{method,status}`` — requests this tier sent upstream; status
  is the HTTP status or ``error``.
* ``cdn_cache_objects``, ``cdn_cache_bytes``, ``cdn_cache_evictions_total`` (memory tier);
  ``cdn_disk_objects``, ``cdn_disk_bytes`` (disk tier); ``cdn_shared_hits_total``,
  ``cdn_shared_errors_total``, ``cdn_shared_dropped_writes_total`` (shared Redis tier).
* ``cdn_purge_last_seq``, ``cdn_purge_events_total``, ``cdn_purge_propagation_seconds``,
  ``cdn_purged_objects_total{mode}``, ``cdn_purge_subscriber_connected``,
  ``cdn_purge_catchups_total{result}``.
* ``cdn_worker_connections_moved_total{direction}`` — only with ``--workers`` > 1 and the hit
  path: connections this worker took from (``in``) or passed to (``out``) another worker to
  keep their connection counts level (``cdn.balance``).

With ``--workers`` N > 1 every sample above carries ``worker="1".."N"``, and a scrape of any
worker holds every live worker's samples (``cdn.worker_metrics``): ``sum without(worker)``
is the whole server. ``cdn_metrics_worker_up{worker}`` is 1 for each worker whose samples
the scrape holds, 0 for one that did not answer within a second (exited, or busy), whose
counters are then missing from the sums. With one worker there is no ``worker`` label and
no ``cdn_metrics_worker_up``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class CacheMetrics:
    def __init__(self, tier: str) -> None:
        self.tier = tier
        self.registry = CollectorRegistry()
        r = self.registry
        self._flushes = _Flushes()
        r.register(self._flushes)
        self.requests = Counter("cdn_requests_total", "Client requests by cache result",
                                ["result"], registry=r)
        self.upstream_requests = Counter("cdn_upstream_requests_total",
                                         "Requests sent upstream", ["method", "status"],
                                         registry=r)
        self.cache_objects = Gauge("cdn_cache_objects", "Objects in the memory tier",
                                   registry=r)
        self.cache_bytes = Gauge("cdn_cache_bytes", "Bytes in the memory tier", registry=r)
        self.evictions = Counter("cdn_cache_evictions_total", "Memory tier evictions",
                                 registry=r)
        self.disk_objects = Gauge("cdn_disk_objects", "Objects in the disk tier", registry=r)
        self.disk_bytes = Gauge("cdn_disk_bytes", "Bytes in the disk tier", registry=r)
        self.shared_hits = Counter("cdn_shared_hits_total",
                                   "Memory misses answered by the shared tier", registry=r)
        self.shared_errors = Counter("cdn_shared_errors_total",
                                     "Shared tier operations that failed", registry=r)
        self.shared_dropped = Counter(
            "cdn_shared_dropped_writes_total",
            "Shared tier writes not made because too many were pending (Redis slow)",
            registry=r)
        self.purge_last_seq = Gauge("cdn_purge_last_seq", "Last purge sequence applied",
                                    registry=r)
        self.purge_events = Counter("cdn_purge_events_total", "Purge events applied",
                                    registry=r)
        # From the control plane's commit (the event's created_at) to applied here; events
        # replayed by a catch-up after downtime land in the top buckets, as they should.
        self.purge_propagation = Histogram(
            "cdn_purge_propagation_seconds", "Purge logged → applied by this cache",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60,
                     600), registry=r)
        self.purged_objects = Counter("cdn_purged_objects_total",
                                      "Objects removed or invalidated by purges", ["mode"],
                                      registry=r)
        self.purge_connected = Gauge("cdn_purge_subscriber_connected",
                                     "1 while subscribed to the purge channel", registry=r)
        self.purge_catchups = Counter("cdn_purge_catchups_total",
                                      "Catch-ups from the purge log", ["result"], registry=r)

    def count_moved_connections(self, moved: Callable[[], tuple[int, int]]) -> None:
        """Expose a balanced worker's connection moves, ``moved()`` = (in, out), as
        ``cdn_worker_connections_moved_total{direction}`` (``cdn.balance``)."""
        self.registry.register(_MovedConnections(moved))

    def on_collect(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` whenever the registry is collected, before any metric is read
        (``PendingCount.flush``)."""
        self._flushes.calls.append(flush)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Flushes:
    """Registered first, so every collection of the registry runs the flushes before it
    reads a metric; it yields no metric of its own."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], None]] = []

    def collect(self) -> Iterator[Metric]:
        for flush in self.calls:
            flush()
        return iter(())


class _MovedConnections(Collector):
    """Read at collection from the balancer's plain ints, which it counts on the
    connection-accepting path without prometheus_client's per-increment lock."""

    def __init__(self, moved: Callable[[], tuple[int, int]]) -> None:
        self.moved = moved

    def collect(self) -> Iterator[Metric]:
        moved_in, moved_out = self.moved()
        family = CounterMetricFamily(
            "cdn_worker_connections_moved_total",
            "Connections this worker took from (in) or passed to (out) other workers",
            labels=["direction"])
        family.add_metric(["in"], moved_in)
        family.add_metric(["out"], moved_out)
        yield family


class PendingCount:
    """Increments of one counter child kept as a plain int until the metrics are rendered.

    A cache counts on one event loop's thread, where the lock prometheus_client takes per
    ``inc`` is pure cost (about 5% of a small hit, four Python calls per increment);
    ``CacheMetrics.on_collect`` moves the count into the child whenever the registry is
    collected, so readers see every count."""

    __slots__ = ("child", "n")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n = 0

    def inc(self, n: int = 1) -> None:
        self.n += n

    def flush(self) -> None:
        n, self.n = self.n, 0
        if n:
            self.child.inc(n)
