"""A worker's merged ``/_metrics`` over real Unix sockets (``cdn.worker_metrics``), in one
process: siblings that answer, one that is gone, one that never answers."""

from __future__ import annotations

import asyncio
import os
import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from cdn.worker_metrics import ASK_SECONDS, GATHERER, Gatherer, WorkerMetrics


def registry_counting(hits: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("cdn_requests_total", "Client requests", ["result"],
            registry=registry).labels("hit").inc(hits)
    return registry


async def test_siblings_answer_a_gone_one_and_a_silent_one_are_shown_down() -> None:
    """Workers 1 and 2 serve; 3 never started (no socket); 4 accepts and says nothing. The
    scrape of worker 1 is back after about ``ASK_SECONDS``, with 1's and 2's samples."""
    with WorkerMetrics(4) as group:
        one, two = (Gatherer(group, w, registry_counting(w * 10)) for w in (1, 2))
        silent_peers: list[asyncio.StreamWriter] = []

        async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            silent_peers.append(writer)

        server = await asyncio.start_unix_server(silent, group.socket_path(4))
        app = web.Application()
        serving_one, serving_two = one.serving(app), two.serving(app)
        await anext(serving_one)
        await anext(serving_two)
        try:
            started = time.monotonic()
            text = (await one.exposition()).decode()
            took = time.monotonic() - started
        finally:
            for serving in (serving_one, serving_two):
                await anext(serving, None)
            for writer in silent_peers:
                writer.close()
            server.close()
        assert ASK_SECONDS - 0.1 < took < ASK_SECONDS + 0.5
        assert 'cdn_requests_total{result="hit",worker="1"} 10.0' in text
        assert 'cdn_requests_total{result="hit",worker="2"} 20.0' in text
        for worker, up in (("1", 1.0), ("2", 1.0), ("3", 0.0), ("4", 0.0)):
            assert f'cdn_metrics_worker_up{{worker="{worker}"}} {up}' in text
        # removed when worker 1 stopped, and the directory when the parent leaves the block
        assert not os.path.exists(group.socket_path(1))  # noqa: ASYNC240 (a test)
    assert not os.path.exists(group.directory)  # noqa: ASYNC240 (a test)


async def test_a_sibling_is_sent_its_exposition_ending_in_eof() -> None:
    with WorkerMetrics(2) as group:
        app = web.Application()
        group.join(app, 2, registry_counting(7))
        assert app[GATHERER].worker == 2
        serving = app[GATHERER].serving(app)
        await anext(serving)
        try:
            reader, writer = await asyncio.open_unix_connection(group.socket_path(2))
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        finally:
            await anext(serving, None)
    assert answer.endswith(b"# EOF\n")  # OpenMetrics: a text cut short shows
    assert b'cdn_requests_total{result="hit"} 7.0' in answer
