"""Keep-alive HTTP/1.1 connections for the origin's batch requests to storage nodes.

Every small PUT or GET sends about one batch request (``POST /fragments/batch`` or
``/fragments/read``) per node it touches, so the client's per-request cost counts as much as
the node's. aiohttp's ``ClientSession`` builds a request object, a response object, a
connector lease and a timer context per request; this client writes one head and the body
buffers with one ``writelines`` and parses the answer's head itself, on connections it keeps
per node. It speaks ordinary HTTP/1.1, so a node served by plain aiohttp (tests run the node
application in-process) answers it the same way as the node's protocol-level front.

An exchange is driven by callbacks (``BatchConnections.start``): the answer is parsed in the
connection's ``data_received`` and handed to the caller's ``on_done`` right there, with no
task and no coroutine frames in between; only opening a new connection takes a task. At
8 clients a 4 KiB GET makes about four batch requests, so that machinery was a large part of
the origin's cost per operation. ``post`` is the same exchange as a coroutine.

One exchange at a time per connection (no pipelining): the coalescer keeps at most
``node_batch_inflight`` batches in flight per node and direction, and each takes a connection
of its own. An answer must carry ``Content-Length`` (both node servers always send it);
anything else is refused as a malformed answer (``BadAnswer``, a ``ValueError``). Timeouts,
refused connections and resets surface as ``TimeoutError`` and ``OSError`` for the caller to
map. A connection whose exchange failed or was cancelled is closed, never reused. When a
*reused* connection turns out to have been closed by the node before any byte of the answer
came back (an idle connection the node dropped), the request is sent once more on a new
connection: for a read that is harmless, for a store it can at worst leave one more orphan
record (unreferenced bytes the garbage collector reclaims), never a wrong answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence

MAX_HEAD_BYTES = 16384
_IDLE_PER_NODE = 8
# The head of every successful batch answer of the node front (``storagenode.front``) up to
# its length: recognised whole, it needs no line-by-line parse (one per batch request).
_PLAIN_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: "
_PLAIN_OK_LEN = len(_PLAIN_OK)

# ``(status, answer body)`` or the exception the exchange failed with; called exactly once.
Outcome = tuple[int, bytes] | BaseException
OnDone = Callable[[Outcome], None]


class BadAnswer(ValueError):
    """The node's answer is not an HTTP/1.1 response framed by Content-Length."""


