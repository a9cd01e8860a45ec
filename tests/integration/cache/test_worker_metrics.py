"""``/_metrics`` of ``cdn edge --workers 2`` holds both workers' samples, whichever worker
the scrape reaches (``cdn.worker_metrics``); with one worker it is as it always was.

Real processes, real loopback sockets; every scrape and every request on a new connection,
so the kernel spreads them over the workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cdn.processes import free_port
from tests.integration.cache.conftest import url_of
from tests.integration.cache.scriptable_origin import ScriptableOrigin
from tests.integration.cache.test_worker_balance import CONNECTIONS, answered
from tests.procs import RoleProcess, edge_with_workers
from tests.scrapes import scrape, scrape_until_all_up, worker_pids

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="forked reuse_port workers")

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
REQUESTS = 60
SCRAPES = 8


async def start_origin(aiohttp_server: ServerFactory) -> str:
    origin = ScriptableOrigin()
    origin.set("/pub/a", b"alpha", headers={"Cache-Control": "max-age=600"})
    return url_of(await aiohttp_server(origin.app))


async def get_on_new_connections(url: str, count: int) -> None:
    for _ in range(count):
        async with aiohttp.ClientSession() as client, client.get(url + "/pub/a") as resp:
            assert resp.status == 200 and await resp.read() == b"alpha"


async def test_every_scrape_holds_every_workers_counters(
        aiohttp_server: ServerFactory, processes: list[RoleProcess], tmp_path: Path) -> None:
    """Each scrape has worker 1's and worker 2's samples, the requests sum to those made,
    and no counter goes down from one scrape to the next (Prometheus would see a reset)."""
    edge, _pids = edge_with_workers(await start_origin(aiohttp_server), tmp_path)
    processes.append(edge)
    scrape_until_all_up(edge.url, 2)
    await get_on_new_connections(edge.url, REQUESTS)

    previous: dict[tuple[tuple[str, str], ...], float] = {}
    for _ in range(SCRAPES):
        found = scrape(edge.url)
        requests = found.per_worker("cdn_requests_total")
        assert set(requests) == {"1", "2"}, found.text
        assert all(count > 0 for count in requests.values()), requests  # both served some
        assert sum(requests.values()) == REQUESTS, requests
        assert found.workers_up() == {"1": 1.0, "2": 1.0}
        counters = found.values("cdn_requests_total") | found.values(
            "cdn_upstream_requests_total")
        assert all(counters[labels] >= value for labels, value in previous.items()), (
            previous, counters)
        previous = counters
    text = scrape(edge.url).text
    assert text.count("# TYPE cdn_requests_total counter") == 1  # one family, not one each


async def test_a_killed_worker_is_left_out_and_shown_missing(
        aiohttp_server: ServerFactory, processes: list[RoleProcess], tmp_path: Path) -> None:
    """With worker 2 killed (SIGKILL: no clean-up), the survivor still answers at once with
    its own samples and ``cdn_metrics_worker_up{worker="2"} 0``."""
    edge, _pids = edge_with_workers(await start_origin(aiohttp_server), tmp_path)
    processes.append(edge)
    scrape_until_all_up(edge.url, 2)
    await get_on_new_connections(edge.url, 20)
    assert edge.log_path is not None
    pids = worker_pids(edge.log_path)
    os.kill(pids["2"], signal.SIGKILL)
    await asyncio.sleep(0.3)
    for _ in range(4):
        found = scrape(edge.url)
        assert found.seconds < 2.0, found.seconds
        assert found.workers_up() == {"1": 1.0, "2": 0.0}
        assert set(found.per_worker("cdn_requests_total")) == {"1"}, found.text


async def test_one_worker_has_no_worker_label(
        aiohttp_server: ServerFactory, processes: list[RoleProcess], tmp_path: Path) -> None:
    """The exposition without ``--workers`` is the registry's own, as dashboards know it."""
    origin_url = await start_origin(aiohttp_server)
    port = free_port()
    edge = RoleProcess("edge", ["--region", "one", "--port", str(port), "--upstream",
                                origin_url], port, log_path=tmp_path / "edge.log")
    processes.append(edge.start())
    await get_on_new_connections(edge.url, 3)
    found = scrape(edge.url)
    assert found.per_worker("cdn_requests_total") == {"": 3.0}
    assert "worker" not in found.text
    assert "cdn_metrics_worker_up" not in found.text


async def test_connections_moved_between_workers_are_counted(
        aiohttp_server: ServerFactory, processes: list[RoleProcess], tmp_path: Path) -> None:
    """After a burst of held connections (``test_worker_balance``'s), the workers say how
    many they passed on and took: the same number, more than none."""
    edge, _pids = edge_with_workers(await start_origin(aiohttp_server), tmp_path)
    processes.append(edge)
    scrape_until_all_up(edge.url, 2)
    connections = await asyncio.gather(*(answered(edge.port) for _ in range(CONNECTIONS)))
    found = scrape(edge.url)
    moved_out = found.per_worker("cdn_worker_connections_moved_total", direction="out")
    moved_in = found.per_worker("cdn_worker_connections_moved_total", direction="in")
    assert set(moved_out) == set(moved_in) == {"1", "2"}, found.text
    assert sum(moved_out.values()) > 0, moved_out
    assert sum(moved_in.values()) == sum(moved_out.values()), (moved_in, moved_out)
    for _reader, writer in connections:
        writer.close()
