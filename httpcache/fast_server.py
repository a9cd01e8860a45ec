"""An HTTP/1.1 front on asyncio's protocol layer: fresh hits here, everything else to aiohttp.

Each connection starts with ``HitProtocol``. Requests are parsed by httptools (llhttp, the
parser uvicorn uses, and the one inside aiohttp). A GET or HEAD without a body whose answer
``HitPath.answer`` can give (a fresh memory hit) is answered at once, in the order requests
arrived: pipelined requests read together are answered with one write.

A *plain miss* (``HitPath.serve_miss``: GET or HEAD, nothing stored for the key in any tier,
no conditionals or ranges, not one of the application's own paths) is answered here too: the
protocol stops reading (later pipelined requests wait, unparsed), a task runs the engine's
own miss steps (``CacheEngine.open_flight``: the collapsed flight that fetches and stores;
``flight_fields``: counters, ``Cache-Status``, ``Via``, ``Age``) and writes the head and the
body as it arrives through this transport, waiting on ``pause_writing``/``resume_writing``
for a slow client; then reading resumes with the bytes that followed the request. The
decision is the engine's (``decide``), so nothing is answered differently from aiohttp's
path; what is saved is aiohttp's request/response objects per miss, and the connection stays
here, so its later hits stay cheap. A body the upstream breaks off after the head cuts the
connection (as the engine does); an error before the head is answered as the application's
``errors_middleware`` answers it (status, text, ``Cache-Status`` detail, ``no-store``). A
client that goes away cancels its task, not the flight (the fill goes on); a task that runs
the flight itself (the first GET of a key, ``HitPath.serve_miss``) is *pinned* meanwhile and
not cancelled: it finishes the fill, writing nothing more. When the upstream request can be
sent at once on an idle kept-alive connection (the common case under load), there is no
task at all: the flight is fed from that connection's callbacks and the answer written from
them (``HitPath.start_miss``, ``httpcache.callback_fill``); a client that goes away then
simply stops being written to.

The first request it cannot answer *hands the connection over* to the aiohttp application:
an aiohttp ``RequestHandler`` (made by the app runner's ``web.Server``, so the runner tracks
and shuts it down) becomes the transport's protocol and is fed the raw bytes from the first
byte of that request on. Every response written before was complete, and aiohttp answers
the rest in order, so keep-alive and pipelining stay correct across the hand-off. The
connection stays with aiohttp from then on: a connection that asks for conditional or ranged
misses, purges or metrics pays aiohttp's cost for its later hits too (taking it back would
mean reaching into aiohttp's handler; browsers and load generators open new connections
often enough).

To hand over raw bytes the protocol must know where each request began. llhttp reports a
completed message, not its position, so the bytes are fed to it in pieces that end just after
a ``CRLF CRLF`` (``bytes.find``; the parser still decides what the bytes mean). llhttp
requires CRLF line ends (its default strict mode), and a request head ends at the first empty
line, so a body-less request can only complete at the end of such a piece; requests with a
body are handed over at the end of their head, before any of it is parsed.

Errors: a request llhttp rejects gets ``400`` and the connection is closed (after the answers
to the requests before it); a head larger than ``max_head_bytes`` gets ``431``; both are
answered as the application answers its errors (``httpcache.app.error_answer``: counted, a
body naming what was wrong, ``Cache-Status`` detail, ``no-store``). Fields longer than
aiohttp's ``max_field_size`` are handed over so aiohttp answers them as it always does.
Idle connections are closed after ``keepalive_timeout`` seconds like aiohttp's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import NoReturn

import httptools
from aiohttp import web

from cdn.request_heads import head_piece
from httpcache.app import error_answer
from httpcache.errors import CacheError, HeadTooLarge, MalformedRequest
from httpcache.field_names import NAMES, learn
from httpcache.headers import Fields
from httpcache.hit_path import CONNECTION_CLOSE, HitPath, MissPlan, serialise
from httpcache.messages import Chunk

log = logging.getLogger("cdn.httpcache.fast_server")

MAX_HEAD_BYTES = 64 * 1024
MAX_FIELD_SIZE = 16384  # as the app's handler_args (aiohttp answers longer fields itself)

_BODY_FIELDS = frozenset({"content-length", "transfer-encoding", "expect"})
_KEEP_ALIVE = b"Connection: keep-alive\r\n"


class _HandOver(Exception):
    """Raised in a parser callback: the request goes to aiohttp."""


class _Stop(Exception):
    """Raised in a parser callback: answered with Connection: close, read no further."""


class HitServer:
    """What the connections of one listening socket share."""

    def __init__(self, hit_path: HitPath, app_server: Callable[[], asyncio.Protocol], *,
                 keepalive_timeout: float = 75.0, max_head_bytes: int = MAX_HEAD_BYTES,
                 max_field_size: int = MAX_FIELD_SIZE,
                 app_paths: frozenset[str] | None = None) -> None:
        self.hit_path = hit_path
        self.app_server = app_server
        # with the application's own paths (``proxied_elsewhere``), plain misses are answered
        # here too; ``None``: every miss is handed over
        self.app_paths = app_paths
        self.keepalive_timeout = keepalive_timeout
        self.max_head_bytes = max_head_bytes
        self.max_field_size = max_field_size
        self.connections: set[HitProtocol] = set()
        self.handed_over = 0

    def __call__(self) -> HitProtocol:
        return HitProtocol(self)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            conn.close()


class HitProtocol(asyncio.Protocol):
    """One client connection until it is answered by aiohttp (see the module docstring)."""

    def __init__(self, server: HitServer) -> None:
        self.server = server
        self.hits = server.hit_path
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.remote: str | None = None
        self.partial = b""  # bytes of the request being read that came in earlier reads
        self.completed = False  # a request completed in the piece being parsed
        self.hand_over = False
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.index: dict[str, list[str]] = {}
        self.method = "GET"
        self.oversize = False  # a field longer than aiohttp's limit: it answers that
        self.out: list[Chunk] = []
        self.closing = False
        self.paused = False
        self.active = True  # data since the last idle check
        self.idle_timer: asyncio.TimerHandle | None = None
        self.miss: tuple[MissPlan, bytes, bool] | None = None  # (plan, connection, keep-alive)
        self.miss_task: asyncio.Task[None] | None = None
        self.pinned = False  # the miss task runs a flight others may wait on: never cancel it
        self.drain_waiter: asyncio.Future[None] | None = None

    # -- connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        # once per connection: asyncio's get_running_loop() makes a getpid() system call
        self.loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple | list) and peer else None
        self.server.connections.add(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._detach()
        self.closing = True
        if self.miss_task is not None and not self.pinned:
            self.miss_task.cancel()  # the client went away: the fetch goes on alone
        self._wake_drain()

    def _detach(self) -> None:
        self.server.connections.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _arm_idle_timer(self) -> None:
        timeout = self.server.keepalive_timeout
        if timeout > 0:
            self.idle_timer = self.loop.call_later(timeout, self._idle_check)

    def _idle_check(self) -> None:
        if self.active or self.miss is not None:
            self.active = False
            self._arm_idle_timer()
        else:
            self.idle_timer = None
            self.close()

    def pause_writing(self) -> None:
        """The client reads slower than it asks: stop reading requests until it catches up."""
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        self._wake_drain()
        if self.transport is not None and not self.closing and self.miss is None:
            self.transport.resume_reading()

    def _wake_drain(self) -> None:
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.active = True
        n = len(data)
        pos = 0
        parser = self.parser
        while pos < n:
            stop, _ends = head_piece(data, pos, self.partial)
            piece = data if (pos == 0 and stop == n) else data[pos:stop]
            self.completed = False
            try:
                parser.feed_data(piece)
            except httptools.HttpParserCallbackError:
                if self.hand_over:
                    self._hand_over(self.partial + data[pos:])
                    return
                if self.closing:  # _Stop: answered, the connection closes
                    self._flush()
                    self.transport.close()  # type: ignore[union-attr]
                    return
                log.exception("hit path failed; closing the connection")
                self._fail(CacheError("the hit path failed; see the server log"))
                return
            except httptools.HttpParserUpgrade:  # pragma: no cover - handed over at its head
                self._hand_over(self.partial + data[pos:])
                return
            except httptools.HttpParserError as exc:
                self._fail(MalformedRequest(f"not a valid HTTP/1.1 request: {exc}"))
                return
            if self.completed:
                self.partial = b""
                if self.miss is not None:  # answered later; the rest waits for it
                    self._flush()
                    self._start_miss(data[stop:])
                    return
            else:
                self.partial += piece
                if len(self.partial) > self.server.max_head_bytes:
                    self._fail(HeadTooLarge(f"the request head is larger than "
                                            f"{self.server.max_head_bytes} bytes"))
                    return
            pos = stop
        self._flush()

    def _flush(self) -> None:
        if self.out:
            out, self.out = self.out, []
            transport = self.transport
            assert transport is not None
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.writelines(out)

    # -- misses --------------------------------------------------------------------------------

    def _start_miss(self, rest: bytes) -> None:
        """Stop reading (requests are answered in order) and answer the miss: from the
        upstream connection's callbacks when it can be (``HitPath.start_miss``), else in a
        task."""
        assert self.transport is not None and self.miss is not None
        self.transport.pause_reading()
        plan, connection, keep_alive = self.miss
        http11 = self.parser.get_http_version() == "1.1"
        if self.hits.start_miss(plan, self, connection, http11,
                                functools.partial(self._miss_done, rest, keep_alive)):
            return
        self.miss_task = self.loop.create_task(
            self._serve_miss(plan, connection, http11, rest, keep_alive))

    async def _serve_miss(self, plan: MissPlan, connection: bytes, http11: bool, rest: bytes,
                          keep_alive: bool) -> None:
        try:
            reusable = await self.hits.serve_miss(plan, self, connection, http11)
        except asyncio.CancelledError:
            self.miss = None
            self.miss_task = None
            return
        except Exception:
            log.exception("miss on the hit path failed; closing the connection")
            reusable = False
        self.miss_task = None
        self._miss_done(rest, keep_alive, reusable)

    def _miss_done(self, rest: bytes, keep_alive: bool, reusable: bool) -> None:
        """The miss was answered: read on (with what followed its request), or close."""
        self.miss = None
        self.active = True
        if self.closing or self.transport is None:
            return
        if not (reusable and keep_alive):
            self.close()
            return
        if not self.paused:
            self.transport.resume_reading()
        if rest:
            self.data_received(rest)

    # -- ``hit_path.MissClient``: what serve_miss writes through ------------------------------

    def write(self, data: Chunk) -> None:
        if not self.closing and self.transport is not None:
            self.transport.write(data)

    def writelines(self, data: list[Chunk]) -> None:
        if not self.closing and self.transport is not None:
            self.transport.writelines(data)

    async def drain(self) -> None:
        if self.paused and not self.closing:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    def writable(self) -> bool:
        return not self.paused and not self.closing

    def pin(self, pinned: bool) -> None:
        self.pinned = pinned

    def _fail(self, exc: CacheError) -> None:
        """Answer ``exc`` as the application would, then close the connection."""
        fields, body = error_answer(exc, self.hits.engine, "-", "(unparsed request)")
        self.out.append(serialise(exc.status, fields) + self.hits.date_line() + CONNECTION_CLOSE
                        + b"\r\n" + body)
        self._flush()
        self.close()

    def _hand_over(self, raw: bytes) -> None:
        """From now on the connection is aiohttp's; ``raw`` starts with the request to answer."""
        self._flush()
        transport = self.transport
        assert transport is not None
        self._detach()
        self.closing = True
        self.server.handed_over += 1
        handler = self.server.app_server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.paused:
            handler.pause_writing()
        if raw:
            handler.data_received(raw)

    # -- httptools callbacks -------------------------------------------------------------------

    # No ``on_message_begin``: httptools calls only the callbacks a protocol has, and the
    # state of a message is reset in ``on_message_complete`` (one Python call less per hit).

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # the name index of ``Fields.indexed``, built as the fields arrive (names decoded
        # and lowered once per process: ``field_names``)
        text = value.decode("utf-8", "surrogateescape")
        key, lname = NAMES.get(name) or learn(name)
        self.headers.append((key, text))
        found = self.index.get(lname)
        if found is None:
            self.index[lname] = [text]
        else:
            found.append(text)
        if len(value) > self.server.max_field_size or len(name) > self.server.max_field_size:
            self.oversize = True

    def on_headers_complete(self) -> None:
        parser = self.parser
        method = parser.get_method()
        self.method = "GET" if method == b"GET" else "HEAD"
        if (method not in (b"GET", b"HEAD") or parser.should_upgrade()
                or not self.url.startswith(b"/") or self.oversize):
            self._refuse()
        index = self.index
        if not _BODY_FIELDS.isdisjoint(index):
            # a body (or the promise of one) goes to aiohttp; ``Content-Length: 0`` is none
            if ("transfer-encoding" in index or "expect" in index
                    or any(v.strip() != "0" for v in index.get("content-length", ()))):
                self._refuse()

    def on_message_complete(self) -> None:
        url, headers, index = self.url, self.headers, self.index
        self.url, self.headers, self.index = b"", [], {}  # for the next message
        parser = self.parser
        keep_alive = parser.should_keep_alive()
        if parser.get_http_version() == "1.1":
            connection = b"" if keep_alive else CONNECTION_CLOSE
        else:
            connection = _KEEP_ALIVE if keep_alive else CONNECTION_CLOSE
        try:
            target = url.decode("ascii")
        except UnicodeDecodeError:
            self._refuse()
        app_paths = self.server.app_paths
        misses = (app_paths is not None and "%" not in target
                  and target.partition("?")[0] not in app_paths)
        answer = self.hits.answer(self.method, target,
                                  Fields.prebuilt(tuple(headers), index),
                                  self.remote, connection, misses=misses)
        if answer is None:
            self._refuse()
        if isinstance(answer, MissPlan):
            self.miss = (answer, connection, keep_alive)
            self.completed = True
            return
        self.out += answer
        self.completed = True
        if not keep_alive:
            self.closing = True
            raise _Stop

    def _refuse(self) -> NoReturn:
        self.hand_over = True
        raise _HandOver


def proxied_elsewhere(app: web.Application) -> frozenset[str] | None:
    """The paths the application answers itself (``/_health``, ``/_metrics`` …), which a miss
    on the hit path must leave to it; ``None`` when its routes are not plain paths plus the
    engine's catch-all, so no miss is answered outside it."""
    paths: set[str] = set()
    for resource in app.router.resources():
        info = resource.get_info()
        if "path" in info:
            paths.add(info["path"])
        elif resource.canonical != "/{tail}":
            return None
    return frozenset(paths)


def app_handler_factory(runner: web.AppRunner) -> Callable[[], asyncio.Protocol]:
    """aiohttp's protocol for one connection of ``runner``'s application."""
    server = runner.server
    assert server is not None, "runner.setup() first"
    return server  # web.Server() returns a RequestHandler
