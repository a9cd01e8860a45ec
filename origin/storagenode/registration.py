"""A storage node registers itself in the origin's metadata and heartbeats there.

On start-up (and every ``heartbeat_interval`` seconds) the node upserts its row in ``nodes``:
id, zone, address, capacity and free bytes of its data disk, the disk's identity (``disk_id``
and ``volume_base``, see ``identity.py``) and ``heartbeat = now()``. Origins reload that table
on every health round, so a new node is eligible for writes within one round, with no
reconfiguration. A heartbeat that finds another disk than the one recorded (the data dir was
wiped or the disk replaced) queues every fragment row of the earlier disk for repair in the
same transaction (``metadata/node_disks.py``). The metadata store being down never stops the
node from serving fragments: a failed heartbeat is logged and retried next interval. A node
declared lost keeps its ``state``; only an operator brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from origin.config import StorageNodeConfig
from origin.storagenode.identity import DiskIdentity

if TYPE_CHECKING:  # the metadata side (asyncpg) is imported only by a node that registers
    import asyncpg

log = logging.getLogger("cdn.storagenode.registration")


async def heartbeat_once(pool: asyncpg.Pool, config: StorageNodeConfig, address: str,
                         disk: DiskIdentity) -> None:
    from origin.metadata.node_disks import NodeBeat, record_heartbeat

    usage = shutil.disk_usage(config.data_path)
    replaced = await record_heartbeat(pool, NodeBeat(
        config.node_id, config.zone, address, usage.total, usage.free, disk.disk_id,
        disk.volume_base))
    if replaced is not None:
        log.warning("node %s: disk %s replaced disk %s; %d fragments of the earlier disk "
                    "(volumes below %d) queued for repair", replaced.node_id,
                    replaced.new_disk_id, replaced.old_disk_id, replaced.fragments_queued,
                    replaced.volume_base)


def registration_context(  # noqa: ANN201 - aiohttp cleanup ctx
        config: StorageNodeConfig, disk: Callable[[], DiskIdentity]):
    """``disk`` answers the identity the storage context opened (it runs first)."""
    async def registration(_app: web.Application) -> AsyncIterator[None]:
        if not config.database_url:
            yield
            return
        from origin.metadata import db
        from origin.metadata.node_disks import DiskRegressed

        address = (config.advertise_url or f"http://{config.host}:{config.port}").rstrip("/")

        async def loop() -> None:
            pool = None
            while True:
                try:
                    if pool is None:
                        pool = await db.create_pool(config.database_url, max_size=2)
                        await db.migrate(pool)
                    await heartbeat_once(pool, config, address, disk())
                except asyncio.CancelledError:
                    raise
                except DiskRegressed as exc:  # the store is fine: keep the pool, say why
                    log.error("heartbeat refused: %s", exc)
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
