"""The origin's protocol-level front: plain object GETs and PUTs answered without aiohttp's
request and response machinery.

A 4 KiB GET cost the origin ≈ 0.45 ms of CPU, and a good part of it was aiohttp building a
request (URL object, router match, middleware chain) and serialising a response, around work
of our own that is smaller. So, as ``origin.storagenode.front`` does for the nodes' batch
endpoints and ``httpcache.fast_server`` for cache hits, every connection starts with
``FrontProtocol``: requests are parsed with httptools (llhttp, the parser inside aiohttp and
uvicorn), and the plain ones are run through the *same* middleware and handlers aiohttp runs
(``origin.api.front_request``), only without aiohttp around them.

What it answers: ``GET`` or ``PUT`` of ``/{bucket}/{key}`` over HTTP/1.1, with no query
string, no ``Transfer-Encoding``, ``Expect`` or ``Upgrade``, a GET without a body and a PUT
with one ``Content-Length`` of at most ``max_body`` (the body is read whole before the handler
runs), a head of at most ``MAX_HEAD_BYTES``; llhttp decides whether the head is well formed.
SigV4, bucket checks, conditionals, Range, checksums, errors (S3 XML) and metrics are the
handlers' as always. The answer carries what aiohttp would add (``Date``, ``Server``,
``Content-Length``, a default ``Content-Type``, ``x-amz-request-id``, ``Connection: close``
when the client asked for it).

Everything else (HEAD, DELETE, POST, bucket and service requests, queries, chunked or large
bodies, HTTP/1.0, a head llhttp rejects) *hands the connection over* to aiohttp from the
first byte of that request on: an aiohttp ``RequestHandler`` made by the runner's server
becomes the transport's protocol and is fed the raw bytes; it keeps the connection. A GET
whose answer must be streamed (an object of more than one segment, an empty one) is handed
over the same way after the handler found so (``StreamingNeeded``), and aiohttp answers it
from the start.

One request at a time: bytes that arrive while a request is being answered are held (and
reading paused if they pile up), so a request that is handed over is always the last one the
front read, and the bytes after it are still raw. To know where each request begins, bytes
are fed to llhttp in pieces that end where a head ends (the first ``CRLF CRLF``; llhttp
requires CRLF line ends) or where the body announced by the head ends, as the node front
does. A connection that starts no request for ``keepalive_timeout`` seconds (aiohttp's
default) is closed within twice that (one timer per connection, not one per request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

import httptools
from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDict, CIMultiDictProxy

from cdn.request_heads import head_piece
from origin.api.front_request import FrontRequest, StreamingNeeded
from origin.api.keys import REQUEST_ID
from origin.api.middleware import error_response, s3_middleware
from origin.api.objects import get_object, put_object
from origin.errors import InternalError

log = logging.getLogger("cdn.origin.api.front")

MAX_HEAD_BYTES = 16384
# aiohttp's own limits on one field and on the request line (max_field_size, max_line_size):
# longer ones are handed over so aiohttp refuses them as it always has.
MAX_FIELD_BYTES = 8190
MAX_HELD_BYTES = 1 << 20  # read no further while this much waits behind the current request
KEEPALIVE_TIMEOUT = 75.0  # aiohttp's default

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REFUSED_FIELDS = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
_NO_BODY_STATUS = frozenset({204, 304})  # 1xx are never answered here
_SERVER = f"Server: {SERVER_SOFTWARE}\r\n"


class _HandOver(Exception):
    """Raised in a parser callback: the request being parsed is aiohttp's."""


