"""Several workers' Prometheus expositions made into one, each sample labelled with its worker.

Pure: texts in, metric families out (``cdn.worker_metrics`` does the asking and the
serving). Every family appears once, with the HELP and TYPE of the first worker that has it,
and holds every worker's samples in worker order, each with ``worker="<n>"`` added, so
``sum without(worker)(…)`` is the whole server. ``WORKER_UP`` says whose samples the
exposition holds: 1 for a worker that answered, 0 for one that did not (dead, or too slow);
a Prometheus rule can alert on ``cdn_metrics_worker_up == 0``.

A worker answers a sibling in OpenMetrics text, which ends with ``# EOF``: a worker killed
while writing leaves a text cut at a line's end that would otherwise parse, short of some
families, and prometheus_client's OpenMetrics parser refuses it. The merged exposition is
the Prometheus text format, as a single process serves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

WORKER_LABEL = "worker"
WORKER_UP = "cdn_metrics_worker_up"
WORKER_UP_HELP = ("1 when the worker's samples are in this scrape, 0 when it did not answer "
                  "(exited, or slower than the scrape's wait)")


def sibling_answer(registry: Collector) -> bytes:
    """What a worker sends a sibling that asks for its metrics (collecting ``registry``)."""
    return openmetrics.generate_latest(registry)


def parsed(answer: bytes) -> list[Metric] | None:
    """The families of a sibling's answer; ``None`` when it is cut short (no ``# EOF``) or
    not an exposition, as good as no answer."""
    try:
        return list(text_string_to_metric_families(answer.decode()))
    except ValueError:  # UnicodeDecodeError is one
        return None


def merged(expositions: Mapping[str, list[Metric] | None]) -> list[Metric]:
    """One family per name holding every worker's samples labelled ``worker=<name>`` (in
    the mapping's order), then ``WORKER_UP``: 1 per worker whose families were given, 0 per
    worker given as ``None``."""
    families: dict[str, Metric] = {}
    for worker, metrics in expositions.items():
        for metric in metrics or ():
            family = families.get(metric.name)
            if family is None:
                family = families[metric.name] = Metric(metric.name, metric.documentation,
                                                        metric.type, metric.unit)
            family.samples.extend(_labelled(metric.samples, worker))
    up = GaugeMetricFamily(WORKER_UP, WORKER_UP_HELP, labels=[WORKER_LABEL])
    for worker, metrics in expositions.items():
        up.add_metric([worker], 0.0 if metrics is None else 1.0)
    return [*families.values(), up]


def rendered(families: list[Metric]) -> bytes:
    """``families`` in the Prometheus text format (what ``/_metrics`` answers)."""
    return generate_latest(_Families(families))


def _labelled(samples: Iterable[Sample], worker: str) -> Iterator[Sample]:
    for sample in samples:
        yield sample._replace(labels={**sample.labels, WORKER_LABEL: worker})


class _Families(Collector):
    """What ``generate_latest`` collects from: given families."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families
