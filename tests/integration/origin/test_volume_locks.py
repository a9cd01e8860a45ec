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
from origin.metadata.volume_locks import VolumeLockLost, volume_lock
from tests.integration.origin.volume_lock_sessions import terminate_holder


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
    async with volume_lock(pool, node_id, volume) as lock:
        return lock.held


async def test_a_held_volume_is_busy_for_everyone_else_until_the_block_ends(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], node: str
) -> None:
    first, second = pools
    async with volume_lock(first, node, 7) as lock:
        assert lock.held
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
        async with volume_lock(first, node, 1) as lock:
            assert lock.held
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
        async with volume_lock(strict, node, 3) as lock:
            assert lock.held
            await asyncio.sleep(1.0)  # five timeouts' worth of idle
            assert not await _free(other, node, 3)
        assert await _free(other, node, 3)
        # SET LOCAL ended with the lock's transaction: the pooled session keeps its setting.
        assert await strict.fetchval("SHOW idle_in_transaction_session_timeout") == "200ms"
    finally:
        await strict.close()


async def test_confirm_passes_while_held_and_raises_once_the_holders_session_is_ended(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], node: str
) -> None:
    first, second = pools
    # hashtext is negative for about half of the node ids: the pg_locks match must hold both
    negative = f"{node}-n"
    while await first.fetchval("SELECT hashtext($1)", negative) >= 0:
        negative += "n"
    for node_id in (node, negative):
        async with volume_lock(first, node_id, 5) as lock:
            assert lock.held
            await lock.confirm()
            await asyncio.sleep(0.2)
            await lock.confirm()
    async with volume_lock(second, node, 5) as other:
        assert other.held
        async with volume_lock(first, node, 5) as busy:
            assert not busy.held
            with pytest.raises(VolumeLockLost, match="not held"):
                await busy.confirm()  # the lock another session holds is not ours
    async with volume_lock(first, node, 9) as lock:
        assert lock.held
        assert await terminate_holder(second, node, 9) == 1
        with pytest.raises(VolumeLockLost, match="session is gone"):
            await lock.confirm()
        assert await _free(second, node, 9)  # ended with its session: another may take it
    # the block ended quietly and the pool replaced the dead connection
    assert await first.fetchval("SELECT 1") == 1
    assert await _free(first, node, 9)
