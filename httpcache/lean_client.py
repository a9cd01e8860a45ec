"""A lean HTTP/1.1 client for the requests a cache sends most: GETs without a body.

Why: on a miss the upstream exchange was the largest part of the edge's CPU (py-spy, ``bench/
profile_edge.py --mode misses``): aiohttp's client builds a ``ClientRequest``, a ``URL``, a
``CIMultiDict``, a timer context, a response object and a ``StreamReader`` per request. Here
one request is one pre-joined write on a kept-alive connection and the response is parsed by
httptools (llhttp, the parser inside aiohttp and the one the hit path's server uses) straight
into the ``(name, value)`` pairs ``Fields`` holds. Everything else (other methods, request
bodies, HTTPS, health checks) still goes through the aiohttp session: see
``HttpUpstream.open``.

``LeanPools`` holds one ``LeanPool`` per ``host:port``: idle connections are reused most
recently used first, at most ``limit`` connections are open per pool (later requests wait),
an idle connection older than ``keepalive_timeout`` is closed instead of reused. A GET sent
on a reused connection that the upstream had closed meanwhile (nothing received) is sent
again once on a new connection, as aiohttp does.

Timeouts: ``connect_timeout`` for a new connection; ``read_timeout`` for each wait on the
upstream (the head, then each piece of the body), like aiohttp's ``sock_read``.

Receiving: the connection is a ``BufferedProtocol``. Heads (and bodies of unknown length)
are read into one scratch buffer per pool and fed to the parser. A body with a declared
``Content-Length`` of at most ``direct_max`` (the memory tier's largest object) is, after
its first piece (which waits for no allocation), read by the kernel straight into a buffer of
exactly that length, and its later pieces are views of it: ``LeanBody.whole`` is then the
complete body (the first piece copied in), which the cache keeps as it is. Bodies longer
than ``DIRECT_UNASKED`` are read so only when the consumer said it keeps the whole body
(``LeanBody.keep_whole``, before taking the first piece): one it streams through without
keeping stays in pieces, whose memory the backpressure bounds. Before, a
1 MiB body was copied four times in user space (the loop's read, the parser's piece, the
join of queued pieces, the join of the stored body), which was the largest part of a 1 MiB
miss (``perf``: ``memmove`` 29% of the edge's CPU).

Streaming: body pieces are queued as they arrive; above ``HIGH_WATER`` queued bytes reading
from the socket pauses until the consumer has taken them, so a slow client slows the
upstream instead of filling memory. Reading also pauses after the first piece of a body that
is not complete yet, until the consumer has taken that piece and the tasks it woke have run
(the resume is scheduled behind them): otherwise the event loop reads and copies further
256 KiB pieces of a large body before the task that writes the client's head and first bytes
gets its turn, and the time to first byte grows with the size (measured through one edge,
10 MiB against 1 KiB: +0.4 ms). A body that arrived whole in one read never pauses. A
response whose body was not read to its end (the consumer went away) closes its connection:
it cannot be reused.

Callbacks instead of a task: ``LeanPool.call_now`` sends a GET at once when a slot and an
idle connection are at hand and returns a ``LeanCall``, whose listener the connection calls
once per read that moved the response on (after the parser is done with the read) and on a
failure; the listener takes the pieces as they come (nothing queues, so reading never
pauses), and ``finish`` hands the connection back. ``httpcache.callback_fill`` drives a
cache fill so.

Errors are ``httpcache.errors`` from the start: ``UpstreamUnavailable`` (connect failed),
``UpstreamTimeout``, ``UpstreamDisconnected`` (closed before the head), ``UpstreamBodyError``
(closed inside the body), ``UpstreamError`` (an unparseable response).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import sys
import time
from collections.abc import Callable, Iterable
from types import TracebackType

import httptools

from httpcache.errors import (
    UpstreamBodyError,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from httpcache.field_names import NAMES, learn

HIGH_WATER = 256 * 1024  # queued body bytes above which reading from the socket pauses
SCRATCH_SIZE = 256 * 1024  # the read buffer for heads and bodies not read directly (uvloop's)
# The longest body read into one buffer whether or not the consumer keeps it (the buffer
# lives as long as the exchange: a body streamed through to a slow client holds it all).
# Longer ones are read so only when the consumer keeps the whole body (``keep_whole``).
DIRECT_UNASKED = 2 * 1024 * 1024
SWEEP_TICKS = 4  # checks of the ``LeanCall``s under way per read timeout


def _buffer_maker() -> Callable[[int], bytearray]:
    """``bytearray(n)`` zero-fills: a memset of the whole body, and on fresh memory every
    page faulted in at once, a stall of the event loop (~1 ms per MiB here). CPython's
    ``PyByteArray_FromStringAndSize(NULL, n)`` leaves the bytes as they are, so pages fault in
    as reads fill them (measured: 0.5 µs against 32 µs for 1 MiB of reused memory). Nothing
    reads a byte before a read wrote it: views stop at ``filled``, and only a complete body
    is ``whole``."""
    if sys.implementation.name != "cpython":
        return bytearray
    make = ctypes.pythonapi.PyByteArray_FromStringAndSize
    make.restype = ctypes.py_object
    make.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    return lambda length: make(None, length)  # type: ignore[no-any-return]


_new_buffer = _buffer_maker()
_NO_VIEW = memoryview(b"")

# ``Connection: keep-alive`` (or ``close``) and ``Keep-Alive: timeout=…`` only frame this
# connection: llhttp reads them for ``should_keep_alive``, and being hop-by-hop they would be
# dropped by ``headers.end_to_end``, which rebuilds the fields to do so (nginx sends
# ``Connection: keep-alive`` on every response). So they are not kept as they are parsed. A
# ``Connection`` naming other options is kept, for ``end_to_end`` to drop those fields too
# (RFC 9110 §7.6.1).
_FRAMING_FIELDS = frozenset({"connection", "keep-alive"})
_FRAMING_OPTIONS = frozenset({"keep-alive", "close"})


def _frames_only(lname: str, value: str) -> bool:
    """Whether a field of ``_FRAMING_FIELDS`` says nothing beyond this connection's framing."""
    if lname == "keep-alive":
        return True
    return all(option.strip().lower() in _FRAMING_OPTIONS for option in value.split(","))


