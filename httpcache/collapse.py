"""Request collapsing: N concurrent misses for one cache key make ONE upstream request.

The first request for a key starts a *flight*: a background task that fetches from upstream
and publishes the response head, then the body chunk by chunk, into a shared growing list of
chunks. Every request for the key — the first included — reads the flight: it waits for the
head, then streams chunks as they arrive (an ``asyncio.Event`` replaced on every change wakes
the readers; nothing polls). The fetch runs in its own task so one client going away does not
abort the download the others (and the cache) are waiting for.

Uncacheable answers: the head says whether the response may be *shared*. A response the
policy would store is shareable by definition (the cache would serve it to anyone). One it
would not store (``private``, ``no-store``, Set-Cookie, …) belongs to the request that caused
it: that request (the *owner*) gets it, the others are told to fetch for themselves
(``NotShareable``). A response that is storable but too large to keep in memory is still
streamed to every waiter — it is safe to share and it is exactly the case (a big cold object)
where collapsing saves the most.

The chunks of a flight stay in memory until the flight ends; bodies too large for the memory
tier are therefore buffered while in flight (slices in a later tier remove that limit).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from httpcache.headers import Fields

log = logging.getLogger("cdn.httpcache.collapse")


@dataclass(frozen=True, slots=True)
class FlightHead:
    """The response head as published by the fetch."""

    status: int
    headers: Fields  # what the owner sees (may include Set-Cookie)
    shared_headers: Fields | None  # what the other waiters see; None when not shareable
    content_length: int | None = None
    fwd_status: int | None = None  # the upstream's status (304 on a revalidation)
    stored: bool = False  # the response is being stored
    request_time: float = 0.0  # for the age calculation (RFC 9111 §4.2.3)
    response_time: float = 0.0


class NotShareable(Exception):
    """The response belongs to the request that caused it; fetch your own."""


class Flight:
    """One upstream response being received, readable by any number of waiters."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.method = "GET"  # the method sent upstream (set by the producer)
        self.waiters = 0  # readers that joined after the owner
        self._head: FlightHead | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._changed = asyncio.Event()

    # -- producer side ---------------------------------------------------------------------

    def publish_head(self, head: FlightHead) -> None:
        self._head = head
        self._wake()

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self._chunks.append(chunk)
            self._size += len(chunk)
            self._wake()

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._done:
            self._error = error
            self._done = True
            self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- reader side -----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._done

    @property
    def received(self) -> int:
        return self._size

    async def head(self, *, owner: bool) -> FlightHead:
        """Wait for the head; waiters get ``NotShareable`` for a response they may not see."""
        while self._head is None:
            if self._error is not None:
                raise self._error
            await self._changed.wait()
        if not owner and self._head.shared_headers is None:
            raise NotShareable(self.key)
        return self._head

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every body chunk from the start, as it arrives; raises the fetch's error if the
        upstream broke off."""
        index = 0
        while True:
            while index < len(self._chunks):
                yield self._chunks[index]
                index += 1
            if self._error is not None:
                raise self._error
            if self._done:
                return
            await self._changed.wait()

    async def body(self) -> bytes:
        """The whole body, once complete."""
        return b"".join([chunk async for chunk in self.chunks()])


Producer = Callable[[Flight], Awaitable[None]]


class Collapser:
    """Flights by cache key. ``join`` either starts one (caller is the owner) or joins one."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: str, producer: Producer, *, shared: bool = True) -> tuple[Flight, bool]:
        """The flight for ``key`` and whether the caller started it (is its owner).

        ``shared=False`` starts a private flight nobody else can join (requests that must not
        be collapsed, e.g. with Authorization); it still runs in its own task.
        """
        flight = self._flights.get(key) if shared else None
        if flight is not None:
            flight.waiters += 1
            return flight, False
        flight = Flight(key)
        if shared:
            self._flights[key] = flight
        task = asyncio.get_running_loop().create_task(self._run(flight, producer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flight, True

    def close_to_newcomers(self, flight: Flight) -> None:
        """Later requests start their own flight (e.g. the response is not shareable)."""
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    async def _run(self, flight: Flight, producer: Producer) -> None:
        try:
            await producer(flight)
        except asyncio.CancelledError as exc:
            flight.fail(exc)
            raise
        except Exception as exc:  # delivered to every reader
            flight.fail(exc)
        else:
            flight.finish()
        finally:
            self.close_to_newcomers(flight)

    async def aclose(self) -> None:
        """Cancel and await every flight (application shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
