"""Rendezvous shield choice and failover when the chosen shield stops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cdn.rendezvous import rank
from edge.server import SHIELD_POOL
from httpcache.cache_status import parse_members
from tests.integration.cache.conftest import Topology


async def test_edge_fails_over_to_the_next_shield(
        make_topology: Callable[..., Awaitable[Topology]]) -> None:
    topo = await make_topology(shields=2)
    topo.origin.set("/b/k", b"data", headers={"Cache-Control": "max-age=60"})
    chosen, other = rank("/b/k", ["shield-1", "shield-2"])

    resp, _ = await topo.get("/b/k")
    assert parse_members(resp.headers["Cache-Status"])[0][0] == f"cdn-{chosen}"

    await topo.shields[chosen].close()
    topo.edge_store().clear()  # force the edge upstream again

    resp, body = await topo.get("/b/k")
    assert resp.status == 200 and body == b"data"
    assert parse_members(resp.headers["Cache-Status"])[0][0] == f"cdn-{other}"
    assert not topo.edge_app[SHIELD_POOL].is_up(chosen)
    assert topo.origin.count("/b/k") == 2


async def test_keys_spread_over_shields_by_rendezvous(
        make_topology: Callable[..., Awaitable[Topology]]) -> None:
    topo = await make_topology(shields=2)
    paths = [f"/b/k{i}" for i in range(8)]
    for path in paths:
        topo.origin.set(path, b"x", headers={"Cache-Control": "max-age=60"})
        resp, _ = await topo.get(path)
        expected = rank(path, ["shield-1", "shield-2"])[0]
        assert parse_members(resp.headers["Cache-Status"])[0][0] == f"cdn-{expected}"
