"""Keep-alive HTTP/1.1 connections for the origin's batch requests to storage nodes.

Every small PUT or GET sends about one batch request (``POST /fragments/batch`` or
``/fragments/read``) per node it touches, so the client's per-request cost counts as much as
the node's. aiohttp's ``ClientSession`` builds a request object, a response object, a
connector lease and a timer context per request; this client writes one head and the body
buffers with one ``writelines`` and parses the answer's head itself, on connections it keeps
per node. It speaks ordinary HTTP/1.1, so a node served by plain aiohttp (tests run the node
application in-process) answers it the same way as the node's protocol-level front.

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
from collections.abc import Sequence

MAX_HEAD_BYTES = 16384
_IDLE_PER_NODE = 8


class BadAnswer(ValueError):
    """The node's answer is not an HTTP/1.1 response framed by Content-Length."""


class _Stale(ConnectionResetError):
    """A reused connection was closed before any byte of the answer arrived."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
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
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if not self.buffer and self.body_start < 0:
                waiter.set_exception(_Stale("connection closed by the node before an answer"))
            else:
                waiter.set_exception(ConnectionResetError(
                    f"connection closed during the answer: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self.buffer += data
        try:
            self._advance()
        except BadAnswer as exc:
            self.waiter.set_exception(exc)
            self.close()

    # -- one exchange --------------------------------------------------------------------------

    def send(self, head: bytes, body: Sequence[bytes | memoryview]
             ) -> asyncio.Future[tuple[int, bytes, bool]]:
        """Write one request; the future of ``(status, body, keep-alive)``."""
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.writelines([head, *body])
        return self.waiter

    def done_with_exchange(self) -> None:
        self.waiter = None
        self._reset_answer()

    def _advance(self) -> None:
        buf = self.buffer
        if self.body_start < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise BadAnswer(f"answer head longer than {MAX_HEAD_BYTES} bytes")
                return
            self._parse_head(bytes(buf[:end]))
            self.body_start = end + 4
        stop = self.body_start + self.length
        if len(buf) < stop:
            return
        if len(buf) > stop:
            raise BadAnswer(f"{len(buf) - stop} bytes after the answer")
        body = bytes(buf[self.body_start:stop])
        buf.clear()
        assert self.waiter is not None
        self.waiter.set_result((self.status, body, self.keep_alive))

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


class BatchConnections:
    """Idle keep-alive connections per ``(host, port)``, at most ``_IDLE_PER_NODE`` each."""

    def __init__(self, *, connect_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._busy: set[_Connection] = set()

    async def post(self, host: str, port: int, path: str,
                   body: Sequence[bytes | memoryview], timeout: float,  # noqa: ASYNC109
                   ) -> tuple[int, bytes]:
        """``POST path`` with the concatenation of ``body``; ``(status, answer body)``."""
        length = sum(len(b) for b in body)
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
                ).encode()
        deadline = asyncio.get_running_loop().time() + timeout
        conn = self._take_idle((host, port))
        if conn is not None:
            try:
                return await self._exchange((host, port), conn, head, body, deadline)
            except _Stale:
                pass  # dropped while idle: once more on a new connection
        async with asyncio.timeout_at(deadline):
            conn = await self._connect(host, port)
        return await self._exchange((host, port), conn, head, body, deadline)

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        for conn in list(self._busy):
            conn.abort()

    def _take_idle(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _transport, conn = await loop.create_connection(_Connection, host, port)
        return conn

    async def _exchange(self, key: tuple[str, int], conn: _Connection, head: bytes,
                        body: Sequence[bytes | memoryview], deadline: float,
                        ) -> tuple[int, bytes]:
        self._busy.add(conn)
        waiter = conn.send(head, body)
        # A timer handle rather than ``asyncio.timeout``: one per batch, on every small op.
        timer = asyncio.get_running_loop().call_at(deadline, _expire, waiter)
        try:
            status, answer, keep_alive = await waiter
        except BaseException:
            conn.abort()  # failed, timed out or cancelled mid-exchange: never reused
            raise
        finally:
            timer.cancel()
            self._busy.discard(conn)
        conn.done_with_exchange()
        idle = self._idle.setdefault(key, deque())
        if keep_alive and not conn.lost and len(idle) < _IDLE_PER_NODE:
            idle.append(conn)
        else:
            with contextlib.suppress(Exception):
                conn.close()
        return status, answer


def _expire(waiter: asyncio.Future[tuple[int, bytes, bool]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no answer from the node in time"))
