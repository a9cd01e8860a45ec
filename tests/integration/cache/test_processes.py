"""``cdn shield`` and ``cdn edge`` as real processes, configured by their CLI flags."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from cdn.processes import free_port
from edge.signing import sign_url
from tests.integration.cache.conftest import url_of
from tests.integration.cache.scriptable_origin import ScriptableOrigin
from tests.procs import RoleProcess, edge_with_workers, is_running


async def test_cli_edge_and_shield_serve_and_cache(
        aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
        processes: list[RoleProcess], tmp_path: Path) -> None:
    origin = ScriptableOrigin()
    origin.set("/pub/a", b"alpha", headers={"Cache-Control": "max-age=60"})
    origin.set("/priv/b", b"beta", headers={"Cache-Control": "max-age=60"})
    origin_url = url_of(await aiohttp_server(origin.app))
    shield_port, edge_port = free_port(), free_port()
    shield = RoleProcess("shield", ["--name", "s1", "--port", str(shield_port),
                                    "--origin", origin_url, "--edge-secret", "sek"],
                         shield_port, log_path=tmp_path / "shield.log")
    processes.append(shield.start())
    edge = RoleProcess("edge", ["--region", "cli", "--port", str(edge_port),
                                "--shields", f"s1={shield.url}", "--edge-secret", "sek",
                                "--signing-keys", "k1=sign-secret",
                                "--signed-buckets", "priv"],
                       edge_port, log_path=tmp_path / "edge.log")
    processes.append(edge.start())

    async with aiohttp.ClientSession() as client:
        for expected in ("fwd=uri-miss", "hit"):
            async with client.get(edge.url + "/pub/a") as resp:
                assert resp.status == 200 and await resp.read() == b"alpha"
                assert expected in resp.headers["Cache-Status"].split(", ")[-1]
        async with client.get(edge.url + "/priv/b") as resp:
            assert resp.status == 403
        signed = sign_url(edge.url + "/priv/b", key_id="k1", secret="sign-secret",
                          expires_at=2**31 - 1)
        async with client.get(signed) as resp:
            assert resp.status == 200 and await resp.read() == b"beta"
        async with client.get(shield.url + "/_metrics") as resp:
            text = await resp.text()
        assert 'cdn_upstream_requests_total{method="GET",status="200"} 2.0' in text
    assert origin.count() == 2


async def test_cli_edge_workers_share_the_port_and_stop_together(
        aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
        processes: list[RoleProcess], tmp_path: Path) -> None:
    """``cdn edge --workers 2`` (``cdn.roles.serve_forked``): two forked servers on one port,
    each with its own memory tier, both answering; SIGTERM to the parent stops both."""
    origin = ScriptableOrigin()
    origin.set("/pub/a", b"alpha", headers={"Cache-Control": "max-age=60"})
    origin_url = url_of(await aiohttp_server(origin.app))
    edge, workers = edge_with_workers(origin_url, tmp_path)
    processes.append(edge)
    for _ in range(40):  # a new connection each time: the kernel spreads them
        async with aiohttp.ClientSession() as client, client.get(edge.url + "/pub/a") as resp:
            assert resp.status == 200 and await resp.read() == b"alpha"
    # one fill per worker that received a connection (each has its own memory tier)
    assert origin.count() in (1, 2)
    edge.stop()  # SIGTERM to the parent, which forwards it
    await asyncio.sleep(0.2)
    assert not any(is_running(pid) for pid in workers)