class _Slots:
    """At most ``limit`` exchanges at once per pool, first come first served: what
    ``asyncio.Semaphore`` does, without its five Python calls per exchange when a slot is
    free (the common case, checked inline by ``LeanExchange``: ``free and not waiters``)."""

    __slots__ = ("free", "waiters")

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def wait(self) -> None:
        """Wait for a slot (``release`` hands it over; ``free`` is not incremented)."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            raise

    def release(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


class LeanResponse:
    """The head of a response and its body as it arrives (see ``LeanPool.get``)."""

    __slots__ = ("headers", "index", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]],
                 index: dict[str, list[str]]) -> None:
        self.status = status
        self.headers = headers
        # lower-case name -> values in order, built as the fields arrived (what
        # ``headers.Fields.prebuilt`` takes: no second pass lowering every name)
        self.index = index


class _Connection(asyncio.BufferedProtocol):
    """One connection; one exchange at a time."""

    def __init__(self, pool: LeanPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.used = 0  # exchanges started on it
        self.active = False  # an exchange is under way
        self.idle_since = 0.0
        self.reading_direct = False  # the buffer handed to the loop is ``direct``'s
        self.scratch = pool.scratch
        # called instead of waking a waiter when set (``LeanCall``): once per read, after the
        # parser is done with it, and on a failure
        self.listener: Callable[[], None] | None = None
        self.feeding = False  # inside ``buffer_updated``: the listener is told at its end
        self.changed = False
        self._begin()

    def _begin(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.index: dict[str, list[str]] = {}
        self.head_done = False
        self.informational = False
        self.complete = False
        self.keep_alive = False
        self.received = False  # any byte of this exchange's response
        self.error: BaseException | None = None
        self.pieces: list[bytes] = []
        self.queued = 0
        self.paused = False
        self.first_taken = False  # the consumer has taken the first piece of the body
        self.waiter: asyncio.Future[None] | None = None
        # a body read straight into its own buffer (module docstring): filled up to
        # ``filled``, handed to the consumer up to ``taken``
        self.direct_length = 0  # a declared length that may be read directly
        self.whole_wanted = False  # the consumer keeps the whole body (``LeanBody.keep_whole``)
        self.direct: bytearray | None = None
        self.direct_view = _NO_VIEW
        self.early: list[bytes] = []  # pieces handed out before the buffer was made
        self.filled = 0
        self.taken = 0

    # -- protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if not self.direct_length or self.complete or not self.first_taken:
            return self.scratch  # a head, a body fed to the parser, or its first piece
        if self.direct is None:
            if self.direct_length > self.pool.direct_unasked and not self.whole_wanted:
                self.direct_length = 0  # streamed through in pieces (module docstring)
                self.early = []
                return self.scratch
            self._start_direct()
        self.reading_direct = True  # reset by buffer_updated
        return self.direct_view[self.filled:]

    def buffer_updated(self, nbytes: int) -> None:
        if not self.active:  # bytes nobody asked for: the connection is out of step
            self.close()
            return
        self.received = True
        self.feeding = True
        if self.reading_direct:
            self.reading_direct = False
            self.filled += nbytes
            self.queued += nbytes
            if self.filled == len(self.direct_view):
                self._direct_complete()
            elif (self.queued >= HIGH_WATER and not self.paused
                    and self.transport is not None):
                self.paused = True
                self.transport.pause_reading()
            self._wake()
        else:
            try:
                # the parser's callbacks copy what they keep: the scratch is free again after
                self.parser.feed_data(self.scratch[:nbytes])
            except httptools.HttpParserError as exc:
                self._fail(UpstreamError(f"upstream {self.pool.where} sent an invalid "
                                         f"response: {exc}"))
                self.close()
        self.feeding = False
        if self.listener is not None:
            # told once per read, outside the parser: what it takes is not queued, so
            # nothing below applies (and it may have ended the exchange already)
            if self.changed:
                self.changed = False
                self.listener()
            return
        if self.error is not None:
            return
        if (self.queued and not self.first_taken and not self.complete and not self.paused
                and self.transport is not None):
            self.paused = True  # until the first piece is on its way (module docstring)
            self.transport.pause_reading()

    def _direct_complete(self) -> None:
        self.complete = True
        # the parser stopped inside this body: the next exchange gets a fresh one
        self.parser = httptools.HttpResponseParser(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        self.pool._lost(self)
        if self.complete:
            return
        if self.head_done and self._ends_at_close():
            self.complete = True  # a body delimited by the end of the connection
            self._wake()
            return
        where = self.pool.where
        if self.head_done:
            self._fail(UpstreamBodyError(f"upstream {where} broke off the body"))
        else:
            self._fail(UpstreamDisconnected(f"upstream {where} closed the connection"))

    def pause_writing(self) -> None:  # a request is one small write: nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # -- parser callbacks ----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key, lname = NAMES.get(name) or learn(name)
        text = value.decode("utf-8", "surrogateescape")
        if lname in _FRAMING_FIELDS and _frames_only(lname, text):
            return
        self.headers.append((key, text))
        found = self.index.get(lname)
        if found is None:
            self.index[lname] = [text]
        else:
            found.append(text)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 1xx (e.g. 103 Early Hints): the final response follows
            self.informational = True
            self.headers = []
            self.index = {}
            return
        self.status = status
        self.head_done = True
        self.direct_length = self._direct_length(status)
        self._wake()

    def _start_direct(self) -> None:
        """Read the rest of the body into one buffer, from the read after the first piece
        was handed out: a body complete in that piece needs none (the parser's one copy is
        all), and the first byte does not wait for the buffer, whose fresh pages cost about
        1 ms per MiB to fault in here. The pieces handed out so far are copied in."""
        direct = self.direct = _new_buffer(self.direct_length)
        view = self.direct_view = memoryview(direct)
        at = 0
        for piece in self.early:
            view[at:at + len(piece)] = piece
            at += len(piece)
        self.early = []
        self.filled = self.taken = at
        # known now for a declared length (llhttp_should_keep_alive reads only the head)
        self.keep_alive = self.parser.should_keep_alive()

    def _direct_length(self, status: int) -> int:
        """The length of a body to read straight into its buffer, or 0 (module docstring)."""
        index = self.index
        lengths = index.get("content-length")
        if (lengths is None or len(lengths) != 1 or "transfer-encoding" in index
                or status in (204, 304)):
            return 0
        text = lengths[0].strip()
        if not (text.isascii() and text.isdigit()):
            return 0  # the parser refuses it anyway
        length = int(text)
        return length if length <= self.pool.direct_max else 0

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)
        self.queued += len(body)
        if self.queued >= HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # valid now, not after the reset
        self._wake()

    # -- the exchange --------------------------------------------------------------------------

    def _ends_at_close(self) -> bool:
        """RFC 9112 §6.3: no Transfer-Encoding, no Content-Length: the body ends with the
        connection (a 204/304 has none, and llhttp completes those itself)."""
        return "content-length" not in self.index and "transfer-encoding" not in self.index

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        listener = self.listener
        if listener is not None:
            if self.feeding:
                self.changed = True
            else:
                listener()

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def _wait(self) -> None:
        if self.error is not None:
            raise self.error
        waiter = self.loop.create_future()
        self.waiter = waiter
        timer = self.loop.call_later(self.pool.read_timeout, self._time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(UpstreamTimeout(f"upstream {self.pool.where} timed out"))
        self.close()

    def send(self, request: bytes) -> None:
        if self.paused:  # left paused by an exchange that ended early: read this one
            self._resume()
        self._begin()
        self.used += 1
        self.active = True
        transport = self.transport
        if transport is None or transport.is_closing():
            self._fail(UpstreamDisconnected(f"upstream {self.pool.where} closed the connection"))
            return
        transport.write(request)

    async def head(self) -> LeanResponse:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()
        return LeanResponse(self.status, self.headers, self.index)

    def chunks(self) -> LeanBody:
        """The body as it arrives (pieces queued meanwhile are joined into one)."""
        return LeanBody(self)

    def next_piece(self) -> bytes | memoryview | None:
        """What arrived since the last call, joined, or a view of the direct buffer
        (``None``: nothing at hand)."""
        chunk: bytes | memoryview
        if self.direct is not None:
            if self.filled == self.taken:
                return None
            chunk = self.direct_view[self.taken:self.filled]
            self.taken = self.filled
        else:
            pieces = self.pieces
            if not pieces:
                return None
            chunk = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            self.pieces = []
            if self.direct_length and not self.complete:
                # copied into the buffer when it is made; a body complete in this piece
                # needs no buffer, and the idle connection must not hold its bytes
                self.early.append(chunk)
        self.queued = 0
        if self.paused:
            if self.first_taken:
                self._resume()
            else:  # behind the tasks this piece wakes (module docstring)
                self.loop.call_soon(self._resume)
        self.first_taken = True
        return chunk

    def whole(self) -> bytearray | None:
        """The complete body when it was read into one buffer (never written to again)."""
        return self.direct if self.complete else None

    def _resume(self) -> None:
        if self.paused and not self.lost and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.lost and self.error is None


class LeanPool:
    """Kept-alive connections to one ``host:port`` (see the module docstring)."""

    def __init__(self, host: str, port: int, *, limit: int, connect_timeout: float,
                 read_timeout: float, keepalive_timeout: float,
                 host_field: str | None = None, direct_max: int = 0,
                 direct_unasked: int = DIRECT_UNASKED) -> None:
        self.host = host
        self.port = port
        self.where = f"http://{host}:{port}"
        # the Host field, as aiohttp would send it (yarl's host_port_subcomponent: IDNA,
        # [IPv6], no default port): signatures over it (SigV4) must agree
        self.host_field = host_field or (host if port == 80 else f"{host}:{port}")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self.direct_max = direct_max
        self.direct_unasked = direct_unasked
        # one read buffer for all the pool's connections: each read is parsed before the next
        self.scratch = memoryview(bytearray(SCRATCH_SIZE))
        self.loop = asyncio.get_running_loop()
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._slots = _Slots(limit)
        self._calls: set[LeanCall] = set()  # under way, watched by ``_sweep``
        self._sweeper: asyncio.TimerHandle | None = None

    def _watch(self, call: LeanCall) -> None:
        self._calls.add(call)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.read_timeout / SWEEP_TICKS, self._sweep)

    def _sweep(self) -> None:
        """The read timeout of every ``LeanCall`` under way (see there)."""
        self._sweeper = None
        for call in list(self._calls):
            call._tick()
        if self._calls:
            self._sweeper = self.loop.call_later(self.read_timeout / SWEEP_TICKS, self._sweep)

    def _lost(self, conn: _Connection) -> None:
        self._open.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    async def _connect(self) -> _Connection:
        try:
            _transport, conn = await asyncio.wait_for(self.loop.create_connection(
                lambda: _Connection(self), self.host, self.port), self.connect_timeout)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"upstream {self.where} timed out (connect)") from exc
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot reach upstream {self.where}: {exc}") from exc
        self._open.add(conn)
        return conn

    def _reuse(self) -> _Connection | None:
        idle = self._idle
        oldest_ok = time.monotonic() - self.keepalive_timeout
        while idle:
            conn = idle.pop()
            if conn.idle_since >= oldest_ok and not conn.lost:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        conn.active = False
        if conn.reusable:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def request_bytes(self, target: str, fields: Iterable[tuple[str, str]]) -> bytes:
        lines = [f"GET {target} HTTP/1.1\r\nHost: {self.host_field}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in fields]
        lines.append("\r\n")
        text = "".join(lines)
        # no field may smuggle a line of its own, nor the target a second request line
        newlines = text.count("\n")
        if newlines != len(lines) + 1 or text.count("\r") != newlines or " " in target:
            raise UpstreamError(f"refusing to send a field or target with CR/LF/space to "
                                f"{self.where}")
        return text.encode("utf-8", "surrogateescape")

    def call_now(self, target: str, fields: Iterable[tuple[str, str]],
                 listener: Callable[[], None]) -> LeanCall | None:
        """Send ``GET target`` at once when a slot and an idle connection are at hand, and
        call ``listener`` whenever the response moved on (see ``LeanCall``); ``None`` when
        either would have to be waited for, or the request cannot be sent as it is (``get``
        then does what the caller needs, and says why)."""
        slots = self._slots
        if not slots.free or slots.waiters:
            return None
        try:
            request = self.request_bytes(target, fields)
        except UpstreamError:
            return None
        conn = self._reuse()
        if conn is None:
            return None
        conn.send(request)
        if conn.error is not None:  # closed meanwhile: ``get`` connects anew
            conn.active = False
            conn.close()
            return None
        slots.free -= 1
        return LeanCall(self, conn, listener)

    def get(self, target: str, fields: Iterable[tuple[str, str]]) -> LeanExchange:
        """Send ``GET target`` with ``fields`` (Host is added) on entering; the context
        yields the head and the body chunks. The connection goes back to the pool if the
        body was read to its end."""
        return LeanExchange(self, target, fields)

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class LeanPools:
    """One ``LeanPool`` per ``host:port``, created on first use (within the running loop)."""

    def __init__(self, *, limit: int = 256, connect_timeout: float = 5.0,
                 read_timeout: float = 60.0, keepalive_timeout: float = 30.0,
                 direct_max: int = 0, direct_unasked: int = DIRECT_UNASKED) -> None:
        self.limit = limit
        # bodies up to ``direct_max`` long are read into one buffer; above ``direct_unasked``
        # only those the consumer keeps whole (``LeanBody.keep_whole``)
        self.direct_max = direct_max
        self.direct_unasked = direct_unasked
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self._pools: dict[tuple[str, int, str | None], LeanPool] = {}

    def pool(self, host: str, port: int, host_field: str | None = None) -> LeanPool:
        key = (host, port, host_field)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = LeanPool(
                host, port, limit=self.limit, connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout, keepalive_timeout=self.keepalive_timeout,
                host_field=host_field, direct_max=self.direct_max,
                direct_unasked=self.direct_unasked)
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


class LeanCall:
    """One GET on a pooled connection read through callbacks, with no task and no future
    (``LeanPool.call_now``): ``listener`` is called once per read that moved the response
    on, and on a failure. It then looks at the connection: ``head_done`` (``status``,
    ``headers``, ``index``), ``next_piece()`` for the body, ``complete``, ``error``; and calls
    ``finish()`` when it is done with the exchange, which puts the connection back in the
    pool if the response was read to its end (closes it otherwise) and frees the slot.

    The read timeout is the pool's one timer for all its calls (``LeanPool._sweep``), not a
    timer per call (creating and cancelling one cost ~2 µs of a ~120 µs miss): a call
    through which nothing arrived for ``read_timeout`` (up to a quarter more) fails with
    ``UpstreamTimeout``."""

    __slots__ = ("conn", "idle_ticks", "listener", "pool", "progress", "seen")

    def __init__(self, pool: LeanPool, conn: _Connection, listener: Callable[[], None]) -> None:
        self.pool = pool
        self.conn = conn
        self.listener = listener
        self.progress = 0
        self.seen = 0
        self.idle_ticks = 0
        conn.listener = self._changed
        pool._watch(self)

    def _changed(self) -> None:
        self.progress += 1
        self.listener()

    def _tick(self) -> None:
        """One of the pool's ticks (``SWEEP_TICKS`` per ``read_timeout``)."""
        if self.progress != self.seen:
            self.seen = self.progress
            self.idle_ticks = 0
            return
        self.idle_ticks += 1
        if self.idle_ticks > SWEEP_TICKS:  # the first tick may come at once: one more
            conn = self.conn
            conn._fail(UpstreamTimeout(f"upstream {self.pool.where} timed out"))
            conn.close()

    def whole(self) -> bytearray | None:
        """The complete body when it was read into one buffer (``_Connection.whole``)."""
        return self.conn.whole()

    def keep_whole(self) -> None:
        """As ``LeanBody.keep_whole``: before the first piece is taken."""
        self.conn.whole_wanted = True

    def finish(self) -> None:
        """The exchange is over for the caller (once; see the class docstring)."""
        conn = self.conn
        if conn.listener is None:
            return
        conn.listener = None
        pool = self.pool
        pool._calls.discard(self)
        pool._release(conn)  # reused only if read to its end
        pool._slots.release()


