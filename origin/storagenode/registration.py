"""A storage node registers itself in the origin's metadata and heartbeats there.

On start-up (and every ``heartbeat_interval`` seconds) the node upserts its row in ``nodes``:
id, zone, address, capacity and free bytes of its data disk, and ``heartbeat = now()``.
Origins reload that table on every health round, so a new node is eligible for writes within
one round, with no reconfiguration. The metadata store being down never stops the node from
serving fragments: a failed heartbeat is logged and retried next interval. A node declared
lost keeps its ``state``; only an operator brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator

from aiohttp import web

from origin.config import StorageNodeConfig

log = logging.getLogger("cdn.storagenode.registration")


async def heartbeat_once(pool: object, config: StorageNodeConfig, address: str) -> None:
    usage = shutil.disk_usage(config.data_path)
    await pool.execute(  # type: ignore[attr-defined]
        """INSERT INTO nodes (id, zone, address, capacity, free_bytes, heartbeat)
           VALUES ($1, $2, $3, $4, $5, now())
           ON CONFLICT (id) DO UPDATE SET zone = EXCLUDED.zone, address = EXCLUDED.address,
               capacity = EXCLUDED.capacity, free_bytes = EXCLUDED.free_bytes,
               heartbeat = now()""",
        config.node_id, config.zone, address, usage.total, usage.free)


def registration_context(config: StorageNodeConfig):  # noqa: ANN201 - aiohttp cleanup ctx
    async def registration(_app: web.Application) -> AsyncIterator[None]:
        if not config.database_url:
            yield
            return
        from origin.metadata import db

        address = (config.advertise_url or f"http://{config.host}:{config.port}").rstrip("/")

        async def loop() -> None:
            pool = None
            while True:
                try:
                    if pool is None:
                        pool = await db.create_pool(config.database_url, max_size=2)
                        await db.migrate(pool)
                    await heartbeat_once(pool, config, address)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - keep serving, retry next round
                    log.warning("heartbeat to the metadata store failed: %r", exc)
                    if pool is not None:
                        with contextlib.suppress(Exception):
                            await pool.close()
                        pool = None
                await asyncio.sleep(config.heartbeat_interval)

        task = asyncio.get_running_loop().create_task(loop(), name="node-heartbeat")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return registration
