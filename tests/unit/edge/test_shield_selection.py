"""Rendezvous shield choice over healthy shields, and failover order."""

from __future__ import annotations

import pytest

from cdn.rendezvous import rank
from edge.shield_selection import ShieldPool

SHIELDS = {f"shield-{i}": f"http://127.0.0.1:{8100 + i}" for i in range(1, 5)}


def test_choice_is_the_rendezvous_winner() -> None:
    pool = ShieldPool(SHIELDS)
    for key in ("/b/1", "/b/2", "/c/3"):
        assert pool.choose(key) == rank(key, SHIELDS)[0]


def test_failover_order_is_rank_order_then_down_shields_last() -> None:
    pool = ShieldPool(SHIELDS)
    order = rank("/b/k", SHIELDS)
    pool.mark_down(order[0])
    assert pool.candidates("/b/k") == order[1:] + order[:1]
    pool.mark_up(order[0])
    assert pool.candidates("/b/k") == order


def test_only_keys_of_a_failed_shield_move() -> None:
    pool = ShieldPool(SHIELDS)
    keys = [f"/b/{i}" for i in range(200)]
    before = {k: pool.choose(k) for k in keys}
    pool.mark_down("shield-2")
    after = {k: pool.choose(k) for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert moved == {k for k in keys if before[k] == "shield-2"}
    assert moved  # some keys did belong to shield-2


def test_every_shield_down_still_gives_candidates() -> None:
    pool = ShieldPool(SHIELDS)
    for name in SHIELDS:
        pool.mark_down(name)
    assert pool.candidates("/b/k") == rank("/b/k", SHIELDS)


def test_empty_pool_is_refused() -> None:
    with pytest.raises(ValueError):
        ShieldPool({})


async def test_a_shield_is_marked_down_only_after_consecutive_failed_probes(aiohttp_server):
    import aiohttp
    from aiohttp import web

    from edge.shield_selection import HealthChecker, ShieldPool

    answers = iter([500, 500, 200, 500, 500, 500])

    async def health(_request: web.Request) -> web.Response:
        return web.Response(status=next(answers))

    app = web.Application()
    app.router.add_get("/_health", health)
    server = await aiohttp_server(app)
    pool = ShieldPool({"s1": str(server.make_url("/"))})
    async with aiohttp.ClientSession() as session:
        checker = HealthChecker(pool, session, interval=1.0, fall=3)
        seen = []
        for _ in range(6):
            await checker.check_all()
            seen.append(pool.is_up("s1"))
    # two failures, a success resets the count, then the third failure in a row marks it down
    assert seen == [True, True, True, True, True, False]