class _Date:
    """The ``Date`` field line, formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.line = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.line = f"Date: {formatdate(now, usegmt=True)}\r\n"
        return self.line


_date = _Date()
_reasons: dict[int, str] = {}


def _status_line(response: web.Response) -> str:
    reason = response.reason
    if not reason:
        reason = _reasons.get(response.status) or HTTPStatus(response.status).phrase
    return f"HTTP/1.1 {response.status} {reason}\r\n"


def serialise(response: web.Response, request_id: str | None, close: bool) -> bytes:
    """``response`` as aiohttp would send it to a GET or PUT over HTTP/1.1 (see
    ``web.Response._start`` and ``StreamResponse._prepare_headers``)."""
    body = response.body
    if body is None:
        body = b""
    elif not isinstance(body, bytes | bytearray):
        raise TypeError(f"the front sends bytes bodies only, not {type(body).__name__}")
    headers = response.headers
    status = response.status
    lines = [_status_line(response)]
    empty = status in _NO_BODY_STATUS
    for name, value in headers.items():
        if empty and name.lower() in ("content-length", "transfer-encoding"):
            continue
        line = f"{name}: {value}\r\n"
        if "\r" in line[:-2] or "\n" in line[:-2]:  # a stored value must not split the head
            raise ValueError(f"header {name!r} contains CR or LF")
        lines.append(line)
    if not empty:
        if "Content-Length" not in headers:
            lines.append(f"Content-Length: {len(body)}\r\n")
        if body and "Content-Type" not in headers:
            lines.append("Content-Type: application/octet-stream\r\n")
    if "Date" not in headers:
        lines.append(_date())
    if "Server" not in headers:
        lines.append(_SERVER)
    if request_id and "x-amz-request-id" not in headers:
        lines.append(f"x-amz-request-id: {request_id}\r\n")
    if close:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    head_bytes = "".join(lines).encode("utf-8", "surrogateescape")
    return head_bytes + body if body and not empty else head_bytes


def is_object_path(url: bytes) -> bool:
    """``/{bucket}/{key}`` with both non-empty and no query string or fragment."""
    if not url.startswith(b"/") or b"?" in url or b"#" in url:
        return False
    slash = url.find(b"/", 1)
    return slash > 1 and slash < len(url) - 1


class OriginFront:
    """The protocol factory of the origin's listening socket, and what its connections
    share. ``app_server`` makes the aiohttp protocol a connection is handed over to."""

    def __init__(self, app: web.Application, app_server: Callable[[], asyncio.Protocol], *,
                 max_body: int, keepalive_timeout: float = KEEPALIVE_TIMEOUT) -> None:
        self.app = app
        self.app_server = app_server
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self.handlers: dict[bytes, Handler] = {b"GET": get_object, b"PUT": put_object}
        self.connections: set[FrontProtocol] = set()

    async def run(self, request: FrontRequest) -> web.StreamResponse:
        """The S3 middleware around the object handler, as aiohttp would run them."""
        # The handlers take aiohttp's request; a FrontRequest offers what they read of it.
        return await s3_middleware(cast(web.Request, request),
                                   self.handlers[request.method.encode()])

    def __call__(self) -> FrontProtocol:
        return FrontProtocol(self)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            conn.close()


class FrontProtocol(asyncio.Protocol):
    """One connection until it is handed over to aiohttp (see the module docstring)."""

    def __init__(self, front: OriginFront) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.partial = b""  # the bytes of an unfinished head, from its request's first byte
        self.held = b""  # bytes not fed to the parser (a request is being answered)
        self.head_fits = False  # the piece being fed ends the head, within MAX_HEAD_BYTES
        self.remaining = 0  # body bytes still to come of the request being read
        # the request being read
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.length: bytes | None = None
        self.refused = False
        self.accepted = False  # its head passed on_headers_complete
        self.close_asked = False  # it asked for Connection: close
        self.raw_head = b""
        self.body: list[bytes] = []
        self.complete = False
        self.busy = False  # a request is being answered
        self.reading_paused = False
        self.write_paused = False
        self.closed = False
        # One timer per connection, not one per request: when it fires, a connection that
        # started no request since it was armed (and is not answering one) is closed.
        self.idle: asyncio.TimerHandle | None = None
        self.started = 0  # requests started here
        self.started_at_arming = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.front.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        # A request being answered is left to finish (a PUT is durable or not regardless of
        # who listens); its answer is just not written.
        self.closed = True
        self.front.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.busy or self.write_paused:
            self.held += data
            if len(self.held) > MAX_HELD_BYTES:
                self._pause_reading()
            return
        self._feed(data)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.busy:
            self._next()

    # -- requests --------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Feed ``data`` in pieces that each end where a head or a body ends, until one
        request is complete; what follows it is held for after its answer."""
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
            piece = data if stop == n and pos == 0 else view[pos:stop]
            try:
                parser.feed_data(piece)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                # refused in on_headers_complete, or not HTTP/1.1 as llhttp reads it:
                # aiohttp answers it (400 for what it cannot parse either)
                if not self.refused and isinstance(exc, httptools.HttpParserCallbackError):
                    log.exception("parser callback failed; handing over to aiohttp")
                self._hand_over(self.partial + data[pos:])
                return
            if not self.accepted:  # the head is not complete yet
                self.partial += data[pos:stop]
                if len(self.partial) > MAX_HEAD_BYTES:
                    self._hand_over(self.partial)
                    return
            elif not self.raw_head:
                self.raw_head = self.partial + bytes(piece)
                self.partial = b""
            pos = stop
            if self.complete:
                self.held = data[pos:]
                self._start_answer()
                return

    def _start_answer(self) -> None:
        body = self.body
        request = FrontRequest(
            self.front.app, self.parser.get_method().decode(),
            self.url.decode("utf-8", "surrogateescape"),
            CIMultiDictProxy(CIMultiDict(
                (k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                for k, v in self.fields)),
            body[0] if len(body) == 1 else b"".join(body), self.transport)
        raw = self.raw_head
        self.started += 1
        self.accepted = self.complete = False
        self.raw_head = b""
        self.busy = True
        close = self.close_asked
        task = asyncio.get_running_loop().create_task(self._answer(request, raw, close))
        task.add_done_callback(self._answered)

    async def _answer(self, request: FrontRequest, raw: bytes, close: bool
                      ) -> tuple[bytes, bool] | None:
        """The answer's bytes and whether to close after them, or ``None`` once the request
        was handed over to aiohttp."""
        try:
            response = await self.front.run(request)
        except StreamingNeeded:
            if request.method != "GET":  # never run a write twice
                log.error("%s %s wanted a streamed answer", request.method, request.raw_path)
                return self._internal_error(request), True
            self._hand_over(raw + self.held)
            return None
        try:
            if type(response) is not web.Response:
                raise TypeError(f"{type(response).__name__} is not a whole answer")
            return serialise(response, request.get(REQUEST_ID), close), close
        except (TypeError, ValueError):
            log.exception("the answer to %s %s cannot be sent by the front", request.method,
                          request.raw_path)
            return self._internal_error(request), True

    @staticmethod
    def _internal_error(request: FrontRequest) -> bytes:
        return serialise(error_response(InternalError(), cast(web.Request, request)),
                         request.get(REQUEST_ID), True)

    def _answered(self, task: asyncio.Task[tuple[bytes, bool] | None]) -> None:
        if task.cancelled():
            self.close()
            return
        exc = task.exception()
        if exc is not None:  # the middleware re-raises only a client that went away
            if not isinstance(exc, ConnectionError):
                log.error("front request failed", exc_info=exc)
            self.close()
            return
        result = task.result()
        if result is None or self.closed or self.transport is None:
            return  # handed over, or nobody to answer
        out, close = result
        self.transport.write(out)
        if close:
            self.close()
            return
        self.busy = False
        if not self.write_paused:
            self._next()

    def _next(self) -> None:
        """Go on with the bytes held while the last request was answered."""
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
        held, self.held = self.held, b""
        if held:
            self._feed(held)

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.fields = []
        self.length = None
        self.refused = False
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))
        if len(value) > MAX_FIELD_BYTES or len(name) > MAX_FIELD_BYTES:
            self.refused = True
        lower = name.lower()
        if lower == b"content-length":
            self.refused |= self.length is not None
            self.length = value
        elif lower in _REFUSED_FIELDS:
            self.refused = True

    def on_headers_complete(self) -> None:
        """Accept a plain object GET or PUT (see the module docstring); anything else is
        handed over from its first byte."""
        parser = self.parser
        method = parser.get_method()
        raw = self.length
        if (self.refused or not self.head_fits or parser.get_http_version() != "1.1"
                or method not in self.front.handlers or not is_object_path(self.url)
                or len(self.url) > MAX_FIELD_BYTES):
            self.refused = True
            raise _HandOver
        length = int(raw) if raw is not None else 0  # llhttp has checked the digits
        if (method == b"GET" and length) or (method == b"PUT" and (
                raw is None or length > self.front.max_body)):
            self.refused = True
            raise _HandOver
        self.remaining = length
        self.accepted = True
        # asked now: llhttp forgets it once the message is complete
        self.close_asked = not parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # -- hand-over and closing -----------------------------------------------------------------

    def _arm_idle(self) -> None:
        if not self.closed:
            self.started_at_arming = self.started
            self.idle = asyncio.get_running_loop().call_later(
                self.front.keepalive_timeout, self._idle_check)

    def _idle_check(self) -> None:
        """Close after ``keepalive_timeout`` to ``2 × keepalive_timeout`` seconds without a
        new request (aiohttp: exactly ``keepalive_timeout`` after the last answer)."""
        if self.busy or self.started != self.started_at_arming:
            self._arm_idle()
        else:
            self.close()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def _hand_over(self, raw: bytes) -> None:
        """From now on the connection is aiohttp's; ``raw`` starts with its request."""
        transport = self.transport
        if transport is None or self.closed:
            return
        self.closed = True
        self.front.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
        self.held = self.partial = b""
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
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if self.transport is not None and not self.closed:
            self.closed = True
            self.front.connections.discard(self)
            self.transport.close()
