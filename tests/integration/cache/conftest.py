"""A real topology on loopback ports: scriptable origin → shield(s) → edge, in-process.

All tiers share one ``FakeClock``: expiry is tested by moving it, not by sleeping, and the
edge-auth timestamps agree between edge and shield.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from edge.config import EdgeConfig
from edge.server import build_app as build_edge
from httpcache.app import METRICS, STORE
from httpcache.store import MemoryStore
from shield.config import ShieldConfig
from shield.server import build_app as build_shield
from tests.integration.cache.scriptable_origin import FakeClock, ScriptableOrigin
from tests.procs import RoleProcess

SECRET = "edge-shield-secret"

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def metric(app: web.Application, name: str, **labels: str) -> float:
    value = app[METRICS].registry.get_sample_value(name, labels)
    return value or 0.0


@dataclass
class Topology:
    clock: FakeClock
    origin: ScriptableOrigin
    origin_server: TestServer
    shields: dict[str, TestServer] = field(default_factory=dict)
    edge: TestServer | None = None
    client: aiohttp.ClientSession | None = None

    @property
    def edge_url(self) -> str:
        assert self.edge is not None
        return url_of(self.edge)

    @property
    def edge_app(self) -> web.Application:
        assert self.edge is not None
        return self.edge.app

    def shield_app(self, name: str = "shield-1") -> web.Application:
        return self.shields[name].app

    def edge_store(self) -> MemoryStore:
        return self.edge_app[STORE]

    async def get(self, path: str, **kwargs: Any) -> tuple[aiohttp.ClientResponse, bytes]:
        assert self.client is not None
        async with self.client.get(URL(self.edge_url + path, encoded=True), **kwargs) as resp:
            return resp, await resp.read()

    async def request(self, method: str, path: str, **kwargs: Any
                      ) -> tuple[aiohttp.ClientResponse, bytes]:
        assert self.client is not None
        url = URL(self.edge_url + path, encoded=True)
        async with self.client.request(method, url, **kwargs) as resp:
            return resp, await resp.read()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def origin(aiohttp_server: ServerFactory, clock: FakeClock
                 ) -> tuple[ScriptableOrigin, TestServer]:
    scriptable = ScriptableOrigin(clock)
    return scriptable, await aiohttp_server(scriptable.app)


@pytest.fixture
async def make_topology(aiohttp_server: ServerFactory, clock: FakeClock,
                        origin: tuple[ScriptableOrigin, TestServer]
                        ) -> AsyncIterator[Callable[..., Awaitable[Topology]]]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(shields: int = 1, edge: dict[str, Any] | None = None,
                   shield: dict[str, Any] | None = None) -> Topology:
        scriptable, origin_server = origin
        topo = Topology(clock, scriptable, origin_server)
        shield_urls = {}
        for i in range(1, shields + 1):
            name = f"shield-{i}"
            config = ShieldConfig(name=name, origin=url_of(origin_server), edge_secret=SECRET,
                                  **(shield or {}))
            server = await aiohttp_server(build_shield(config, clock=clock))
            topo.shields[name] = server
            shield_urls[name] = url_of(server)
        edge_kwargs: dict[str, Any] = {"region": "test", "edge_secret": SECRET,
                                       "shield_health_interval": 0.2, **(edge or {})}
        if shields:
            edge_kwargs.setdefault("shields", shield_urls)
        else:
            edge_kwargs.setdefault("upstream", url_of(origin_server))
        topo.edge = await aiohttp_server(build_edge(EdgeConfig(**edge_kwargs), clock=clock))
        topo.client = aiohttp.ClientSession(auto_decompress=False)
        sessions.append(topo.client)
        return topo

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
async def topo(make_topology: Callable[..., Awaitable[Topology]]) -> Topology:
    return await make_topology()


@pytest.fixture
def processes() -> Iterator[list[RoleProcess]]:
    """Role processes a test started (``tests.procs``), stopped in reverse order after it."""
    started: list[RoleProcess] = []
    yield started
    for proc in reversed(started):
        proc.stop()
