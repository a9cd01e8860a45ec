"""Scrape a real server's ``/_metrics`` on a new connection and read what a multi-worker
exposition holds (``cdn.worker_metrics``)."""

from __future__ import annotations

import re
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Scrape:
    text: str
    seconds: float  # from connecting to the last byte

    @cached_property
    def families(self) -> list[Metric]:
        """``text`` parsed, once per scrape however many lookups read it."""
        return list(text_string_to_metric_families(self.text))

    def per_worker(self, sample_name: str, **labels: str) -> dict[str, float]:
        """The sum of ``sample_name``'s samples matching ``labels``, per ``worker`` label."""
        sums: dict[str, float] = defaultdict(float)
        for family in self.families:
            for sample in family.samples:
                if sample.name == sample_name and labels.items() <= sample.labels.items():
                    sums[sample.labels.get("worker", "")] += sample.value
        return dict(sums)

    def values(self, sample_name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every sample of ``sample_name`` by its whole label set."""
        return {tuple(sorted(s.labels.items())): s.value for f in self.families
                for s in f.samples if s.name == sample_name}

    def workers_up(self) -> dict[str, float]:
        return self.per_worker("cdn_metrics_worker_up")


def scrape(url: str, timeout: float = 10.0) -> Scrape:
    """``GET url/_metrics`` on a connection of its own (urllib opens one per request), so
    the kernel may hand it to any worker."""
    started = time.monotonic()
    with urllib.request.urlopen(url + "/_metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    return Scrape(text, time.monotonic() - started)


def scrape_until_all_up(url: str, workers: int, timeout: float = 10.0) -> Scrape:
    """Scrape until every worker answers (the health check waited for one of them)."""
    deadline = time.monotonic() + timeout
    while True:
        found = scrape(url)
        if found.workers_up() == {str(w): 1.0 for w in range(1, workers + 1)}:
            return found
        assert time.monotonic() < deadline, found.workers_up()
        time.sleep(0.1)


def worker_pids(log_path: Path) -> dict[str, int]:
    """Worker number → PID, from the ``ready … (worker N, pid P)`` lines of a role's log
    (``process N`` for the origin)."""
    found = re.findall(r"\((?:worker|process) (\d+), pid (\d+)\)", log_path.read_text())
    return {number: int(pid) for number, pid in found}
