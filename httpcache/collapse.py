"""Request collapsing: N concurrent misses for one cache key make ONE upstream request.

The first request for a key starts a *flight*: a background task that fetches from upstream
and publishes the response head, then the body chunk by chunk. Every request for the key —
the first included — gets a ``FlightReader``: it waits for the head, then streams chunks as
they arrive (an ``asyncio.Event`` replaced on every change wakes the readers; nothing polls).
The fetch runs in its own task so one client going away does not abort the download the
others (and the cache) are waiting for. The exception is a flight its first request runs
itself (``Collapser.start`` + ``run``, used by the hit path's plain misses): that request
writes to its client from the flight's ``listener`` as the flight is fed, saving the task and
the hand-off per chunk, and its caller guarantees it is not cancelled while it runs. Such a
flight may also be fed with no task at all, from the upstream connection's callbacks
(``httpcache.callback_fill``), which ends it as ``run`` would.

Uncacheable answers: the head says whether the response may be *shared*. A response the
policy would store is shareable by definition (the cache would serve it to anyone). One it
would not store (``private``, ``no-store``, Set-Cookie, …) belongs to the request that caused
it: that request (the *owner*) gets it, the others get ``NotShareable`` and fetch for
themselves. A response that is shareable but not kept (e.g. larger than one object may be) is
still streamed to every reader that joined — it is safe to share and it is exactly the case
(a big cold object) where collapsing saves the most.

Fairness: a reader that has chunks at hand could write them all before yielding (the
protocol's drain only waits once the kernel's socket buffer is full, which on loopback is
megabytes). With 1,000 waiters the last one would get its first byte after the others got
megabytes each (measured: p50 0.3-1 s for a 10 MiB object, bench/flash_crowd.py). So while
any reader of the flight has not had its first chunk, a reader that already has one yields to
the event loop before taking another chunk that was at hand: every reader's first chunk goes
out before anyone's next (asyncio runs ready tasks in FIFO order). Once every reader has
started, readers take what is at hand without yielding (no task switch per chunk). The first
chunk itself can be large (the upstream client joins what arrived meanwhile: 256 KiB and
more), so when a flight has several readers each one's first chunk is cut: ``FIRST_PIECE``
bytes (with the head, one small write), then the rest as a ``memoryview`` (consumers only
``len``, slice, join or write chunks). Measured with 1,000 waiters: the last one's first byte
came ≈ 0.6 ms × its place in the queue, i.e. after everyone before it got 256+ KiB.

Readers also keep arriving: a crowd's requests are taken in over tens of milliseconds while
the body streams, and every chunk copied to an early reader delays the intake (and so the
first byte) of the later ones. So a reader that has had its first piece takes no more while
readers are still joining: only once none has joined for ``SETTLE`` (2 ms), or the body is
complete, does it go on (one timer per flight, re-armed while joins continue; a lone reader
never waits). Meanwhile what the held readers have not taken stays in memory: at most what
arrives while the crowd does, which ``max_waiters`` bounds. Measured with 1,000 waiters
(``bench/flash_crowd.py``, 2 × 2 rounds alternated with the commit before): waiter TTFB
p50 124 / 148 → 91 / 120 ms, p99 245 / 260 → 138 / 202 ms; the crowd's completion
unchanged (0.84–1.01x → 0.96–0.98x the as-hits time).

Memory: chunks are retained for late joiners only while the response may be kept (it will
be stored, or it is small). Otherwise the producer calls ``stop_retaining``: the flight is
closed to newcomers and chunks every reader has passed are dropped, so a large object flows
through with the memory of the slowest reader's lag, not of the object.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from httpcache.headers import Fields
from httpcache.messages import Chunk, StoredResponse
from httpcache.records import record

# The first piece of body each reader of a shared flight gets (see the module docstring):
# with a ~0.5 KB head, below the 16 KiB under which the hit path writes head and body as one.
FIRST_PIECE = 8 * 1024
# A reader that has had its first piece takes the rest of the body only once no reader has
# joined for this long (or the body is complete): while a crowd is still arriving, the event
# loop's time goes to taking in requests and sending first pieces, not to copying megabytes
# to the early ones (see the module docstring).
SETTLE = 0.002


@record
class FlightHead:
    """The response head as published by the fetch."""

    status: int
    headers: Fields  # what the owner sees (may include Set-Cookie)
    shared_headers: Fields | None  # what the other readers see; None when not shareable
    content_length: int | None = None
    fwd_status: int | None = None  # the upstream's status (304 on a revalidation)
    stored: bool = False  # the response is being stored
    request_time: float = 0.0  # for the age calculation (RFC 9111 §4.2.3)
    response_time: float = 0.0
    vary: tuple[tuple[str, str | None], ...] = ()  # the owner's values of the Vary fields
    refreshed: StoredResponse | None = None  # a 304 refreshed this stored response
    applied: int = 0  # the purge sequence applied when the fetch began (``purge_watermark``)


class NotShareable(Exception):
    """The response belongs to the request that caused it; fetch your own."""


class Flight:
    """One upstream response being received, readable by any number of readers."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.method = "GET"  # the method sent upstream (set by the producer)
        self.joined = 0  # readers that joined after the owner
        self._head: FlightHead | None = None
        self._chunks: list[Chunk] = []
        self._offset = 0  # absolute index of _chunks[0] (earlier ones were dropped)
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._retain = True
        self._positions: dict[int, int] = {}  # reader token -> next absolute chunk index
        self._unstarted: set[int] = set()  # readers that have not taken their first chunk
        self._tokens = itertools.count()
        self._joined_at = 0.0  # time.monotonic() of the latest reader's joining
        self._settled: asyncio.Event | None = None  # set once the joining has settled
        # set on the next change, made when a reader first waits for one (an inline flight's
        # owner never waits: no Event per wake)
        self._changed: asyncio.Event | None = None
        # called (synchronously) on every change, after the readers were woken: the owner of
        # a flight it runs itself writes to its client from here (``Collapser.start``)
        self.listener: Callable[[], None] | None = None

    # -- producer side ---------------------------------------------------------------------

    def publish_head(self, head: FlightHead) -> None:
        self._head = head
        self._wake()

    def feed(self, chunk: Chunk) -> None:
        if chunk:
            self._chunks.append(chunk)
            self._size += len(chunk)
            self._trim()
            self._wake()

    def stop_retaining(self) -> None:
        """Drop chunks once every current reader has them (callers also close the flight
        to newcomers, who would need them)."""
        self._retain = False
        self._trim()

    def finish(self) -> None:
        self._done = True
        self._open_gate()
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._done:
            self._error = error
            self._done = True
            self._open_gate()
            self._wake()

    def _wake(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()
        if self.listener is not None:
            self.listener()

    def _trim(self) -> None:
        if self._retain:
            return
        low = min(self._positions.values(), default=self._offset + len(self._chunks))
        drop = low - self._offset
        if drop > 0:
            del self._chunks[:drop]
            self._offset += drop

    # -- reader side -----------------------------------------------------------------------

    async def _change(self) -> None:
        """Wait for the next change (head, chunk, end)."""
        changed = self._changed
        if changed is None:
            changed = self._changed = asyncio.Event()
        await changed.wait()

    @property
    def done(self) -> bool:
        return self._done

    @property
    def error(self) -> BaseException | None:
        """Why the flight failed, once it did."""
        return self._error

    @property
    def head(self) -> FlightHead | None:
        """The head, once published."""
        return self._head

    @property
    def received(self) -> int:
        return self._size

    @property
    def retained_bytes(self) -> int:
        return sum(len(c) for c in self._chunks)

    def reader(self) -> FlightReader:
        self._joined_at = time.monotonic()
        token = next(self._tokens)
        self._positions[token] = self._offset
        self._unstarted.add(token)
        return FlightReader(self, token)

    def _close_reader(self, token: int) -> None:
        self._unstarted.discard(token)
        if self._positions.pop(token, None) is not None:
            self._trim()

    async def _wait_head(self, owner: bool) -> FlightHead:
        while self._head is None:
            if self._error is not None:
                raise self._error
            await self._change()
        if not owner and self._head.shared_headers is None:
            raise NotShareable(self.key)
        return self._head

    def _settling(self) -> bool:
        """Whether readers are still joining (see ``SETTLE``); a lone reader never waits."""
        return (not self._done and len(self._positions) > 1
                and time.monotonic() - self._joined_at < SETTLE)

    async def _until_settled(self) -> None:
        gate = self._settled
        if gate is None:
            gate = self._settled = asyncio.Event()
            asyncio.get_running_loop().call_later(SETTLE, self._check_settled)
        await gate.wait()

    def _check_settled(self) -> None:
        if self._settled is None:
            return
        left = SETTLE - (time.monotonic() - self._joined_at)
        if left > 0 and not self._done:
            asyncio.get_running_loop().call_later(left, self._check_settled)
            return
        self._open_gate()

    def _open_gate(self) -> None:
        gate, self._settled = self._settled, None
        if gate is not None:
            gate.set()

    async def _read(self, token: int) -> AsyncIterator[Chunk]:
        unstarted = self._unstarted
        woken = True  # the first chunk is never held back
        while True:
            position = self._positions[token]
            end = self._offset + len(self._chunks)
            if position < end:
                if token not in unstarted and self._settling():
                    await self._until_settled()
                    continue
                if unstarted and not woken and token not in unstarted:
                    # others still wait for their first chunk: let them go first (see the
                    # module docstring); a reader just woken by feed() already took its turn
                    woken = True
                    await asyncio.sleep(0)
                    continue
                chunk = self._chunks[position - self._offset]
                first = token in unstarted
                unstarted.discard(token)
                woken = False
                self._positions[token] = position + 1
                if first and len(chunk) > FIRST_PIECE and len(self._positions) > 1:
                    # a small first piece (see the module docstring); the rest is a view,
                    # not a copy per reader
                    yield chunk[:FIRST_PIECE]
                    if self._settling():
                        await self._until_settled()
                    elif unstarted:
                        await asyncio.sleep(0)
                    yield memoryview(chunk)[FIRST_PIECE:]
                else:
                    yield chunk
                continue
            if self._error is not None:
                raise self._error
            if self._done:
                return
            await self._change()
            woken = True


class FlightReader:
    """One request's view of a flight: its own position in the body. Close it when done
    (``with reader:``) so chunks it no longer needs can be dropped."""

    def __init__(self, flight: Flight, token: int) -> None:
        self.flight = flight
        self._token = token

    async def head(self, *, owner: bool) -> FlightHead:
        """Wait for the head; non-owners get ``NotShareable`` for a private response."""
        return await self.flight._wait_head(owner)

    def ready(self) -> bool:
        """Whether the next chunk (or the end of the body) is at hand: reading it now would
        not wait for the upstream."""
        flight = self.flight
        return (flight._positions.get(self._token, 0) < flight._offset + len(flight._chunks)
                or flight._done)

    def drained(self) -> bool:
        """Whether this reader has taken the whole body of a flight that ended well: what
        ``chunks()`` would then yield is nothing."""
        flight = self.flight
        return (flight._done and flight._error is None
                and flight._positions.get(self._token, -1) >= flight._offset + len(flight._chunks))

    def take(self) -> Chunk | None:
        """The next chunk if it is at hand (``None`` otherwise), without waiting: how the
        owner of a flight it runs itself reads while the flight is being fed."""
        flight = self.flight
        position = flight._positions[self._token]
        if position >= flight._offset + len(flight._chunks):
            return None
        flight._unstarted.discard(self._token)
        flight._positions[self._token] = position + 1
        return flight._chunks[position - flight._offset]

    def chunks(self) -> AsyncIterator[Chunk]:
        """The body from the start, chunk by chunk as it arrives (a ``memoryview`` for the
        rest of a cut first chunk, see the module docstring); raises the fetch's error if the
        upstream broke off."""
        return self.flight._read(self._token)

    async def body(self) -> bytes:
        """The whole body, once complete."""
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        self.flight._close_reader(self._token)

    def __enter__(self) -> FlightReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


Producer = Callable[[Flight], Awaitable[None]]


class Collapser:
    """Flights by cache key. ``join`` either starts one (caller is the owner) or joins one."""

    def __init__(self, max_waiters: int = 1000) -> None:
        self.max_waiters = max_waiters
        self._flights: dict[str, Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def busy(self, key: str) -> bool:
        """Whether a shared flight for ``key`` is running."""
        return key in self._flights

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: str, producer: Producer, *, shared: bool = True
             ) -> tuple[FlightReader, bool]:
        """A reader of the flight for ``key`` and whether the caller started it (owns it).

        ``shared=False`` starts a private flight nobody else can join (requests that must not
        be collapsed, e.g. with Authorization); it still runs in its own task. A flight with
        ``max_waiters`` readers already takes no more: the next request fetches on its own
        (a bound on what one slow upstream response can hold up).
        """
        flight = self._flights.get(key) if shared else None
        if flight is not None and flight.joined >= self.max_waiters:
            flight, shared = None, False
        if flight is not None:
            flight.joined += 1
            return flight.reader(), False
        flight = Flight(key)
        if shared:
            self._flights[key] = flight
        reader = flight.reader()
        task = asyncio.get_running_loop().create_task(self.run(flight, producer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return reader, True

    def start(self, key: str) -> Flight | None:
        """A new shared flight for ``key`` that the caller runs itself (``run``, awaited in
        its own task: no task of the flight's own, no hand-off per chunk), or ``None`` when
        one is running already (join that one). The caller must not be cancelled while it
        runs the flight: the others' answers and the cache fill depend on it."""
        if key in self._flights:
            return None
        flight = self._flights[key] = Flight(key)
        return flight

    def run_in_task(self, flight: Flight, producer: Producer, then: Callable[[], None]
                    ) -> None:
        """Run ``flight`` (from ``start``) in a task of its own, then call ``then``: for a
        flight its caller began running without one (``callback_fill``) and cannot finish
        so."""
        task = asyncio.get_running_loop().create_task(self.run(flight, producer))
        self._tasks.add(task)

        def ended(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            then()

        task.add_done_callback(ended)

    def close_to_newcomers(self, flight: Flight) -> None:
        """Later requests start their own flight (e.g. the response is not shareable)."""
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    async def run(self, flight: Flight, producer: Producer) -> None:
        """Run ``producer`` for ``flight``: its error goes to the readers, not the caller
        (cancellation excepted)."""
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