class LeanBody:
    """A response body as it arrives (``_Connection.chunks``): a plain async iterator, not
    an async generator, which the event loop would register and finalise per response."""

    __slots__ = ("conn",)

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def __aiter__(self) -> LeanBody:
        return self

    def whole(self) -> bytearray | None:
        """The complete body, once read to its end, when it was read into one buffer."""
        return self.conn.whole()

    def keep_whole(self) -> None:
        """Say, before taking the first piece, that the whole body will be kept: a body
        longer than ``direct_unasked`` (up to ``direct_max``) is then read into one buffer
        too, which ``whole()`` returns (module docstring)."""
        self.conn.whole_wanted = True

    async def __anext__(self) -> bytes | memoryview:
        conn = self.conn
        while True:
            chunk = conn.next_piece()
            if chunk is not None:
                return chunk
            if conn.complete:
                raise StopAsyncIteration
            if conn.error is not None:
                raise conn.error
            await conn._wait()


class LeanExchange:
    """One GET on a pooled connection (``LeanPool.get``), as a class rather than an
    ``asynccontextmanager``: a cache miss passes through it once, and the generator-based
    form costs an async generator, its registration with the loop and a wrapper object."""

    __slots__ = ("conn", "fields", "pool", "target")

    def __init__(self, pool: LeanPool, target: str, fields: Iterable[tuple[str, str]]) -> None:
        self.pool = pool
        self.target = target
        self.fields = fields
        self.conn: _Connection | None = None

    async def __aenter__(self) -> tuple[LeanResponse, LeanBody]:
        pool = self.pool
        request = pool.request_bytes(self.target, self.fields)
        slots = pool._slots
        if slots.free and not slots.waiters:
            slots.free -= 1
        else:
            await slots.wait()
        try:
            conn = pool._reuse()
            reused = conn is not None
            if conn is None:
                conn = await pool._connect()
            self.conn = conn
            conn.send(request)
            try:
                head = await conn.head()
            except UpstreamDisconnected:
                if not reused or conn.received:
                    raise
                # the upstream closed the idle connection as we reused it: once more
                conn = self.conn = await pool._connect()
                conn.send(request)
                head = await conn.head()
        except BaseException:
            if self.conn is not None:
                self.conn.close()
            pool._slots.release()
            raise
        return head, conn.chunks()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        conn = self.conn
        assert conn is not None
        try:
            if exc_type is not None:
                conn.close()
            else:
                self.pool._release(conn)
        finally:
            self.pool._slots.release()
