"""The storage node's protocol-level front: batch requests answered without aiohttp.

A small PUT or GET at the origin costs each node it touches one batch request
(``POST /fragments/batch`` or ``POST /fragments/read``, framed by ``origin.batch_wire``), and
aiohttp's request and response objects cost more CPU than the node's own work on a batch of
a few 700-byte fragments. So every connection starts with ``FrontProtocol``, which reads
requests with a deliberately narrow parser and answers exactly those two endpoints itself,
through the same functions the aiohttp handlers call (``storagenode.batches``), so what is
stored, verified and answered does not depend on which server parsed the request.

What it answers: ``POST {path} HTTP/1.1`` with one decimal ``Content-Length`` no larger than
``max_fragment_bytes``, no ``Transfer-Encoding``, ``Expect`` or ``Upgrade``, no obsolete line
folding, a head of at most ``MAX_HEAD_BYTES``. Pipelined requests are answered in order.
``Connection: close`` is honoured after its answer.

Everything else (any other path or method, HTTP/1.0, chunked bodies, oversized batches, a
head it cannot split into lines) *hands the connection over* to aiohttp from the first byte
of that request on, once the answers to the requests before it have been written: an
aiohttp ``RequestHandler`` (from the runner's ``web.Server``, so shutdown and limits stay
aiohttp's) becomes the transport's protocol and is fed the raw bytes. aiohttp then answers
it as it always did (404, 413, 400 …) and keeps the connection. Health probes, metrics and
the workers' JSON calls take that path; the origin's batch lanes never leave the front.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from origin.storagenode.batches import Answer
from origin.storagenode.metrics import NodeMetrics

log = logging.getLogger("cdn.origin.storagenode.front")

MAX_HEAD_BYTES = 8192
BatchHandler = Callable[[bytes], Awaitable[Answer]]

_REASONS = {200: b"OK", 400: b"Bad Request", 500: b"Internal Server Error",
            507: b"Insufficient Storage"}
_REFUSED_FIELDS = frozenset({b"transfer-encoding", b"expect", b"upgrade"})


def parse_head(head: bytes, routes: frozenset[bytes]) -> tuple[bytes, int, bool] | None:
    """``(path, content length, close after answering)`` of a request head (without its
    final CRLF CRLF) that the front answers itself; ``None`` for anything it hands over."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"POST" or parts[2] != b"HTTP/1.1" \
            or parts[1] not in routes:
        return None
    length: int | None = None
    close = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
            return None  # malformed or folded: aiohttp's parser decides what it means
        name = name.lower()
        value = value.strip()
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name in _REFUSED_FIELDS:
            return None
        elif name == b"connection":
            close = b"close" in value.lower()
    if length is None:
        return None
    return parts[1], length, close


def serialise(answer: Answer, close: bool) -> bytes:
    head = [b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        answer.status, _REASONS.get(answer.status, b"Error"), answer.content_type.encode(),
        len(answer.body))]
    if answer.error_kind:
        head.append(b"X-Fragment-Error: %s\r\n" % answer.error_kind.encode())
    if close:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    head.append(answer.body)
    return b"".join(head)


class NodeFront:
    """The protocol factory of the node's listening socket, and what its connections share.

    ``handlers``: path → coroutine function answering a batch body; ``app_server``: makes
    the aiohttp protocol a connection is handed over to."""

    def __init__(self, handlers: dict[bytes, BatchHandler], app_server: Callable[[],
                 asyncio.Protocol], *, max_body: int, metrics: NodeMetrics) -> None:
        self.handlers = handlers
        self.routes = frozenset(handlers)
        self.app_server = app_server
        self.max_body = max_body
        self.metrics = metrics
        self.connections: set[FrontProtocol] = set()
        self.served_here = metrics.front_connections.labels(served_by="front")
        self.handed_over = metrics.front_connections.labels(served_by="aiohttp")

    def __call__(self) -> FrontProtocol:
        return FrontProtocol(self)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            conn.close()


class FrontProtocol(asyncio.Protocol):
    """One connection until it is handed over to aiohttp (see the module docstring)."""

    def __init__(self, front: NodeFront) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        # Answers in request order; a task until its answer is ready.
        self.pending: deque[asyncio.Task[bytes]] = deque()
        self.reading_paused = False
        self.write_paused = False
        self.hand_over_pending = False  # the next request is aiohttp's, after the answers
        self.close_after = False  # a request asked for Connection: close
        self.closed = False
        self.counted = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.front.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        # Answers still being worked out are left to finish (a store is durable or not
        # regardless of who listens); they are just not written.
        self.closed = True
        self.front.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._parse()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.hand_over_pending and not self.close_after and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
            self._parse()

    # -- requests --------------------------------------------------------------------------------

    def _parse(self) -> None:
        front = self.front
        while not (self.hand_over_pending or self.close_after or self.write_paused
                   or self.closed):
            buf = self.buffer
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    self._hand_over_after_answers()
                return
            parsed = parse_head(bytes(buf[:end]), front.routes) if end <= MAX_HEAD_BYTES \
                else None
            if parsed is None or parsed[1] > front.max_body:
                self._hand_over_after_answers()
                return
            path, length, close = parsed
            total = end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[end + 4:total])
            del buf[:total]
            if not self.counted:
                self.counted = True
                front.served_here.inc()
            task = asyncio.get_running_loop().create_task(self._answer(path, body, close))
            self.pending.append(task)
            task.add_done_callback(self._answered)
            if close:
                self.close_after = True
                self._pause_reading()

    async def _answer(self, path: bytes, body: bytes, close: bool) -> bytes:
        try:
            answer = await self.front.handlers[path](body)
        except Exception:  # noqa: BLE001 - answered 500 and the connection closed, as aiohttp
            log.exception("batch request %s failed", path.decode(errors="replace"))
            self.close_after = True
            return serialise(Answer(500, b"500 Internal Server Error"), True)
        return serialise(answer, close)

    def _answered(self, _task: asyncio.Task[bytes]) -> None:
        out: list[bytes] = []
        while self.pending and self.pending[0].done():
            task = self.pending.popleft()
            if not task.cancelled():
                out.append(task.result())
        if out and not self.closed and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self.pending or self.closed:
            return
        if self.close_after:
            self.close()
        elif self.hand_over_pending:
            self._hand_over()

    # -- hand-over and closing -----------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def _hand_over_after_answers(self) -> None:
        self.hand_over_pending = True
        if self.pending:
            self._pause_reading()
        else:
            self._hand_over()

    def _hand_over(self) -> None:
        """From now on the connection is aiohttp's; the buffer starts with its request."""
        transport = self.transport
        if transport is None or self.closed:
            return
        self.closed = True
        self.front.connections.discard(self)
        if not self.counted:
            self.counted = True
            self.front.handed_over.inc()
        raw, self.buffer = bytes(self.buffer), bytearray()
        handler = self.front.app_server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.write_paused:
            handler.pause_writing()
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        if raw:
            handler.data_received(raw)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.front.connections.discard(self)
            self.transport.close()
