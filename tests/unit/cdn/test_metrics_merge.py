"""Several workers' expositions made into one (``cdn.metrics_merge``): plain data."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from cdn.metrics_merge import WORKER_UP, merged, parsed, rendered, sibling_answer

EOF = b"# EOF\n"  # how an OpenMetrics text ends


def worker_registry(hits: int, objects: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("cdn_requests_total", "Client requests", ["result"],
            registry=registry).labels("hit").inc(hits)
    Gauge("cdn_cache_objects", "Objects", registry=registry).set(objects)
    Histogram("cdn_purge_propagation_seconds", "Purges", buckets=(1.0,),
              registry=registry).observe(0.5)
    Counter("cdn_upstream_requests_total", "Upstream", ["method"], registry=registry)  # none
    return registry


def exposition(families: list[Metric]) -> str:
    return rendered(families).decode()


def answer(hits: int, objects: int) -> list[Metric] | None:
    return parsed(sibling_answer(worker_registry(hits, objects)))


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


def test_a_workers_samples_come_through_as_its_own_exposition_holds_them() -> None:
    """The OpenMetrics answer between workers loses nothing of the Prometheus text: the
    same families, types and samples (``_created`` included), plus the worker label."""
    registry = worker_registry(3, 10)

    def samples(text: str) -> set[tuple[str, str, str, tuple[tuple[str, str], ...], float]]:
        return {(f.name, f.type, s.name,
                 tuple(sorted((k, v) for k, v in s.labels.items() if k != "worker")), s.value)
                for f in text_string_to_metric_families(text) if f.name != WORKER_UP
                for s in f.samples}

    own = samples(generate_latest(registry).decode())
    assert own and samples(exposition(merged({"1": parsed(sibling_answer(registry))}))) == own


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
    whole = sibling_answer(worker_registry(3, 10))
    assert whole.endswith(EOF) and parsed(whole) is not None
    assert parsed(whole[:-len(EOF)]) is None  # cut at a line's end: would parse, short
    assert parsed(whole[: len(whole) // 2]) is None
    assert parsed(b"") is None
    assert parsed(b"\xff\xfe" + EOF) is None
