"""What every background worker shares: a byte-rate limiter, the run-forever loop, the
cluster context (metadata pool, node client, node health) and "is this node usable"; and
what GC and the compactor share: a volume's work under its lock (``under_volume_lock``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import asyncpg

from origin.metadata.fragments import NodeRow, list_nodes, lost_node_ids
from origin.metadata.volume_locks import VolumeLock, VolumeLockLost, volume_lock
from origin.nodeclient import NodeClient
from origin.nodehealth import NodeHealth

log = logging.getLogger("cdn.origin.workers")

S = TypeVar("S", covariant=True)


class VolumeLockStats(Protocol):
    volumes_busy: int  # skipped: another worker holds the volume's lock
    volumes_lock_lost: int  # given up: the lock's session ended mid-work


async def under_volume_lock(pool: asyncpg.Pool, node_id: str, volume: int,
                            stats: VolumeLockStats,
                            work: Callable[[VolumeLock], Awaitable[None]], *, who: str) -> None:
    """Run ``work`` holding ``volume``'s lock (``metadata.volume_locks``), as GC and the
    compactor do: a volume another worker holds is skipped, and one whose lock is found lost
    (``VolumeLock.confirm`` before each destructive step) is given up; both are counted."""
    async with volume_lock(pool, node_id, volume) as lock:
        if not lock.held:
            stats.volumes_busy += 1
            return
        try:
            await work(lock)
        except VolumeLockLost as exc:
            stats.volumes_lock_lost += 1
            log.warning("%s gives up volume %d of %s, nothing deleted: %s", who, volume,
                        node_id, exc)


class RateLimiter:
    """Token bucket over bytes: ``await acquire(n)`` returns once ``n`` bytes fit under
    ``rate`` bytes/s (bursts up to one second's worth). ``rate <= 0`` means unlimited.
    ``clock``/``sleep`` are injectable so tests need no real waiting."""

    def __init__(self, rate: float, *, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        self.rate = rate
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._sleep = sleep or asyncio.sleep
        self._tokens = rate
        self._stamp: float | None = None

    async def acquire(self, amount: int) -> None:
        if self.rate <= 0:
            return
        now = self._clock()
        if self._stamp is not None:
            self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= amount
        if self._tokens < 0:
            await self._sleep(-self._tokens / self.rate)


class Worker(Protocol[S]):
    name: str

    async def run_once(self) -> S: ...


async def run_forever(worker: Worker[object], interval: float, *, jitter: float = 0.2,
                      max_passes: int | None = None) -> None:
    """``run_once`` every ``interval`` s (± ``jitter``), logging each pass's stats; a failing
    pass is logged and the loop goes on. ``max_passes`` bounds it (tests)."""
    passes = 0
    while max_passes is None or passes < max_passes:
        passes += 1
        try:
            stats = await worker.run_once()
            log.info("%s pass: %s", worker.name, stats)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a failed pass must not end the worker
            log.exception("%s pass failed", worker.name)
        await asyncio.sleep(interval * random.uniform(1 - jitter, 1 + jitter))


@dataclass
class ClusterContext:
    """What a worker talks to. ``health`` may be the origin's live belief or, for a CLI,
    one filled by a single probe round."""

    pool: asyncpg.Pool
    nodes: NodeClient
    health: NodeHealth
    lost_after: float = 3600.0

    async def node_rows(self) -> list[NodeRow]:
        return await list_nodes(self.pool)

    async def lost_nodes(self) -> list[str]:
        return lost_node_ids(await self.node_rows(), self.lost_after)

    async def usable_nodes(self) -> dict[str, str]:
        """node id → zone of nodes that are up and not lost (targets for new fragments)."""
        rows = await self.node_rows()
        lost = set(lost_node_ids(rows, self.lost_after))
        return {r.node_id: r.zone for r in rows
                if r.node_id not in lost and self.health.is_up(r.node_id)
                and r.node_id in self.nodes.node_ids}


class Closeable(Generic[S]):
    """Runs a worker's loop as a task that can be cancelled and awaited."""

    def __init__(self, worker: Worker[S], interval: float) -> None:
        self._task = asyncio.get_running_loop().create_task(
            run_forever(worker, interval), name=f"worker-{worker.name}")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
