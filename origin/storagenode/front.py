"""The storage node's protocol-level front: batch requests answered without aiohttp.

A small PUT or GET at the origin costs each node it touches one batch request
(``POST /fragments/batch`` or ``POST /fragments/read``, framed by ``origin.batch_wire``), and
aiohttp's request and response objects cost more CPU than the node's own work on a batch of
a few 700-byte fragments. So every connection starts with ``FrontProtocol``, which parses
requests with httptools (llhttp, the parser inside aiohttp and uvicorn) and answers exactly
those two endpoints itself, through the same functions the aiohttp handlers call
(``storagenode.batches``), so what is stored, verified and answered does not depend on which
server parsed the request.

What it answers: ``POST {path} HTTP/1.1`` with one ``Content-Length`` no larger than
``max_fragment_bytes``, no ``Transfer-Encoding``, ``Expect`` or ``Upgrade``, a head of at
most ``MAX_HEAD_BYTES``; llhttp decides whether the head is well formed (CRLF line ends, no
obsolete line folding, a decimal length). Pipelined requests are answered in order.
``Connection: close`` (llhttp's ``should_keep_alive``) is honoured after its answer.

Everything else (any other path or method, HTTP/1.0, chunked bodies, oversized batches, a
head llhttp rejects) *hands the connection over* to aiohttp from the first byte of that
request on, once the answers to the requests before it have been written: an aiohttp
``RequestHandler`` (from the runner's ``web.Server``, so shutdown and limits stay aiohttp's)
becomes the transport's protocol and is fed the raw bytes. aiohttp then answers it as it
always did (404, 413, 400 …) and keeps the connection. Health probes, metrics and the
workers' JSON calls take that path; the origin's batch lanes never leave the front.

To hand over raw bytes the front must know where each request began, and llhttp does not
say where in the bytes fed a message ended. So, as ``httpcache.fast_server`` does, the bytes
are fed in pieces that each end where a request's head ends (just after the first
``CRLF CRLF``, found with ``bytes.find``; llhttp requires CRLF line ends, so its head cannot
end elsewhere) or where its body ends (the ``Content-Length`` accepted at the end of the
head): a request completes only at the end of a piece. The bytes of a head still incomplete
are kept (``partial``); a body, once its head is accepted, is only ever answered here.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import httptools

from cdn.request_heads import head_piece
from origin.storagenode.batches import Answer
from origin.storagenode.metrics import NodeMetrics

log = logging.getLogger("cdn.origin.storagenode.front")

MAX_HEAD_BYTES = 8192
BatchHandler = Callable[[bytes], Awaitable[Answer]]
# A handler's answer when it can be had without a task: at once, as a future resolved by a
# callback, or ``None`` for the awaitable handler to answer.
QuickHandler = Callable[[bytes], "Answer | asyncio.Future[Answer] | None"]

_REASONS = {200: b"OK", 400: b"Bad Request", 500: b"Internal Server Error",
            507: b"Insufficient Storage"}
_REFUSED_FIELDS = frozenset({b"transfer-encoding", b"expect", b"upgrade"})


class _HandOver(Exception):
    """Raised in a parser callback: the request being parsed is aiohttp's."""


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

    ``handlers``: path → coroutine function answering a batch body; ``quick``: path → a
    function that answers at once when it can (a read whose fragments are all in the page
    cache: no task, no extra turn of the loop per request) or returns ``None`` for the
    coroutine to answer; ``app_server``: makes the aiohttp protocol a connection is handed
    over to."""

    def __init__(self, handlers: dict[bytes, BatchHandler], app_server: Callable[[],
                 asyncio.Protocol], *, max_body: int, metrics: NodeMetrics,
                 quick: dict[bytes, QuickHandler] | None = None) -> None:
        self.handlers = handlers
        self.quick = quick or {}
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
        self.parser = httptools.HttpRequestParser(self)
        self.partial = b""  # the bytes of an unfinished head, from its request's first byte
        self.held = b""  # bytes not fed to the parser (writes paused, or aiohttp's from here)
        self.head_fits = False  # the piece being fed ends the head, within MAX_HEAD_BYTES
        self.remaining = 0  # body bytes still to come of the request being read
        # the request being read: its path, Content-Length, Connection: close, body so far
        self.url = b""
        self.length: bytes | None = None
        self.refused = False  # a field the front leaves to aiohttp, or a repeated length
        self.request: tuple[bytes, bool] | None = None  # (path, close) once its head passed
        self.body: list[bytes] = []
        self.complete = False  # a request's last byte was in the piece just fed
        # Answers in request order; a task or future until its answer is ready.
        self.pending: deque[asyncio.Future[bytes]] = deque()
        self.reading_paused = False
        self.write_paused = False
        self.hand_over_pending = False  # ``held`` is aiohttp's, after the answers
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
        if self.closed or self.close_after:
            return  # after Connection: close (or a 500) nothing more is read
        if self.hand_over_pending or self.write_paused:
            self.held += data
            return
        self._feed(data)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.hand_over_pending and not self.close_after and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
            held, self.held = self.held, b""
            if held:
                self._feed(held)

    # -- requests --------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Feed ``data`` to the parser in pieces that each end where a request's head or
        body ends, so the first byte of every request is known (see the module docstring)."""
        parser = self.parser
        n = len(data)
        view = memoryview(data)
        pos = 0
        while pos < n:
            if self.remaining:  # the body of a request whose head was accepted
                stop = min(n, pos + self.remaining)
                self.remaining -= stop - pos
            else:  # a head, or the rest of one
                stop, ends = head_piece(data, pos, self.partial)
                self.head_fits = ends and len(self.partial) + stop - pos <= MAX_HEAD_BYTES
            try:
                parser.feed_data(data if stop == n and pos == 0 else view[pos:stop])
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                # refused in on_headers_complete, or not HTTP/1.1 as llhttp reads it:
                # aiohttp answers it (400 for what it cannot parse either)
                if not self.refused and isinstance(exc, httptools.HttpParserCallbackError):
                    log.exception("parser callback failed; handing over to aiohttp")
                self._hand_over_after_answers(self.partial + data[pos:])
                return
            if self.request is None:  # the head is not complete yet
                self.partial += data[pos:stop]
                if len(self.partial) > MAX_HEAD_BYTES:
                    self._hand_over_after_answers(self.partial)
                    return
            else:
                self.partial = b""
            pos = stop
            if self.complete:
                self._start_answer()
                if self.close_after:
                    self._pause_reading()  # what follows is never read
                    return

    def _start_answer(self) -> None:
        assert self.request is not None
        path, close = self.request
        body = self.body
        self.request = None
        self.complete = False
        front = self.front
        if not self.counted:
            self.counted = True
            front.served_here.inc()
        data = body[0] if len(body) == 1 else b"".join(body)
        quick = front.quick.get(path)
        if quick is not None and not self.pending:  # nothing answered before it is waiting
            if self._answer_now(quick, path, data, close):
                return
        task = asyncio.get_running_loop().create_task(self._answer(path, data, close))
        self.pending.append(task)
        task.add_done_callback(self._answered)
        if close:
            self.close_after = True

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.length = None
        self.refused = False
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self.refused |= self.length is not None  # llhttp refuses this too
            self.length = value
        elif name in _REFUSED_FIELDS:
            self.refused = True

    def on_headers_complete(self) -> None:
        """Accept a ``POST {route} HTTP/1.1`` with a ``Content-Length`` the front can take
        and nothing it leaves to aiohttp; anything else is handed over from its first byte."""
        parser = self.parser
        raw = self.length
        if (self.refused or raw is None or not self.head_fits or self.url not in self.front.routes
                or parser.get_method() != b"POST" or parser.get_http_version() != "1.1"):
            self.refused = True
            raise _HandOver
        length = int(raw)  # llhttp has checked that it is decimal digits
        if length > self.front.max_body:
            self.refused = True
            raise _HandOver  # aiohttp answers 413 without reading the body
        self.remaining = length
        self.request = (self.url, not parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # -- answers -------------------------------------------------------------------------------

    def _answer_now(self, quick: QuickHandler, path: bytes, body: bytes, close: bool) -> bool:
        """Write the answer ``quick`` gives at once, or queue its future (written by the
        callback that resolves it, in request order); False when it has neither."""
        try:
            answer = quick(body)
        except Exception:  # noqa: BLE001 - answered 500 and the connection closed, as aiohttp
            log.exception("batch request %s failed", path.decode(errors="replace"))
            answer, close = Answer(500, b"500 Internal Server Error"), True
        if answer is None:
            return False
        if isinstance(answer, asyncio.Future):
            self._queue_future(answer, path, close)
            return True
        if not self.closed and self.transport is not None:
            self.transport.write(serialise(answer, close))
        if close:
            self.close_after = True
            self.close()
        return True

    def _queue_future(self, answer: asyncio.Future[Answer], path: bytes, close: bool) -> None:
        out: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending.append(out)
        if close:
            self.close_after = True

        def ready(done: asyncio.Future[Answer]) -> None:
            if done.cancelled():
                out.cancel()
            elif (exc := done.exception()) is not None:
                log.error("batch request %s failed", path.decode(errors="replace"),
                          exc_info=exc)
                self.close_after = True  # answered 500 and closed, as _answer does
                out.set_result(serialise(Answer(500, b"500 Internal Server Error"), True))
            else:
                out.set_result(serialise(done.result(), close))
            self._answered(out)  # written now if it is next in line (no extra loop turn)

        answer.add_done_callback(ready)

    async def _answer(self, path: bytes, body: bytes, close: bool) -> bytes:
        try:
            answer = await self.front.handlers[path](body)
        except Exception:  # noqa: BLE001 - answered 500 and the connection closed, as aiohttp
            log.exception("batch request %s failed", path.decode(errors="replace"))
            self.close_after = True
            return serialise(Answer(500, b"500 Internal Server Error"), True)
        return serialise(answer, close)

    def _answered(self, _done: asyncio.Future[bytes]) -> None:
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

    def _hand_over_after_answers(self, raw: bytes) -> None:
        """``raw``, from the first byte of a request on, is aiohttp's once the answers to
        the requests before it are written."""
        self.partial = b""
        self.held = raw
        self.hand_over_pending = True
        if self.pending:
            self._pause_reading()
        else:
            self._hand_over()

    def _hand_over(self) -> None:
        """From now on the connection is aiohttp's; ``held`` starts with its request."""
        transport = self.transport
        if transport is None or self.closed:
            return
        self.closed = True
        self.front.connections.discard(self)
        if not self.counted:
            self.counted = True
            self.front.handed_over.inc()
        raw, self.held = self.held, b""
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
