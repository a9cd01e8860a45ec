"""Group commit: concurrent appends share one write-and-fsync pass.

An fsync costs about as much for one small record as for a hundred, so appends are queued and
a single writer task drains whatever has accumulated, writes it in one executor call (one
thread, so file offsets are assigned in order) and fsyncs once. Every caller's future resolves
only after that fsync returned: an acknowledged fragment is durable. While one batch is being
written, the next one fills up, so batching grows by itself under load and costs nothing (a
batch of one) when idle. The records of one caller (a batch request) always share a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from origin.storagenode.volume import Address, VolumeError, VolumeSet

T = TypeVar("T")


Record = tuple[bytes, bytes | memoryview]  # (fragment id, payload)


@dataclass
class _Pending:
    """The records of one caller (one POST, or one batch request): committed in the same pass,
    answered with one future."""

    records: list[Record]
    nbytes: int
    future: asyncio.Future[list[Address]] = field(repr=False)


class GroupCommitter:
    """Queue appends for ``volumes`` and commit them in batches of at most ``max_batch_bytes``."""

    def __init__(
        self,
        volumes: VolumeSet,
        *,
        max_batch_bytes: int = 64 << 20,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._volumes = volumes
        self._max_batch_bytes = max_batch_bytes
        self._on_batch = on_batch or (lambda _count, _nbytes: None)
        self._queue: deque[_Pending] = deque()
        self._inflight: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="volume-writer")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pending in [*self._inflight, *self._queue]:
            if not pending.future.done():
                pending.future.set_exception(VolumeError("storage node shutting down"))
        self._queue.clear()
        self._executor.shutdown(wait=True)

    async def append(self, fragment_id: bytes, payload: bytes | memoryview) -> Address:
        """Queue one record; returns its address once it is durable."""
        return (await self.append_many([(fragment_id, payload)]))[0]

    async def append_many(self, records: list[Record]) -> list[Address]:
        """Queue several records (a batch request); their addresses once all are durable.
        They are never split over two passes: all are committed, or ``VolumeError``."""
        future: asyncio.Future[list[Address]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(records, sum(len(p) for _i, p in records), future))
        self._wakeup.set()
        return await future

    async def run_exclusive(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread, between batches (sealing or deleting a volume must
        never interleave with an append)."""
        loop = asyncio.get_running_loop()
        return await asyncio.shield(loop.run_in_executor(self._executor, fn))

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        nbytes = 0
        while self._queue and (not batch or nbytes + self._queue[0].nbytes
                               <= self._max_batch_bytes):
            item = self._queue.popleft()
            if item.future.cancelled():
                continue  # the client went away before we wrote anything: skip it
            batch.append(item)
            nbytes += item.nbytes
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._take_batch()
                if not batch:
                    continue
                items = [record for p in batch for record in p.records]
                self._inflight = batch
                try:
                    addresses = await asyncio.shield(
                        loop.run_in_executor(self._executor, self._volumes.append_batch, items))
                except Exception as exc:  # noqa: BLE001 - the writer task must survive
                    self._inflight = []
                    error = exc if isinstance(exc, VolumeError) else VolumeError(repr(exc))
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(error)
                    continue
                self._inflight = []
                self._on_batch(len(items), sum(p.nbytes for p in batch))
                start = 0
                for p in batch:
                    end = start + len(p.records)
                    if not p.future.done():
                        p.future.set_result(addresses[start:end])
                    start = end
