"""Several workers' expositions made into one (``cdn.metrics_merge``): plain data."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from cdn.metrics_merge import END, framed, merged, parsed


def worker_registry(hits: int, objects: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("cdn_requests_total", "Client requests", ["result"],
            registry=registry).labels("hit").inc(hits)
    Gauge("cdn_cache_objects", "Objects", registry=registry).set(objects)
    Histogram("cdn_purge_propagation_seconds", "Purges", buckets=(1.0,),
              registry=registry).observe(0.5)
    Counter("cdn_upstream_requests_total", "Upstream", ["method"], registry=registry)  # none
    return registry


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def exposition(families: list[Metric]) -> str:
    return generate_latest(_Families(families)).decode()


def answer(hits: int, objects: int) -> list[Metric] | None:
    return parsed(framed(generate_latest(worker_registry(hits, objects))))


def test_each_family_once_with_every_workers_samples_labelled() -> None:
    text = exposition(merged({"1": answer(3, 10), "2": answer(4, 20)}))
    assert text.count("# TYPE cdn_requests_total counter") == 1
    assert text.count("# HELP cdn_cache_objects Objects") == 1
    assert 'cdn_requests_total{result="hit",worker="1"} 3.0' in text
    assert 'cdn_requests_total{result="hit",worker="2"} 4.0' in text
    assert 'cdn_cache_objects{worker="2"} 20.0' in text
    assert 'cdn_purge_propagation_seconds_bucket{le="1.0",worker="1"} 1.0' in text
    assert "# TYPE cdn_upstream_requests_total counter" in text  # no samples, still declared
    assert 'cdn_metrics_worker_up{worker="1"} 1.0' in text
    assert 'cdn_metrics_worker_up{worker="2"} 1.0' in text


def test_the_merged_text_is_a_valid_exposition_that_sums_to_the_whole() -> None:
    text = exposition(merged({"1": answer(3, 10), "2": answer(4, 20), "3": answer(5, 0)}))
    hits = [s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "cdn_requests_total"]
    assert sum(hits) == 12


def test_a_worker_without_an_answer_is_missing_and_shown_down() -> None:
    text = exposition(merged({"1": answer(3, 10), "2": None}))
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert {s.name for s in samples if s.labels["worker"] == "2"} == {"cdn_metrics_worker_up"}
    assert 'cdn_metrics_worker_up{worker="2"} 0.0' in text
    assert 'cdn_requests_total{result="hit",worker="1"} 3.0' in text


def test_an_answer_cut_short_is_no_answer() -> None:
    whole = framed(generate_latest(worker_registry(3, 10)))
    assert parsed(whole) is not None
    assert parsed(whole[:-len(END)]) is None  # cut at a line's end: would parse, short
    assert parsed(whole[: len(whole) // 2]) is None
    assert parsed(b"") is None
    assert parsed(b"\xff\xfe" + END) is None
