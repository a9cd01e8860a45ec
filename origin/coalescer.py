"""Coalesce concurrent requests to one destination into batches, without waiting on purpose.

A ``Coalescer`` sends whatever is queued as one batch as long as fewer than ``max_inflight``
batches are in flight; otherwise items wait for the next free slot and then leave together.
A lone request therefore goes out on the next turn of the event loop (no timer, no added
latency), while under load the batch grows by itself to what arrived during one round trip,
the same way the node's group commit grows its fsync batches. ``max_items`` and ``max_bytes``
bound a batch, so a burst never becomes one huge request.

A batch is sent either by a coroutine function (``send``: awaited in a task of its own) or by
a callback-driven starter (``start``: it calls ``done`` once with the outcome, no task at
all). The storage-node lanes use the second: at 8 clients a 4 KiB GET sends about four batch
requests, and a task with its coroutine frames per batch was a large share of the origin's
instructions per operation.

The caller of ``submit`` may be cancelled at any time: a queued item is then dropped before it
is sent, an item already in flight is sent anyway and its result ignored.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Sends one batch; per item its result or the exception that item failed with, in order.
# Raising fails every item of the batch with (a copy of) that exception.
BatchSender = Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]]
# What a batch ended with: per item its result or exception, or one exception for all of it.
BatchOutcome = Sequence[Result | Exception] | BaseException
# Starts sending one batch and calls the callback exactly once, later (never from inside the
# call), with its ``BatchOutcome``; raising instead fails the batch at once.
BatchStarter = Callable[[list[Item], Callable[[BatchOutcome[Result]], None]], object]

_Waiting = tuple[Item, "asyncio.Future[Result]"]


class Coalescer(Generic[Item, Result]):
    def __init__(
        self,
        send: BatchSender[Item, Result] | None = None,
        *,
        start: BatchStarter[Item, Result] | None = None,
        max_inflight: int,
        max_items: int,
        max_bytes: int,
        size_of: Callable[[Item], int],
    ) -> None:
        if max_inflight < 1 or max_items < 1:
            raise ValueError(f"max_inflight ({max_inflight}) and max_items ({max_items}) "
                             f"must be >= 1")
        if send is not None and start is not None:
            raise ValueError("give one of send and start, not both")
        if send is None and start is None and type(self)._dispatch is Coalescer._dispatch:
            raise ValueError("give send or start (or override _dispatch)")
        self._send = send
        self._start: BatchStarter[Item, Result] = start if start is not None else \
            self._start_task
        self._max_inflight = max_inflight
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._queue: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._inflight = 0
        self._flush_scheduled = False
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._sent: dict[int, list[_Waiting]] = {}  # the batches in flight, by id()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, item: Item) -> Result:
        return await self.enqueue(item)

    def enqueue(self, item: Item) -> asyncio.Future[Result]:
        """``submit`` without a coroutine: the future of ``item``'s result (cancelling it
        withdraws the item if it has not left yet). For callers that start many at once."""
        if self._closed:
            raise RuntimeError("coalescer closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((item, future))
        if self._inflight < self._max_inflight and not self._flush_scheduled:
            # On the next turn rather than now: items submitted in this same turn (another
            # request's fragments for this node) leave in the same batch.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    async def close(self) -> None:
        """Cancel the batches in flight and the waiters of queued items; send nothing more."""
        self._closed = True
        while self._queue:
            self._queue.popleft()[1].cancel()
        for batch in list(self._sent.values()):
            for _item, future in batch:
                future.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        queue, size_of = self._queue, self._size_of
        max_items, max_bytes = self._max_items, self._max_bytes
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        nbytes = 0
        while queue and len(batch) < max_items:
            entry = queue[0]
            if entry[1].done():  # its caller was cancelled while it waited: never sent
                queue.popleft()
                continue
            size = size_of(entry[0])
            if batch and nbytes + size > max_bytes:
                break
            queue.popleft()
            batch.append(entry)
            nbytes += size
        return batch

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._queue and self._inflight < self._max_inflight and not self._closed:
            batch = self._take()
            if not batch:
                return
            self._inflight += 1
            self._sent[id(batch)] = batch
            self._dispatch(batch)

    def _dispatch(self, batch: list[_Waiting]) -> None:
        """Send ``batch`` through ``start`` (or ``send``); ``_finish`` answers its waiters.
        A subclass may override this to send and answer the waiters itself (the node lanes
        do, on the hot path of every small GET and PUT); it then ends the batch with
        ``_batch_over`` (``_fail`` answers all of its waiters with one error)."""
        ended = False

        def done(outcome: BatchOutcome[Result]) -> None:
            nonlocal ended
            if not ended:  # a starter that calls back twice is ignored the second time
                ended = True
                self._finish(batch, outcome)

        try:
            self._start([item for item, _future in batch], done)
        except Exception as exc:  # noqa: BLE001 - fails this batch, as a raising send does
            done(exc)

    def _start_task(self, items: list[Item],
                    done: Callable[[BatchOutcome[Result]], None]) -> None:
        """``BatchStarter`` over the coroutine ``send``: one task per batch."""
        task = asyncio.get_running_loop().create_task(self._run(items, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[Item], done: Callable[[BatchOutcome[Result]], None]
                   ) -> None:
        assert self._send is not None
        try:
            results = await self._send(items)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter of the batch
            done(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        done(results)

    def _finish(self, batch: list[_Waiting], outcome: BatchOutcome[Result]) -> None:
        """Hand each waiter of ``batch`` its result, then send what queued meanwhile."""
        try:
            if not isinstance(outcome, BaseException) and len(outcome) != len(batch):
                outcome = RuntimeError(f"{len(outcome)} results for a batch of {len(batch)}")
            if isinstance(outcome, BaseException):
                self._fail(batch, outcome)
            else:
                for (_item, future), result in zip(batch, outcome, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._batch_over(batch)

    @staticmethod
    def _fail(batch: list[_Waiting], exc: BaseException) -> None:
        """Every waiter of ``batch`` not answered yet fails with its own copy of ``exc`` (its
        own traceback); a cancellation cancels them instead."""
        if isinstance(exc, asyncio.CancelledError):
            for _item, future in batch:
                future.cancel()
            return
        for _item, future in batch:
            if not future.done():
                future.set_exception(own_copy(exc))

    def _batch_over(self, batch: list[_Waiting]) -> None:
        """The last step of every batch, however it ended (``_finish``, or a subclass's own
        answer handling): a waiter still without an answer (a bug on the way) gets an error
        rather than hanging, then ``_batch_done``."""
        for _item, future in batch:
            if not future.done():
                future.set_exception(RuntimeError("batch ended without an answer"))
        self._batch_done(batch)

    def _batch_done(self, batch: list[_Waiting]) -> None:
        """``batch`` is over: its slot is free for what queued meanwhile, which leaves on the
        next turn of the loop, as a first item does. Not at once: an answer is taken apart in
        the callback that read it, and waiting one turn lets the other answers and requests
        of that turn add their fragments (at 64 clients, sending at once made the store
        batches a third smaller, and every store batch costs a node one fsync)."""
        self._sent.pop(id(batch), None)
        self._inflight -= 1
        if self._queue and not self._flush_scheduled and not self._closed:
            try:
                asyncio.get_running_loop().call_soon(self._flush)
                self._flush_scheduled = True
            except RuntimeError:  # loop closing: nothing left to send
                pass


def own_copy(exc: BaseException) -> BaseException:
    """One instance per waiter, so each raise extends its own traceback; the shared one when
    the exception type cannot be copied."""
    try:
        return copy.copy(exc)
    except Exception:  # noqa: BLE001 - any copy failure: share the instance instead
        return exc