class _Stale(ConnectionResetError):
    """A reused connection was closed before any byte of the answer arrived."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        # the exchange in progress: called once with its outcome (see ``_settle``)
        self.on_answer: Callable[[Outcome, bool], None] | None = None
        self.lost = False
        self._reset_answer()

    def _reset_answer(self) -> None:
        self.status = 0
        self.body_start = -1
        self.length = 0
        self.keep_alive = True

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.on_answer is not None:
            if not self.buffer and self.body_start < 0:
                self._settle(_Stale("connection closed by the node before an answer"))
            else:
                self._settle(ConnectionResetError(
                    f"connection closed during the answer: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        if self.on_answer is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self.buffer += data
        try:
            self._advance()
        except BadAnswer as exc:
            self.close()
            self._settle(exc)

    # -- one exchange --------------------------------------------------------------------------

    def send(self, head: bytes, body: Sequence[bytes | memoryview],
             on_answer: Callable[[Outcome, bool], None]) -> None:
        """Write one request; ``on_answer(outcome, keep_alive)`` is called once."""
        assert self.transport is not None and self.on_answer is None
        self.on_answer = on_answer
        self.transport.writelines([head, *body])

    def fail(self, exc: BaseException) -> None:
        """End the exchange in progress with ``exc`` (timeout, cancellation); the connection
        is aborted, never reused."""
        self.abort()
        if self.on_answer is not None:
            self._settle(exc)

    def _settle(self, outcome: Outcome) -> None:
        on_answer, self.on_answer = self.on_answer, None
        keep_alive = self.keep_alive
        self._reset_answer()
        self.buffer.clear()
        if on_answer is not None:
            on_answer(outcome, keep_alive)

    def _advance(self) -> None:
        buf = self.buffer
        if self.body_start < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise BadAnswer(f"answer head longer than {MAX_HEAD_BYTES} bytes")
                return
            digits = buf[_PLAIN_OK_LEN:end]
            if buf.startswith(_PLAIN_OK) and digits.isdigit():
                self.status, self.length = 200, int(digits)  # what the node front sends
            else:
                self._parse_head(bytes(buf[:end]))
            self.body_start = end + 4
        stop = self.body_start + self.length
        if len(buf) < stop:
            return
        if len(buf) > stop:
            raise BadAnswer(f"{len(buf) - stop} bytes after the answer")
        body = bytes(buf[self.body_start:stop])
        self._settle((self.status, body))

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _sp, rest = lines[0].partition(b" ")
        code = rest[:3]
        if version != b"HTTP/1.1" or not code.isdigit():
            raise BadAnswer(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        self.status = int(code)
        length: int | None = None
        for line in lines[1:]:
            name, _colon, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                value = value.strip()
                if length is not None or not value.isdigit():
                    raise BadAnswer(f"bad Content-Length {value[:40]!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                raise BadAnswer("chunked answers are not expected from a storage node")
            elif name == b"connection" and b"close" in value.lower():
                self.keep_alive = False
        if length is None:
            raise BadAnswer("answer without Content-Length")
        self.length = length

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


class _Exchange:
    """One request until its ``on_done`` was called: which connection it is on, its timer,
    and whether it may still be retried on a new connection."""

    __slots__ = ("owner", "key", "head", "body", "deadline", "on_done", "conn", "timer",
                 "reused", "done")

    def __init__(self, owner: BatchConnections, key: tuple[str, int], head: bytes,
                 body: Sequence[bytes | memoryview], deadline: float, on_done: OnDone) -> None:
        self.owner = owner
        self.key = key
        self.head = head
        self.body = body
        self.deadline = deadline
        self.on_done = on_done
        self.conn: _Connection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.reused = False
        self.done = False

    def send_on(self, conn: _Connection, reused: bool) -> None:
        self.conn = conn
        self.reused = reused
        self.owner._busy.add(conn)
        conn.send(self.head, self.body, self.answered)

    def answered(self, outcome: Outcome, keep_alive: bool) -> None:
        conn = self.conn
        assert conn is not None
        owner = self.owner
        owner._busy.discard(conn)
        self.conn = None
        if isinstance(outcome, BaseException):
            conn.abort()  # failed, timed out or cancelled mid-exchange: never reused
            if isinstance(outcome, _Stale) and self.reused and not self.done:
                owner._connect_then_send(self)  # dropped while idle: once more, new connection
                return
            self.finish(outcome)
            return
        idle = owner._idle.setdefault(self.key, deque())
        if keep_alive and not conn.lost and len(idle) < _IDLE_PER_NODE:
            idle.append(conn)
        else:
            with contextlib.suppress(Exception):
                conn.close()
        self.finish(outcome)

    def expire(self) -> None:
        self.timer = None
        self.cancel(TimeoutError("no answer from the node in time"))

    def cancel(self, exc: BaseException) -> None:
        """End the exchange now with ``exc`` (its connection, if any, is aborted)."""
        if self.done:
            return
        if self.conn is not None:
            self.conn.fail(exc)  # -> answered(exc) -> finish
        else:
            self.finish(exc)

    def finish(self, outcome: Outcome) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.owner._exchanges.discard(self)
        self.on_done(outcome)


class BatchConnections:
    """Idle keep-alive connections per ``(host, port)``, at most ``_IDLE_PER_NODE`` each."""

    def __init__(self, *, connect_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._exchanges: set[_Exchange] = set()
        self._connecting: set[asyncio.Task[None]] = set()

    def start(self, host: str, port: int, path: str, body: Sequence[bytes | memoryview],
              timeout: float, on_done: OnDone) -> _Exchange:
        """``POST path`` with the concatenation of ``body``; ``on_done`` gets ``(status,
        answer body)`` or the exception, exactly once and never before this returns. The
        exchange returned can be cancelled (``cancel``; its connection is then aborted)."""
        length = sum(map(len, body))
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
                ).encode()
        loop = asyncio.get_running_loop()
        key = (host, port)
        exchange = _Exchange(self, key, head, body, loop.time() + timeout, on_done)
        self._exchanges.add(exchange)
        # A timer handle rather than ``asyncio.timeout``: one per batch, on every small op.
        exchange.timer = loop.call_at(exchange.deadline, exchange.expire)
        conn = self._take_idle(key)
        if conn is not None:
            exchange.send_on(conn, reused=True)
        else:
            self._connect_then_send(exchange)
        return exchange

    async def post(self, host: str, port: int, path: str,
                   body: Sequence[bytes | memoryview], timeout: float,  # noqa: ASYNC109
                   ) -> tuple[int, bytes]:
        """``start`` as a coroutine: ``(status, answer body)``, or raises what it failed
        with; cancelling it aborts the exchange."""
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()

        def done(outcome: Outcome) -> None:
            if future.done():
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        exchange = self.start(host, port, path, body, timeout, done)
        try:
            return await future
        except asyncio.CancelledError:
            exchange.cancel(asyncio.CancelledError())
            raise

    def close(self) -> None:
        """Close idle connections; fail every exchange in flight (``CancelledError``)."""
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        for task in list(self._connecting):
            task.cancel()
        for exchange in list(self._exchanges):
            exchange.cancel(asyncio.CancelledError())
        for conn in list(self._busy):
            conn.abort()

    def _take_idle(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def _connect_then_send(self, exchange: _Exchange) -> None:
        task = asyncio.get_running_loop().create_task(self._connect_and_send(exchange))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect_and_send(self, exchange: _Exchange) -> None:
        host, port = exchange.key
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(min(exchange.deadline,
                                              loop.time() + self._connect_timeout)):
                _transport, conn = await loop.create_connection(_Connection, host, port)
        except asyncio.CancelledError:
            exchange.cancel(asyncio.CancelledError())
            raise
        except Exception as exc:  # noqa: BLE001 - the exchange's outcome
            exchange.finish(exc)
            return
        if exchange.done:  # timed out or cancelled while connecting
            conn.close()
            return
        exchange.send_on(conn, reused=False)
