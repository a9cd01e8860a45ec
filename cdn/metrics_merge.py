"""Several workers' Prometheus expositions made into one, each sample labelled with its worker.

Pure: texts in, metric families out (``cdn.worker_metrics`` does the asking and the
serving). Every family appears once, with the HELP and TYPE of the first worker that has it,
and holds every worker's samples in worker order, each with ``worker="<n>"`` added, so
``sum without(worker)(…)`` is the whole server. ``WORKER_UP`` says whose samples the
exposition holds: 1 for a worker that answered, 0 for one that did not (dead, or too slow);
a Prometheus rule can alert on ``cdn_metrics_worker_up == 0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

WORKER_LABEL = "worker"
WORKER_UP = "cdn_metrics_worker_up"
WORKER_UP_HELP = ("1 when the worker's samples are in this scrape, 0 when it did not answer "
                  "(exited, or slower than the scrape's wait)")
# Ends what a worker sends its siblings: a worker killed while writing leaves a text cut at a
# line's end that would parse, short of some families. To the parser it is a comment.
END = b"# EOF\n"


def framed(exposition: bytes) -> bytes:
    """What a worker sends a sibling that asks for its metrics."""
    return exposition + END


def parsed(answer: bytes) -> list[Metric] | None:
    """The families of a sibling's ``framed`` answer; ``None`` when it is cut short or not
    an exposition, as good as no answer."""
    if not answer.endswith(END):
        return None
    try:
        text = answer.decode()
        return list(text_string_to_metric_families(text))
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


def _labelled(samples: Iterable[Sample], worker: str) -> Iterator[Sample]:
    for sample in samples:
        yield sample._replace(labels={**sample.labels, WORKER_LABEL: worker})
