"""Group commit: concurrent appends share one write-and-fsync pass.

An fsync costs about as much for one small record as for a hundred, so appends are queued and
a single writer task drains whatever has accumulated, writes it in one executor call (one
thread, so file offsets are assigned in order) and fsyncs once. Every caller's future resolves
only after that fsync returned: an acknowledged fragment is durable. While one batch is being
written, the next one fills up, so batching grows by itself under load and costs nothing (a
batch of one) when idle. The records of one caller (a batch request) always share a pass.

A pass of at most ``inline_max_bytes`` (a few small fragments: what 4 KiB objects make) is
written and fsynced on the event loop's own thread: handing it to the writer thread and
back cost the node about as much CPU as the write and the fsync themselves (two thread
wake-ups and the executor's future chaining, ≈ 110 µs per pass measured), while the loop
would only be waiting for the answer anyway. The loop is blocked for that fsync (requests
arriving meanwhile join the next pass, so batching grows the same way). Larger passes still
go to the writer thread. Sealing and deleting volumes (``run_exclusive``) are queued
behind the appends already waiting and run between passes, so they never interleave with a
write on either thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar, cast

from origin.storagenode.volume import Address, Record, VolumeError, VolumeSet

T = TypeVar("T")




@dataclass
class _Exclusive:
    """A volume operation (seal, delete) run on the writer thread between passes."""

    fn: Callable[[], object]
    future: asyncio.Future[object] = field(repr=False)


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
        inline_max_bytes: int = 256 << 10,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._volumes = volumes
        self._max_batch_bytes = max_batch_bytes
        self._inline_max_bytes = inline_max_bytes
        self._on_batch = on_batch or (lambda _count, _nbytes: None)
        self._queue: deque[_Pending | _Exclusive] = deque()
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
        return await self.submit(records)

    def submit(self, records: list[Record]) -> asyncio.Future[list[Address]]:
        """``append_many`` as a future, for callers driven by callbacks (the node front's
        batch stores: no task per request). Cancelling it before its pass withdraws the
        records."""
        future: asyncio.Future[list[Address]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(records, sum(len(r[1]) for r in records), future))
        self._wakeup.set()
        return future

    async def run_exclusive(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread, between passes, after the appends queued before
        it (sealing or deleting a volume must never interleave with an append)."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue.append(_Exclusive(fn, future))
        self._wakeup.set()
        return cast(T, await asyncio.shield(future))

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        nbytes = 0
        while self._queue:
            item = self._queue[0]
            if isinstance(item, _Exclusive) or (
                    batch and nbytes + item.nbytes > self._max_batch_bytes):
                break
            self._queue.popleft()
            if item.future.cancelled():
                continue  # the client went away before we wrote anything: skip it
            batch.append(item)
            nbytes += item.nbytes
        return batch

    async def _run_exclusive(self, item: _Exclusive) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, item.fn)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            if not item.future.done():
                item.future.set_exception(exc)
        else:
            if not item.future.done():
                item.future.set_result(result)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                head = self._queue[0]
                if isinstance(head, _Exclusive):
                    self._queue.popleft()
                    await asyncio.shield(self._run_exclusive(head))
                    continue
                batch = self._take_batch()
                if not batch:
                    continue
                items = [record for p in batch for record in p.records]
                nbytes = sum(p.nbytes for p in batch)
                self._inflight = batch
                try:
                    if nbytes <= self._inline_max_bytes:
                        addresses = self._volumes.append_batch(items)  # see the docstring
                    else:
                        addresses = await asyncio.shield(loop.run_in_executor(
                            self._executor, self._volumes.append_batch, items))
                except Exception as exc:  # noqa: BLE001 - the writer task must survive
                    self._inflight = []
                    error = exc if isinstance(exc, VolumeError) else VolumeError(repr(exc))
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(error)
                    continue
                self._inflight = []
                self._on_batch(len(items), nbytes)
                start = 0
                for p in batch:
                    end = start + len(p.records)
                    if not p.future.done():
                        p.future.set_result(addresses[start:end])
                    start = end
