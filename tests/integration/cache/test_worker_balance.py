"""``cdn edge --workers 2`` keeps its workers' keep-alive connections level (``cdn.balance``).

Real processes and real sockets: which worker holds a connection is read from ``/proc`` (the
socket inodes of its descriptors against the established connections to the edge's port).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.cache.conftest import url_of
from tests.integration.cache.scriptable_origin import ScriptableOrigin
from tests.procs import RoleProcess, edge_with_workers, sockets_held, tcp_inodes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc to see which worker holds a connection")

CONNECTIONS = 200
REQUEST = b"GET /pub/a HTTP/1.1\r\nHost: edge\r\n\r\n"


async def answered(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection whose request was sent with the connect (so it is in the
    socket before its worker is chosen), answered in full."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    assert await asyncio.wait_for(reader.readexactly(length), 10) == b"alpha"
    return reader, writer


async def start_edge(aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
                     processes: list[RoleProcess], tmp_path: Path) -> tuple[int, list[int]]:
    origin = ScriptableOrigin()
    origin.set("/pub/a", b"alpha", headers={"Cache-Control": "max-age=600"})
    origin_url = url_of(await aiohttp_server(origin.app))
    edge, workers = edge_with_workers(origin_url, tmp_path)
    processes.append(edge)
    return edge.port, workers


async def test_keep_alive_connections_are_split_evenly_between_workers(
        aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
        processes: list[RoleProcess], tmp_path: Path) -> None:
    """Three rounds of 200 connections opened at once: each round the workers hold within
    two of each other (the kernel's hash alone gives that about one round in six), and every
    connection, moved or not, is answered, its first request included."""
    port, workers = await start_edge(aiohttp_server, processes, tmp_path)
    for _round in range(3):
        connections = await asyncio.gather(*(answered(port) for _ in range(CONNECTIONS)))
        inodes = tcp_inodes(port)
        held = [sockets_held(pid, inodes) for pid in workers]
        assert sum(held) == CONNECTIONS, held
        assert abs(held[0] - held[1]) <= 2, held
        # a second request on each: moved connections stay usable
        for reader, writer in connections[:20]:
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            await reader.readexactly(5)
        for _reader, writer in connections:
            writer.close()
        await asyncio.sleep(1.2)  # the ledger forgets closed connections at its next sweep


async def test_a_worker_that_died_is_not_sent_connections(
        aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
        processes: list[RoleProcess], tmp_path: Path) -> None:
    """With one worker killed, the other serves every new connection itself: the ledger
    still counts the dead one's connections low, but its inbox is closed."""
    port, workers = await start_edge(aiohttp_server, processes, tmp_path)
    survivor, victim = workers
    first = await asyncio.gather(*(answered(port) for _ in range(40)))
    for _reader, writer in first:
        writer.close()
    await asyncio.sleep(1.2)  # the victim's count drops to 0: the survivor will choose it
    os.kill(victim, signal.SIGKILL)
    await asyncio.sleep(0.3)
    connections = await asyncio.gather(*(answered(port) for _ in range(40)))
    assert sockets_held(survivor, tcp_inodes(port)) == 40
    for _reader, writer in connections:
        writer.close()
