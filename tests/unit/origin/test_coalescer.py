"""Coalescer: a lone item leaves at once, concurrent ones share batches, failures reach exactly
the waiters they concern. The sender is a simple fake of our own that records its batches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from origin.coalescer import Coalescer


class Recorder:
    """Answers ``item * 10`` per item (or fails ``fail_items``) once ``release`` is set."""

    def __init__(self, *, hold: bool = False, fail_items: frozenset[int] = frozenset(),
                 fail_batch: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.fail_items = fail_items
        self.fail_batch = fail_batch

    async def send(self, items: list[int]) -> Sequence[int | Exception]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail_batch:
            raise ConnectionError("node went away")
        return [ValueError(f"bad {i}") if i in self.fail_items else i * 10 for i in items]


def _coalescer(rec: Recorder, *, inflight: int = 1, items: int = 64,
               nbytes: int = 1 << 20) -> Coalescer[int, int]:
    return Coalescer(rec.send, max_inflight=inflight, max_items=items, max_bytes=nbytes,
                     size_of=lambda _item: 100)


async def test_a_lone_item_is_sent_without_waiting_for_company() -> None:
    rec = Recorder()
    lane = _coalescer(rec)
    assert await asyncio.wait_for(lane.submit(7), timeout=1.0) == 70
    assert rec.batches == [[7]]


async def test_items_arriving_while_a_batch_is_in_flight_leave_together() -> None:
    rec = Recorder(hold=True)
    lane = _coalescer(rec)
    first = asyncio.ensure_future(lane.submit(0))
    await asyncio.sleep(0.01)  # the first batch is now in flight and held
    rest = [asyncio.ensure_future(lane.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    assert rec.batches == [[0]]
    rec.release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [10, 20, 30, 40, 50]
    assert rec.batches == [[0], [1, 2, 3, 4, 5]]


async def test_items_of_one_loop_turn_share_the_first_batch() -> None:
    rec = Recorder()
    lane = _coalescer(rec, inflight=2)
    assert await asyncio.gather(*(lane.submit(i) for i in range(4))) == [0, 10, 20, 30]
    assert rec.batches == [[0, 1, 2, 3]]


async def test_batches_respect_max_items_and_max_bytes() -> None:
    rec = Recorder()
    lane = _coalescer(rec, inflight=1, items=3)
    await asyncio.gather(*(lane.submit(i) for i in range(7)))
    assert [len(b) for b in rec.batches] == [3, 3, 1]
    rec = Recorder()
    lane = _coalescer(rec, inflight=1, nbytes=250)  # 100 bytes each: two per batch
    await asyncio.gather(*(lane.submit(i) for i in range(5)))
    assert [len(b) for b in rec.batches] == [2, 2, 1]


async def test_a_cancelled_waiter_is_not_sent() -> None:
    rec = Recorder(hold=True)
    lane = _coalescer(rec)
    first = asyncio.ensure_future(lane.submit(0))
    await asyncio.sleep(0.01)
    gone = asyncio.ensure_future(lane.submit(1))
    kept = asyncio.ensure_future(lane.submit(2))
    await asyncio.sleep(0.01)
    gone.cancel()
    rec.release.set()
    assert await first == 0 and await kept == 20
    assert rec.batches == [[0], [2]]


async def test_one_failed_item_fails_only_its_waiter() -> None:
    lane = _coalescer(Recorder(fail_items=frozenset({2})))
    results = await asyncio.gather(*(lane.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[1] == 10 and results[3] == 30
    assert isinstance(results[2], ValueError)


async def test_a_failed_batch_fails_every_waiter_with_its_own_exception() -> None:
    lane = _coalescer(Recorder(fail_batch=True))
    results = await asyncio.gather(*(lane.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert len({id(r) for r in results}) == 3
    # The lane is usable again afterwards.
    ok = _coalescer(Recorder())
    assert await ok.submit(1) == 10


async def test_a_sender_answering_the_wrong_count_fails_the_batch() -> None:
    async def short(items: list[int]) -> Sequence[int | Exception]:
        return [1]

    lane: Coalescer[int, int] = Coalescer(short, max_inflight=1, max_items=8, max_bytes=1 << 20,
                                          size_of=lambda _i: 1)
    with pytest.raises(RuntimeError, match="1 results for a batch of 2"):
        await asyncio.gather(lane.submit(1), lane.submit(2))


async def test_close_cancels_batches_in_flight_and_queued_waiters() -> None:
    rec = Recorder(hold=True)
    lane = _coalescer(rec)
    first = asyncio.ensure_future(lane.submit(0))
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(lane.submit(1))
    await asyncio.sleep(0.01)
    await lane.close()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await queued


class _Uncopyable(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


async def test_an_exception_that_cannot_be_copied_still_reaches_every_waiter() -> None:
    async def fail(items: list[int]) -> Sequence[int | Exception]:
        raise _Uncopyable(1, 2)

    lane: Coalescer[int, int] = Coalescer(fail, max_inflight=1, max_items=8, max_bytes=1 << 20,
                                          size_of=lambda _i: 1)
    results = await asyncio.wait_for(asyncio.gather(
        *(lane.submit(i) for i in range(3)), return_exceptions=True), timeout=2.0)
    assert all(isinstance(r, _Uncopyable) for r in results)


class CallbackSender:
    """A callback-driven starter (``Coalescer(start=…)``): batches are answered when the test
    says so, by calling the ``done`` each batch was given."""

    def __init__(self, *, raise_now: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.dones: list[object] = []
        self.raise_now = raise_now

    def start(self, items: list[int], done: object) -> None:
        if self.raise_now:
            raise ConnectionRefusedError("no route")
        self.batches.append(list(items))
        self.dones.append(done)

    def answer(self, index: int, outcome: object) -> None:
        self.dones[index](outcome)  # type: ignore[operator]


def _callback_lane(sender: CallbackSender) -> Coalescer[int, int]:
    return Coalescer(start=sender.start, max_inflight=1, max_items=64, max_bytes=1 << 20,
                     size_of=lambda _item: 1)


async def test_a_callback_sender_batches_and_answers_each_waiter() -> None:
    sender = CallbackSender()
    lane = _callback_lane(sender)
    first = lane.enqueue(1)
    await asyncio.sleep(0)
    rest = [lane.enqueue(i) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    assert sender.batches == [[1]]  # the others wait for the first batch's answer
    sender.answer(0, [10])
    assert await first == 10
    await asyncio.sleep(0)
    assert sender.batches == [[1], [2, 3, 4]]
    sender.answer(1, [20, ValueError("bad 3"), 40])
    sender.answer(1, [0, 0, 0])  # a second call of the same done is ignored
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert results[0] == 20 and isinstance(results[1], ValueError) and results[2] == 40


async def test_a_callback_sender_failing_a_batch_or_raising_fails_its_waiters_only() -> None:
    sender = CallbackSender()
    lane = _callback_lane(sender)
    waiters = [lane.enqueue(i) for i in range(3)]
    await asyncio.sleep(0)
    sender.answer(0, ConnectionResetError("node went away"))
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionResetError) for r in results)
    assert len({id(r) for r in results}) == 3
    later = lane.enqueue(9)  # the lane is free again
    await asyncio.sleep(0)
    sender.answer(1, [90])
    assert await later == 90
    refusing = _callback_lane(CallbackSender(raise_now=True))
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(refusing.enqueue(1), timeout=1.0)


async def test_close_cancels_the_waiters_of_a_callback_batch_in_flight() -> None:
    sender = CallbackSender()
    lane = _callback_lane(sender)
    in_flight = lane.enqueue(1)
    await asyncio.sleep(0)
    queued = lane.enqueue(2)
    await lane.close()
    assert in_flight.cancelled() and queued.cancelled()
    sender.answer(0, [10])  # an answer after close is dropped quietly


async def test_after_an_answer_the_next_batch_waits_one_turn_for_that_turns_items() -> None:
    sender = CallbackSender()
    lane = _callback_lane(sender)
    first = lane.enqueue(1)
    await asyncio.sleep(0)
    waiting = [lane.enqueue(i) for i in (2, 3)]
    sender.answer(0, [10])  # the answer arrives (in a protocol callback, say) ...
    late = lane.enqueue(4)  # ... and in the same turn another request adds a fragment
    assert sender.batches == [[1]]  # nothing left yet: the next batch takes all three
    await asyncio.sleep(0)
    assert sender.batches == [[1], [2, 3, 4]]
    sender.answer(1, [20, 30, 40])
    assert await asyncio.gather(first, *waiting, late) == [10, 20, 30, 40]
