"""Fresh memory hits answered without aiohttp: the same decision, pre-serialised answers.

``HitPath.answer`` is what ``CacheEngine.handle`` does for a request that turns out to be a
fresh hit in the memory tier, minus aiohttp's request and response objects: the gates
(signed URLs), the cache key, ``MemoryStore.lookup`` (Vary), ``policy.decide`` and, for a
``FreshHit``, the client's conditionals (304) and a single range (206/416), HEAD, the hit
counters. It returns the response as bytes, or ``None`` when the request needs anything
else (a miss, a stale or disk-tier entry, several ranges, a refused signature …), which the
caller then hands to the aiohttp application unchanged: the engine answers it as before.

Nothing here decides differently from the engine: the decision is ``decide()`` itself, the
fields are ``client_response_fields``, ``not_modified_fields``, ``whole_fields`` /
``part_fields`` / ``unsatisfiable_fields`` and ``requested_ranges`` as the engine uses
them. What is saved is the work that does not change between two hits on one stored
response: its fields are serialised once (``Wire``, kept on the stored response, which
never changes: an update makes a new one) and only ``Age``, the ``ttl`` of ``Cache-Status``
and, when the origin sent none, ``Date`` are written per response.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Protocol

from httpcache import purge_watermark
from httpcache.app import error_answer
from httpcache.cache_key import cache_key, split_target
from httpcache.cache_status import CacheStatus
from httpcache.callback_fill import fill_now
from httpcache.collapse import FlightHead, FlightReader
from httpcache.conditional import not_modified, not_modified_fields, requested_ranges
from httpcache.dates import format_http_date
from httpcache.engine import CacheEngine
from httpcache.errors import CacheError, StoreError, UpstreamError
from httpcache.forwarding import (
    client_response_fields,
    part_fields,
    partial_base,
    unsatisfiable_fields,
    whole_fields,
)
from httpcache.headers import Fields
from httpcache.messages import CacheRequest, Chunk, StoredResponse
from httpcache.policy import (
    CACHEABLE_METHODS,
    DECISIVE_REQUEST_FIELDS,
    FreshHit,
    Miss,
    decide,
    plain_fresh_hit,
)
from httpcache.ranges import ByteRange, Unsatisfiable

log = logging.getLogger("cdn.httpcache.hit_path")

# Bodies at least this large are written as their own buffer (no copy into the head's).
JOIN_BELOW = 16 * 1024
CONNECTION_CLOSE = b"Connection: close\r\n"  # the field line, as the protocol writes it
HOLD_LAST_ABOVE = 1024 * 1024  # see _MissAnswer.push


# status lines by code: the enum lookup behind a phrase costs about a microsecond per answer
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}


def serialise(status: int, fields: Fields) -> bytes:
    """A status line and field lines (no final CRLF), encoded as aiohttp encodes them."""
    line = _STATUS_LINES.get(status)
    lines = [line if line is not None else f"HTTP/1.1 {status} \r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in fields]
    return "".join(lines).encode("utf-8", "surrogateescape")


class DateLine:
    """``Date: <IMF-fixdate>\\r\\n`` for the current second, formatted once per second."""

    __slots__ = ("_clock", "_line", "_second")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._line = b""

    def __call__(self) -> bytes:
        second = int(self._clock())
        if second != self._second:
            self._line = f"Date: {format_http_date(second)}\r\n".encode("ascii")
            self._second = second
        return self._line


class Wire:
    """The pre-serialised parts of the answers to hits on one stored response."""

    __slots__ = ("date_missing", "fields", "head_200", "head_304", "length", "partial_base",
                 "status_prefix", "unsatisfiable")

    def __init__(self, stored: StoredResponse, name: str, strip: frozenset[str]) -> None:
        # the stored fields, unpacked once for the conditionals and ranges of later hits
        # (the store keeps them packed: ``StoredResponse.headers`` unpacks on every read)
        self.fields = stored.headers
        probe = CacheStatus(name, hit=True, ttl=0)
        fields = client_response_fields(self.fields, probe, via=name, age=0, strip=strip)
        member = fields.get_all("cache-status")[-1]
        assert member.endswith("ttl=0"), member
        self.status_prefix = f"Cache-Status: {member[:-1]}".encode("utf-8", "surrogateescape")
        static = fields.without("age", "cache-status")
        length = self.length = len(stored.body)
        self.date_missing = self.fields.first("date") is None
        self.head_200 = serialise(stored.status, whole_fields(static, stored.status, length))
        self.head_304 = serialise(304, not_modified_fields(static))
        self.partial_base = partial_base(static)
        self.unsatisfiable = serialise(416, unsatisfiable_fields(static, Unsatisfiable(length)))


class GateView:
    """The request as a gate sees it (``engine.GateRequest``)."""

    __slots__ = ("headers", "method", "remote")

    def __init__(self, method: str, headers: Fields, remote: str | None) -> None:
        self.method = method
        self.headers = headers
        self.remote = remote


class HitPath:
    """Answers fresh memory hits of one engine (see the module docstring)."""

    def __init__(self, engine: CacheEngine, *, clock: Callable[[], float] | None = None
                 ) -> None:
        self.engine = engine
        self.clock = clock or engine.clock
        self.date_line = DateLine(self.clock)
        config = engine.config
        self._name = config.name
        self._strip = frozenset(n.lower() for n in config.strip_response_fields)
        self._policy = config.policy
        self._gates = tuple(config.gates)
        self._answers_purge_seq = config.answers_purge_seq
        self._lookup = engine.store.lookup
        self._hits = engine.counter("hit")
        self._not_modified = engine.counter("not_modified")
        self.callback_fills = 0  # misses whose flight ran on callbacks (``start_miss``)
        # tasks writing the rest of a callback-filled miss to a slow client: the loop keeps
        # only weak references to tasks, so they are held here while they run
        self.draining: set[asyncio.Task[None]] = set()

    def wire(self, stored: StoredResponse) -> Wire:
        wire = stored.memo_wire
        if not isinstance(wire, Wire):
            wire = Wire(stored, self._name, self._strip)
            stored.remember("memo_wire", wire)
        return wire

    def answer(self, method: str, target: str, headers: Fields, remote: str | None,
               connection: bytes = b"", *, misses: bool = False
               ) -> list[Chunk] | MissPlan | None:
        """The response to a fresh hit (``connection``: extra field lines such as
        ``Connection: close\\r\\n``), or ``None``: hand the request to the application;
        with ``misses``, a ``MissPlan`` for a plain miss ``serve_miss`` can answer."""
        if method not in CACHEABLE_METHODS or (
                self._answers_purge_seq and headers.first(purge_watermark.LOWER) is not None):
            return None  # the engine waits for the purge asked about and says what it reflects
        now = self.clock()
        if self._gates:
            view = GateView(method, headers, remote)
            try:
                for gate in self._gates:
                    target = gate(view, target, now)
            except CacheError:
                return None  # the application answers it (403 …) and counts it
        key = cache_key(*split_target(target)) if "?" in target else target
        return self._answer_key(method, key, headers, now, connection, misses)

    def _answer_key(self, method: str, key: str, headers: Fields, now: float,
                    connection: bytes, misses: bool) -> list[Chunk] | MissPlan | None:
        """``answer`` for the cache key ``key`` of a request the gates have let through."""
        stored, vary_miss = self._lookup(key, headers)
        if stored is None:
            return self._plan_miss(method, key, headers, now, vary_miss) if misses else None
        if stored.file is not None:
            return None
        if not stored.vary and not headers.has_any(DECISIVE_REQUEST_FIELDS):
            # a plain request: decide() would look at nothing but the response and the clock
            fresh = plain_fresh_hit(stored, now, self._policy)
            if fresh is None:
                return None
            self._hits.n += 1
            return self._whole(method, stored, self.wire(stored), fresh[0], fresh[1],
                               connection)
        creq = CacheRequest(method, key, headers)
        decision = decide(creq, stored, now, self._policy, vary_miss=vary_miss)
        if type(decision) is not FreshHit:
            return None
        wire = self.wire(stored)
        tail = b"Age: %d\r\n%s%d\r\n%s%s\r\n" % (
            int(decision.age), wire.status_prefix, int(decision.ttl),
            self.date_line() if wire.date_missing else b"", connection)
        body: Chunk = stored.body
        if headers.first("if-none-match") is not None or headers.first(
                "if-modified-since") is not None:
            if not_modified(method, headers, stored.status, wire.fields):
                self._hits.n += 1
                self._not_modified.n += 1
                return [wire.head_304 + tail]
        if headers.first("range") is not None:
            match requested_ranges(creq, stored.status, wire.fields, wire.length):
                case [ByteRange() as part]:
                    head = serialise(206, part_fields(wire.partial_base, part))
                    body = memoryview(stored.body)[part.first:part.last + 1]
                case [ByteRange(), ByteRange(), *_]:
                    return None  # multipart/byteranges: the engine builds those
                case Unsatisfiable():
                    self._hits.n += 1
                    return [wire.unsatisfiable + tail]
                case _:
                    head = wire.head_200
        else:
            self._hits.n += 1
            return self._whole(method, stored, wire, decision.age, decision.ttl, connection)
        self._hits.n += 1
        if method == "HEAD" or not body:
            return [head + tail]
        if len(body) < JOIN_BELOW:
            return [b"".join((head, tail, body))]
        return [head + tail, body]

    def _whole(self, method: str, stored: StoredResponse, wire: Wire, age: float, ttl: float,
               connection: bytes) -> list[Chunk]:
        """The 200 (or the stored status) with the whole body."""
        head = b"%sAge: %d\r\n%s%d\r\n%s%s\r\n" % (
            wire.head_200, int(age), wire.status_prefix, int(ttl),
            self.date_line() if wire.date_missing else b"", connection)
        body = stored.body
        if method == "HEAD" or not body:
            return [head]
        if len(body) < JOIN_BELOW:
            return [head + body]
        return [head, body]

    # -- plain misses ----------------------------------------------------------------------------

    def _plan_miss(self, method: str, key: str, headers: Fields, now: float,
                   vary_miss: bool) -> MissPlan | None:
        """A miss answered by ``serve_miss``: nothing stored for the key in any tier (no
        stale response to fall back on, no slices), no client conditionals or ranges (the
        engine answers those from the complete response). Anything else: ``None``."""
        engine = self.engine
        if engine.disk is not None or engine.shared is not None:
            return None
        if headers.has_any(_ANSWERED_BY_ENGINE):
            return None
        if engine.slices is not None and engine.slices.has_record(key):
            return None
        creq = CacheRequest(method, key, headers)
        decision = decide(creq, None, now, self._policy, vary_miss=vary_miss)
        if type(decision) is not Miss or decision.stale is not None:
            return None
        return MissPlan(creq, decision)

    def start_miss(self, plan: MissPlan, client: MissClient, connection: bytes, http11: bool,
                   done: Callable[[bool], None]) -> bool:
        """``serve_miss`` with no task, when the flight can be fed from the upstream
        connection's callbacks (``callback_fill.fill_now``): the answer is written from the
        flight's listener as there, and ``done(reusable)`` is called at its end (what
        ``serve_miss`` returns). ``False``: nothing was started; use ``serve_miss``."""
        answer = _MissAnswer(self, plan.creq, plan.decision, client, connection, http11)
        end = _CallbackEnd(answer, done)
        flight = fill_now(self.engine, plan.creq, plan.decision, client.remote, end)
        if flight is None:
            return False
        reader = end.reader = flight.reader()
        flight.listener = functools.partial(answer.push, reader)
        self.callback_fills += 1
        return True

    async def serve_miss(self, plan: MissPlan, client: MissClient, connection: bytes,
                         http11: bool) -> bool:
        """Answer ``plan`` as ``CacheEngine`` answers a miss (``flight_fields``), written to
        ``client`` (the protocol's connection). Returns whether the connection may carry
        another request: not when the body was cut (the upstream broke off after the head),
        nor when it was delimited by closing, nor when the client went away.

        A GET that fills the cache, when no flight for the key is running, runs its flight
        itself (``CacheEngine.inline_flight``): the head and each chunk are written to the
        client as the flight is fed (``_MissAnswer.push``), with no task of the flight's own
        and no hand-off between tasks per chunk; meanwhile the task is pinned (a client that
        goes away does not cancel the fill others may be waiting on). What a paused client
        could not take then is written from the flight afterwards. Any other miss reads the
        flight it joins or starts (``open_flight``)."""
        engine = self.engine
        creq, decision = plan.creq, plan.decision
        if not engine.collapser.busy(creq.target):
            # The plan was made when the request was read, and this task runs later: the
            # flight the request would have joined may have ended since (in the same loop
            # turn, say), leaving the response stored. A new flight would fetch it again
            # (bench/flash_crowd.py saw 2 origin GETs for one crowd): answer what is stored.
            hit = self._answer_key(creq.method, creq.target, creq.headers, self.clock(),
                                   connection, False)
            if isinstance(hit, list):
                client.writelines(hit)
                return True
        answer = _MissAnswer(self, creq, decision, client, connection, http11)
        inline = engine.inline_flight(creq, decision, client.remote)
        try:
            if inline is not None:
                reader, run = inline
                owner = True
                reader.flight.listener = functools.partial(answer.push, reader)
                client.pin(True)
                try:
                    await run()
                finally:
                    client.pin(False)
                    reader.flight.listener = None
                try:
                    head = await reader.head(owner=True)  # at hand, or the fetch's error
                except BaseException:
                    reader.close()
                    raise
            else:
                reader, head, owner = await engine.open_flight(creq, decision, client.remote)
        except CacheError as exc:  # as httpcache.app's errors_middleware answers it
            answer.error(exc)
            return True
        with reader:
            if not answer.started:
                if (creq.method == "HEAD" and head.content_length is None
                        and head.status not in (204, 304)):
                    # the length must be known first, as the engine does
                    answer.begin(head, owner, body_length=len(await reader.body()))
                else:
                    answer.begin(head, owner)
            if answer.body and not reader.drained():
                if answer.open_ended and not reader.ready():
                    answer.flush_head()  # an open-ended body: its head at once (see _stream)
                return await answer.rest(reader)
            return answer.end()


class MissClient(Protocol):
    """The connection ``serve_miss`` answers on (``fast_server.HitProtocol``)."""

    remote: str | None
    closing: bool  # the client went away (or the connection is being closed)

    def write(self, data: Chunk) -> None: ...
    def writelines(self, data: list[Chunk]) -> None:
        """Several buffers in one system call (``writev``), without joining them."""
        ...
    async def drain(self) -> None: ...
    def writable(self) -> bool:
        """Whether a write now would go out without queueing (not paused, not closing)."""
        ...
    def pin(self, pinned: bool) -> None:
        """While pinned, the client going away must not cancel the task answering it."""
        ...


class _MissAnswer:
    """The response to one miss as it is written: the head (``begin``, joined with the first
    chunk when that is at hand), the chunks (chunked-encoded when the length is unknown on
    HTTP/1.1), the end (``end``). ``push`` writes what a flight has at hand, synchronously:
    it is the listener of a flight the request runs itself."""

    def __init__(self, path: HitPath, creq: CacheRequest, decision: Miss, client: MissClient,
                 connection: bytes, http11: bool) -> None:
        self.path = path
        self.creq = creq
        self.decision = decision
        self.client = client
        self.connection = connection
        self.http11 = http11
        self.started = False
        self.body = False  # a body follows the head
        self.open_ended = False  # no declared length: the head goes out at once
        self.chunked = False
        self.length: int | None = None
        self.head_bytes = b""

    def error(self, exc: CacheError) -> None:
        fields, body = error_answer(exc, self.path.engine, self.creq.method, self.creq.target)
        self.client.write(serialise(exc.status, fields) + self.path.date_line()
                          + self.connection + b"\r\n" + body)

    def begin(self, head: FlightHead, owner: bool, *, body_length: int | None = None) -> None:
        """Count the answer and make its head (``flight_fields``); ``body_length``: the
        length of a HEAD's body the upstream did not declare."""
        self.started = True
        _headers, _status, _age, fields = self.path.engine.flight_fields(
            self.decision, head, owner, revalidated=False)
        date = self.path.date_line() if fields.first("date") is None else b""
        status = head.status
        if body_length is not None:
            fields = fields.with_field("Content-Length", str(body_length))
        if self.creq.method == "HEAD" or status in (204, 304):
            self.head_bytes = serialise(status, fields) + date + self.connection + b"\r\n"
            self.length = 0
            return
        self.body = True
        length = self.length = head.content_length
        self.open_ended = length is None
        self.chunked = length is None and self.http11
        if self.chunked:
            fields = fields.without("transfer-encoding").appended(
                "Transfer-Encoding", "chunked")
        self.head_bytes = serialise(status, fields) + date + (
            self.connection if length is not None or self.http11 else CONNECTION_CLOSE) + b"\r\n"

    def flush_head(self) -> None:
        if self.head_bytes:
            self.client.write(self.head_bytes)
            self.head_bytes = b""

    def chunk(self, chunk: Chunk) -> None:
        if self.chunked:
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        if self.head_bytes:
            head, self.head_bytes = self.head_bytes, b""
            if len(chunk) >= JOIN_BELOW:  # a large first chunk: one writev, not a copy
                self.client.writelines([head, chunk])
                return
            chunk = head + chunk
        self.client.write(chunk)

    async def rest(self, reader: FlightReader) -> bool:
        """Write the rest of the body from ``reader`` as the client drains, then the end;
        whether the connection may carry another request (``end``): not when the client
        went away or the upstream broke off (the answer is cut)."""
        try:
            async for chunk in reader.chunks():
                if self.client.closing:
                    return False
                self.chunk(chunk)
                await self.client.drain()
        except (UpstreamError, StoreError) as exc:
            log.warning("%s %s: aborting response: %s", self.creq.method, self.creq.target,
                        exc.message)
            return False
        return self.end()

    def end(self) -> bool:
        """Write what is left (a head not sent yet, the last chunk); whether the connection
        may carry another request."""
        last = self.head_bytes + (b"0\r\n\r\n" if self.chunked else b"")
        self.head_bytes = b""
        if last:  # an empty write is still a call through the transport
            self.client.write(last)
        return (self.length is not None or self.http11) and not self.client.closing

    def push(self, reader: FlightReader) -> None:
        """Write what ``reader``'s flight has at hand (a flight's listener)."""
        if not self.started:
            head = reader.flight.head
            if head is None:
                return
            self.begin(head, owner=True)
            if self.open_ended and not reader.ready():
                self.flush_head()
        if not self.body:
            return
        if self.client.closing:
            # nobody to write to: let go of the chunks (a flight too large to keep drops
            # what every reader has passed) instead of holding them until ``run`` ends
            while reader.take() is not None:
                pass
            return
        flight = reader.flight
        if self.length is not None and self.length >= HOLD_LAST_ABOVE and (
                flight.received >= self.length):
            # the last chunk of a large body waits until the flight has stored it (after
            # ``run``): the fill (joining the body: ms on fresh memory for 10 MiB) then
            # delays this response's end, not the time to first byte of the client's next
            # request on this connection (measured: 10 MiB TTFB 1.3 -> 9-12 ms otherwise)
            return
        while self.client.writable():
            chunk = reader.take()
            if chunk is None:
                return
            self.chunk(chunk)


class _CallbackEnd:
    """What ``start_miss`` does when its flight has ended (``serve_miss`` after ``run``):
    write what the client could not take yet, or the error if there was no head, and tell
    the protocol (``done``). What a paused client still cannot take (or a body the upstream
    broke off) is written by a task, as ``serve_miss`` writes it (``_MissAnswer.rest``)."""

    __slots__ = ("answer", "done", "reader")

    def __init__(self, answer: _MissAnswer, done: Callable[[bool], None]) -> None:
        self.answer = answer
        self.done = done
        self.reader: FlightReader | None = None

    def __call__(self) -> None:
        try:
            reusable = self._end()
        except Exception:
            log.exception("miss on the hit path failed; closing the connection")
            reusable = False
        if reusable is not None:
            self.done(reusable)

    def _end(self) -> bool | None:
        """Whether the connection may carry another request, or ``None``: a task goes on."""
        reader, answer = self.reader, self.answer
        assert reader is not None
        flight = reader.flight
        flight.listener = None
        head = flight.head
        if head is None:
            reader.close()
            error = flight.error
            if isinstance(error, CacheError):  # as httpcache.app's errors_middleware does
                answer.error(error)
                return True
            if not isinstance(error, asyncio.CancelledError):  # shutting down: say nothing
                log.error("%s %s: the fill failed: %r", answer.creq.method,
                          answer.creq.target, error)
            return False
        if not answer.started:
            answer.begin(head, owner=True)
        client = answer.client
        if answer.body and not reader.drained():
            if flight.error is None:  # else the task writes what came, then cuts the answer
                while client.writable():
                    chunk = reader.take()
                    if chunk is None:
                        break
                    answer.chunk(chunk)
            if not reader.drained():
                task = asyncio.get_running_loop().create_task(self._rest())
                draining = self.answer.path.draining
                draining.add(task)
                task.add_done_callback(draining.discard)
                return None
        reader.close()
        return answer.end()

    async def _rest(self) -> None:
        reader = self.reader
        assert reader is not None
        reusable = False
        try:
            with reader:
                reusable = await self.answer.rest(reader)
        except Exception:
            log.exception("miss on the hit path failed; closing the connection")
        finally:
            self.done(reusable)


# Request fields whose answers the engine derives from a complete response (conditionals,
# ranges): such misses go to the application.
_ANSWERED_BY_ENGINE = frozenset({"range", "if-range", "if-none-match", "if-modified-since",
                                 "if-match", "if-unmodified-since"})


class MissPlan:
    """A plain miss the protocol layer may answer (``HitPath.serve_miss``)."""

    __slots__ = ("creq", "decision")

    def __init__(self, creq: CacheRequest, decision: Miss) -> None:
        self.creq = creq
        self.decision = decision
