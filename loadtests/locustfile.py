"""Locust load test: one user class per region, each hitting its own region's edge over a
Zipf-popular catalogue, plus an optional purge storm.

Run against ``cdn up`` (see README)::

    python -m loadtests.seed                       # once: upload the catalogue
    locust -f loadtests/locustfile.py --headless -u 30 -r 10 -t 30s \
        --csv loadtests/reports/run --html loadtests/reports/run.html

The topology (edge URLs, purge token) is read from ``$CDN_TOPOLOGY``
(default ``.cdn-data/topology.json``). Set ``CDN_LOAD_PURGES=1`` to add the purge user.
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, events, task

from loadtests.catalogue import Catalogue
from loadtests.seed import load_topology

TOPOLOGY = load_topology()
CATALOGUE = Catalogue(count=int(os.environ.get("CDN_LOAD_OBJECTS", Catalogue.count)),
                      zipf_s=float(os.environ.get("CDN_LOAD_ZIPF", "1.0")))
EDGES = {e["region"]: e["url"] for e in TOPOLOGY["edges"]}
EDGE_RESULTS = {"hit": 0, "miss": 0}


class RegionUser(HttpUser):
    """A browser in one region; ``region`` picks the edge it talks to."""

    abstract = True
    region = ""
    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.pick = CATALOGUE.sampler(random.Random())

    @task
    def fetch(self) -> None:
        rank = self.pick()
        with self.client.get(CATALOGUE.path(rank), name=f"{self.region} GET",
                             catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
            elif len(resp.content) != CATALOGUE.size(rank):
                resp.failure(f"size {len(resp.content)} != {CATALOGUE.size(rank)}")
            else:
                # The last Cache-Status member is the edge's own verdict (RFC 9211 order).
                last = resp.headers.get("Cache-Status", "").rsplit(",", 1)[-1]
                EDGE_RESULTS["hit" if "; hit" in last else "miss"] += 1


def _region_user(region: str) -> type[RegionUser]:
    return type(f"User_{region.replace('-', '_')}", (RegionUser,),
                {"region": region, "host": EDGES[region], "abstract": False})


for _region in EDGES:
    globals()[f"User_{_region.replace('-', '_')}"] = _region_user(_region)


if os.environ.get("CDN_LOAD_PURGES") == "1":

    class PurgeStorm(HttpUser):
        """An operator purging tag groups while traffic flows."""

        host = TOPOLOGY["control"]["url"]
        weight = 1
        wait_time = between(0.5, 1.5)

        @task
        def purge(self) -> None:
            tag = CATALOGUE.tag(random.randint(1, CATALOGUE.count))
            self.client.post("/purge", json={"tags": [tag]}, name="purge tag",
                             headers={"Authorization":
                                      f"Bearer {TOPOLOGY['control']['purge_token']}"})


@events.test_start.add_listener
def _announce(environment, **_kwargs) -> None:  # noqa: ANN001
    print(f"load test: {len(EDGES)} regions {sorted(EDGES)}, {CATALOGUE.count} objects, "
          f"zipf s={CATALOGUE.zipf_s}")


@events.test_stop.add_listener
def _report(environment, **_kwargs) -> None:  # noqa: ANN001
    total = sum(EDGE_RESULTS.values()) or 1
    print(f"edge hit ratio: {EDGE_RESULTS['hit'] / total:.1%} "
          f"({EDGE_RESULTS['hit']} hits, {EDGE_RESULTS['miss']} misses)")
