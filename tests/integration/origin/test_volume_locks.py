"""The lock of a volume that compactor and GC share (``origin.metadata.volume_locks``)
against real PostgreSQL: two pools stand for two processes. Node ids are fresh per test, so
the session database's other users never hold these keys."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from origin.metadata import db
from origin.metadata.volume_locks import volume_lock


@pytest.fixture
async def pools(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    first = await db.create_pool(database_url, max_size=2)
    second = await db.create_pool(database_url, max_size=2)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


@pytest.fixture
def node() -> str:
    return f"node-{uuid.uuid4().hex[:8]}"


async def _free(pool: asyncpg.Pool, node_id: str, volume: int) -> bool:
    async with volume_lock(pool, node_id, volume) as held:
        return held


async def test_a_held_volume_is_busy_for_everyone_else_until_the_block_ends(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], node: str
) -> None:
    first, second = pools
    async with volume_lock(first, node, 7) as held:
        assert held
        assert not await _free(second, node, 7)
        assert not await _free(first, node, 7)  # another connection of the same pool too
        assert await _free(second, node, 8)  # other volumes, other nodes: their own locks
        assert await _free(second, f"{node}-other", 7)
    assert await _free(second, node, 7)


async def test_a_failed_or_cancelled_holder_leaves_the_volume_free(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], node: str
) -> None:
    first, second = pools
    with pytest.raises(RuntimeError):
        async with volume_lock(first, node, 1) as held:
            assert held
            raise RuntimeError("the copy failed")
    assert await _free(second, node, 1)

    entered = asyncio.Event()

    async def holder() -> None:
        async with volume_lock(first, node, 1):
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.ensure_future(holder())
    await asyncio.wait_for(entered.wait(), 5)
    assert not await _free(second, node, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _free(second, node, 1)  # nothing stayed behind on first's pooled connection


async def test_the_lock_outlives_an_idle_in_transaction_timeout(
    database_url: str, pools: tuple[asyncpg.Pool, asyncpg.Pool], node: str
) -> None:
    """The lock's transaction sits idle while the volume is walked, copied and drained. A
    server (or role, or database) with ``idle_in_transaction_session_timeout`` would end its
    session after that long, and the lock with it, while the holder goes on; the lock's
    transaction turns the timeout off for itself, and only for itself."""
    _first, other = pools
    # As a server, role or database setting would: every session of this pool starts with it.
    strict = await asyncpg.create_pool(
        database_url, min_size=1, max_size=1, reset=db._keep_session,
        server_settings={"idle_in_transaction_session_timeout": "200"})
    try:
        async with volume_lock(strict, node, 3) as held:
            assert held
            await asyncio.sleep(1.0)  # five timeouts' worth of idle
            assert not await _free(other, node, 3)
        assert await _free(other, node, 3)
        # SET LOCAL ended with the lock's transaction: the pooled session keeps its setting.
        assert await strict.fetchval("SHOW idle_in_transaction_session_timeout") == "200ms"
    finally:
        await strict.close()
