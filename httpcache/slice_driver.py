"""The I/O side of sliced objects (``httpcache.slices`` has the arithmetic and the rules).

``SliceDriver.serve`` answers a request for a sliced object (or a ranged miss that makes one):

1. the record's freshness is decided by ``policy.decide`` like any stored response;
2. *before the response head is sent*, one upstream request is made when anything is
   missing or must be validated: the first missing slice the request needs (or, for a cold
   object, the slice holding the first requested byte; for a cold single suffix range
   ``bytes=-N``, the suffix ``bytes=-max(N, slice size)``, which holds every byte asked for
   and the whole last slice, and whose Content-Range tells the length: every whole slice in
   it is stored, the leading partial one is not), or a conditional ``Range`` +
   ``If-None-Match`` for the first needed slice when everything is cached but stale. Its
   206 tells the complete length and the representation; a different one (ETag,
   Last-Modified or length changed) replaces the record, and the plan is made again for the
   new representation, so a change seen here restarts cleanly;
3. the head is sent from the record (200, 206, multipart 206, 416, 304, HEAD), then the
   slices are streamed in order: stored ones from memory or the disk tier, missing ones
   fetched as the stream reaches them (one slice ahead). Each slice fetch is a flight of
   the ``Collapser`` keyed by slice, so concurrent requests touching one missing slice make
   one upstream request. A later slice of another representation can only cut the response
   (the head is gone): the connection is closed and the record forgotten.

A stale record that ``stale-while-revalidate`` allows is served at once (RFC 5861 §3) while
one background flight revalidates it (slice 0 with ``If-None-Match``); ``only-if-cached`` is
answered from the record and slices when every needed slice is stored, else 504.

An upstream that answers a slice request with anything but a 206 (it ignores ``Range``, or a
404, …) is handled like an ordinary miss (``CacheEngine._receive``): a 200 is stored as a
complete response, as before slicing. A 206 that cannot be stored as a slice (no strong
validator, no complete length, not the span asked for, ``Vary``, ``private``…) makes the
request be forwarded as the client sent it, and the key is remembered as unsliceable
(``slices.UnsliceableKeys``, bounded and expiring): later ranged misses make one upstream
request, the ordinary whole fetch when the complete response would be stored, else the
client's request forwarded.

Slices are never written to the shared Redis tier (its entries are whole responses).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from httpcache.body_sink import BodySink
from httpcache.cache_status import CacheStatus
from httpcache.collapse import Flight, FlightHead, FlightReader, NotShareable
from httpcache.conditional import not_modified, requested_ranges
from httpcache.disk_store import read_range
from httpcache.errors import OnlyIfCachedMiss, SliceMismatch, UpstreamError
from httpcache.forwarding import (
    client_response_fields,
    fill_request_fields,
    multipart_fields,
    part_fields,
    partial_base,
    whole_fields,
)
from httpcache.freshness import ERROR_STATUSES
from httpcache.headers import Fields
from httpcache.messages import CacheRequest, Chunk, StoredResponse
from httpcache.policy import (
    FreshHit,
    GatewayTimeout,
    Miss,
    Pass,
    StaleHit,
    current_age,
    decide,
    effective_request_directives,
    fields_to_store,
    is_storable,
    response_304_matches,
    stored_lifetime,
    surrogate_keys,
    update_from_304,
    vary_field_names,
)
from httpcache.ranges import (
    ByteRange,
    Unsatisfiable,
    multipart_content_type,
    multipart_heads,
    new_boundary,
)
from httpcache.slices import (
    RECORD_SLOT,
    ContentRange,
    Representation,
    SliceCoverage,
    SliceLayout,
    UnsliceableKeys,
    combined_fields,
    first_slice_guess,
    is_slice_of,
    is_suffix_of,
    parse_content_range,
    record_representation,
    representation_of,
    slice_request_range,
    slice_slot,
    suffix_length,
    suffix_request_range,
)
from httpcache.store import FetchMark
from httpcache.upstream import UpstreamResponse

if TYPE_CHECKING:
    from httpcache.engine import CacheEngine

log = logging.getLogger("cdn.httpcache.slices")


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one request needs of one representation."""

    record: StoredResponse
    rep: Representation
    layout: SliceLayout
    parts: list[ByteRange] | Unsatisfiable | None  # None: the whole representation
    needed: list[int]


@dataclass(slots=True)
class _Fetch:
    """A slice flight this request reads (``owner``: it started it)."""

    reader: FlightReader
    owner: bool
    head: FlightHead | None = None
    suffix: int | None = None  # a cold suffix request of this many bytes (index is -1)
    start: int | None = None  # the representation offset of the flight's first byte


class SliceDriver:
    def __init__(self, engine: CacheEngine, size: int) -> None:
        self.engine = engine
        self.size = size
        self.unsliceable = UnsliceableKeys()

    # -- stored parts ----------------------------------------------------------------------------

    def record(self, key: str) -> StoredResponse | None:
        return self.engine.store.get(f"{key}\x00{RECORD_SLOT}")

    def has_record(self, key: str) -> bool:
        """Whether ``key`` is cached in slices (without counting a read)."""
        return f"{key}\x00{RECORD_SLOT}" in self.engine.store

    def _slice_key(self, key: str, rep: Representation, index: int) -> str:
        return f"{key}\x00{slice_slot(rep, self.size, index)}"

    def _stored_slice(self, plan: _Plan, index: int) -> StoredResponse | None:
        entry = self._slice_key(plan.record.cache_key, plan.rep, index)
        found = self.engine.store.get(entry)
        if found is None and self.engine.disk is not None:
            found = self.engine.disk.index.get(entry)
        first, last = plan.layout.span(index)
        if found is not None and found.body_length != last - first + 1:
            return None
        return found

    def forget(self, key: str) -> None:
        """Remove the record of ``key`` and every slice of its representation."""
        record = self.engine.store.peek(f"{key}\x00{RECORD_SLOT}")
        if record is None:
            return
        self._drop_slices(record)
        self.engine.tiers.delete_entry(record.entry_key)

    def _drop_slices(self, record: StoredResponse) -> None:
        rep = record_representation(record.headers)
        if rep is None:
            return
        for index in range(SliceLayout(self.size, rep.total).count):
            self.engine.tiers.delete_entry(self._slice_key(record.cache_key, rep, index))

    # -- serving ---------------------------------------------------------------------------------

    async def route(self, request: web.Request, creq: CacheRequest, decision: Miss,
                    now: float, *, reflecting: bool = False) -> web.StreamResponse:
        """A ``uri-miss`` for a key that may be sliced: served from its record and slices,
        or a ranged GET that makes them, or (a full GET, HEAD, or a key known to be
        unsliceable) the ordinary path (``reflecting``: as ``CacheEngine.flight_fields``;
        sliced answers say nothing of purges)."""
        engine = self.engine
        record = self.record(creq.target)
        if record is not None:
            return await self.serve(request, creq, decision, record)
        if creq.method != "GET" or not creq.headers.first("range"):
            return await engine._fetch_and_answer(request, creq, decision,
                                                  reflecting=reflecting)
        match self.unsliceable.verdict(creq.target, now):
            case None:
                return await self.serve(request, creq, decision, None)
            case True:
                return await engine._fetch_and_answer(request, creq, decision,
                                                      reflecting=reflecting)
            case False:
                return await engine._forward(request, creq, decision.reason)
        raise AssertionError("unreachable")  # pragma: no cover

    async def serve(self, request: web.Request, creq: CacheRequest, decision: Miss,
                    record: StoredResponse | None) -> web.StreamResponse:
        engine = self.engine
        now = engine.clock()
        validate = False
        stale_why: str | None = None  # served stale with this permission
        only_if_cached = effective_request_directives(creq, engine.config.policy).only_if_cached
        if record is not None:
            match decide(creq, record, now, engine.config.policy):
                case FreshHit():
                    pass
                case StaleHit(why=why, revalidate=revalidate):
                    stale_why = why
                    if revalidate:  # RFC 5861 §3: stale now, one revalidation in background
                        self._revalidate_in_background(creq, record)
                case GatewayTimeout():
                    raise OnlyIfCachedMiss("only-if-cached: no usable stored response")
                case Pass(reason=reason):
                    return await engine._forward(request, creq, reason)
                case _:
                    validate = True
            if record_representation(record.headers) is None:
                self.forget(creq.target)
                record = None
        if only_if_cached and (record is None or self._missing(creq, record)):
            # §5.2.1.7: "respond using a stored response ... or respond with a 504"
            raise OnlyIfCachedMiss("only-if-cached: a needed slice is not stored")
        if creq.method == "HEAD" and (record is None or validate):
            return await engine._fetch_and_answer(request, creq, decision)
        had_record = record is not None
        fetches: dict[int, _Fetch] = {}
        try:
            probe = self._probe_for(creq, record, validate)
            fwd_status: int | None = None
            collapsed = False
            stale_error: int | None = None  # serving stale on this upstream failure
            if probe is not None:
                index, validators, validating = probe
                fetch = self._join(creq, index, validators,
                                   suffix=suffix_length(creq.headers.first("range"))
                                   if index < 0 else None)
                try:
                    head = await self._head(creq, index, fetch, validators)
                except UpstreamError:
                    fetch.reader.close()
                    if not (validating and self._may_serve_stale(creq, record)):
                        raise
                    head = FlightHead(status=502, headers=Fields(), shared_headers=None,
                                      fwd_status=502)
                fwd_status, collapsed = head.fwd_status, not fetch.owner
                if head.fwd_status in ERROR_STATUSES \
                        and validating and self._may_serve_stale(creq, record):
                    fetch.reader.close()
                    stale_error = head.fwd_status
                elif head.status == 304 or (head.status == 206 and head.refreshed is not None):
                    assert head.refreshed is not None
                    if head.refreshed is not record:
                        stale_why = None  # a new or refreshed record: not served stale
                    record = head.refreshed
                    if head.status == 206:
                        fetches[index] = fetch
                        content_range = parse_content_range(head.headers.first("content-range"))
                        fetch.start = content_range.first if content_range else None
                    else:
                        fetch.reader.close()
                elif head.status == 206:  # a partial response we cannot store as a slice
                    fetch.reader.close()
                    self.unsliceable.add(creq.target, now, whole=self._whole_is_storable(
                        creq, head.headers))
                    return await engine._forward(request, creq, decision.reason)
                else:  # a complete response (Range ignored) or an error: the ordinary path
                    try:
                        return await engine._answer_from_flight(
                            request, creq, decision, fetch.reader, head, fetch.owner,
                            revalidated=False)
                    finally:
                        fetch.reader.close()
            assert record is not None
            plan = self._plan(creq, record)
            if -1 in fetches:
                self._spread_suffix(plan, fetches, fetches.pop(-1))
            for index in [i for i in fetches if i not in plan.needed]:
                fetches.pop(index).reader.close()
            cached = sum(1 for i in plan.needed
                         if i not in fetches and self._stored_slice(plan, i) is not None)
            coverage = SliceCoverage(len(plan.needed), cached)
            status = self._cache_status(plan, coverage, had_record, validate, fwd_status,
                                        collapsed, now, stale_why)
            if stale_error is not None:
                status = CacheStatus(engine.config.name, fwd="stale", fwd_status=stale_error,
                                     ttl=status.ttl, detail="stale-if-error")
            return await self._answer(request, creq, plan, fetches, status, now)
        finally:
            for fetch in fetches.values():
                fetch.reader.close()

    @staticmethod
    def _spread_suffix(plan: _Plan, fetches: dict[int, _Fetch], fetch: _Fetch) -> None:
        """The response to a cold suffix request holds every byte the request needs: each
        needed slice reads its part of it (with a reader of its own)."""
        with fetch.reader:
            parts = plan.parts if isinstance(plan.parts, list) else None
            if fetch.start is None or not parts or parts[0].first < fetch.start:
                return
            for index in plan.needed:
                fetches[index] = _Fetch(fetch.reader.flight.reader(), fetch.owner, fetch.head,
                                        fetch.suffix, fetch.start)

    def _missing(self, creq: CacheRequest, record: StoredResponse) -> bool:
        plan = self._plan(creq, record)
        return any(self._stored_slice(plan, i) is None for i in plan.needed)

    def _whole_is_storable(self, creq: CacheRequest, headers: Fields) -> bool:
        """Whether the complete response of a key whose 206 could not be stored as a slice
        would be stored (it is cacheable and some tier holds its length): then later ranged
        misses fetch it whole; otherwise they forward the client's Range."""
        engine = self.engine
        as_get = CacheRequest("GET", creq.target, creq.headers)
        if not is_storable(as_get, 200, headers, engine.config.policy):
            return False
        content_range = parse_content_range(headers.first("content-range"))
        total = content_range.length if content_range is not None else None
        if total is None:
            return True
        return engine.store.fits(total) or (
            engine.disk is not None and engine.disk.wants(total))

    def _revalidate_in_background(self, creq: CacheRequest, record: StoredResponse) -> None:
        """RFC 5861 §3 for a sliced object: one conditional ``Range`` request for slice 0
        (``If-None-Match`` with the stored ETag, or a plain slice request when the strong
        validator is a Last-Modified date), whose 304 refreshes the record and whose 206 of
        another representation replaces it. A flight already running for it is that one
        revalidation; nobody reads it, it only refreshes the store."""
        etag = record.headers.first("etag")
        validators = Fields([("If-None-Match", etag)]) if etag else None
        if self.engine.collapser.busy(self._flight_key(creq.target, 0, validators)):
            return
        self._join(creq, 0, validators).reader.close()

    def _may_serve_stale(self, creq: CacheRequest, record: StoredResponse | None) -> bool:
        """RFC 5861 §4 stale-if-error, when every needed slice is stored (the failed request
        was only a validation)."""
        return record is not None and self.engine._may_serve_stale(creq, record)

    def _probe_for(self, creq: CacheRequest, record: StoredResponse | None, validate: bool
                   ) -> tuple[int, Fields | None, bool] | None:
        """The one upstream request made before the head, if any: (slice, validators,
        whether it only validates what is stored)."""
        if record is None:
            requested = creq.headers.first("range")
            if suffix_length(requested) is not None:
                return -1, None, False
            return first_slice_guess(requested, self.size), None, False
        plan = self._plan(creq, record)
        missing = [i for i in plan.needed if self._stored_slice(plan, i) is None]
        if missing:
            return missing[0], None, False
        if not validate:
            return None
        etag = record.headers.first("etag")
        # RFC 9111 §4.3.1: Last-Modified is sent only "if the request is not for a subrange"
        validators = Fields([("If-None-Match", etag)]) if etag else None
        return (plan.needed[0] if plan.needed else 0), validators, True

    def _plan(self, creq: CacheRequest, record: StoredResponse) -> _Plan:
        rep = record_representation(record.headers)
        assert rep is not None
        layout = SliceLayout(self.size, rep.total)
        parts = requested_ranges(creq, record.status, record.headers, rep.total)
        needed = [] if isinstance(parts, Unsatisfiable) else layout.needed(parts)
        if creq.method == "HEAD":
            needed = []
        return _Plan(record, rep, layout, parts, needed)

    def _cache_status(self, plan: _Plan, coverage: SliceCoverage, had_record: bool,
                      validate: bool, fwd_status: int | None, collapsed: bool, now: float,
                      stale_why: str | None) -> CacheStatus:
        engine = self.engine
        record = plan.record
        left = stored_lifetime(record, engine.config.policy) - current_age(
            record.headers, record.request_time, record.response_time, now)
        ttl = int(left) - (left < 0)  # as the engine counts it: negative once stale
        name = engine.config.name
        if validate:
            engine.counter(
                "revalidated" if fwd_status == 304 else "refetched").inc()
            return CacheStatus(name, fwd="stale", fwd_status=fwd_status,
                               stored=not coverage.complete, collapsed=collapsed)
        reason = coverage.forward_reason(had_record)
        if reason is None:
            engine.counter("stale" if stale_why else "hit").inc()
            return CacheStatus(name, hit=True, ttl=ttl, detail=stale_why)
        engine.counter(
            "collapsed" if collapsed else "partial" if reason == "partial" else "miss").inc()
        return CacheStatus(name, fwd="partial" if reason == "partial" else "uri-miss",
                           fwd_status=fwd_status, stored=True, collapsed=collapsed,
                           detail=stale_why)

    async def _answer(self, request: web.Request, creq: CacheRequest, plan: _Plan,
                      fetches: dict[int, _Fetch], cache_status: CacheStatus, now: float
                      ) -> web.StreamResponse:
        from httpcache.engine import _stream  # noqa: PLC0415 (engine imports this module)

        engine = self.engine
        record = plan.record
        age = int(current_age(record.headers, record.request_time, record.response_time, now))
        fields = client_response_fields(record.headers, cache_status, via=engine.config.name,
                                        age=age, strip=engine._strip)
        if not_modified(creq.method, creq.headers, 200, record.headers):
            return engine._not_modified(fields)
        total = plan.rep.total
        match plan.parts:
            case Unsatisfiable() as bad:
                return engine._unsatisfiable(fields, bad)
            case [ByteRange() as part]:
                chunks = self._bytes(creq, plan, fetches, [part], None)
                return await _stream(request, 206, part_fields(partial_base(fields), part), chunks)
            case [ByteRange(), ByteRange(), *_] as parts:
                boundary = new_boundary()
                fields = multipart_fields(fields, multipart_content_type(boundary))
                framing = multipart_heads(parts, record.headers.first("content-type"),
                                          boundary)
                chunks = self._bytes(creq, plan, fetches, parts, framing)
                return await _stream(request, 206, fields, chunks)
        fields = whole_fields(fields, 200, total)
        if creq.method == "HEAD":
            return await _stream(request, 200, fields, None)
        whole = [ByteRange(0, total - 1, total)] if total else []
        return await _stream(request, 200, fields,
                             self._bytes(creq, plan, fetches, whole, None))

    async def _bytes(self, creq: CacheRequest, plan: _Plan, fetches: dict[int, _Fetch],
                     parts: list[ByteRange], framing: tuple[list[bytes], bytes] | None
                     ) -> AsyncIterator[Chunk]:
        """The bytes of ``parts`` (with multipart ``framing``), slice by slice, starting the
        fetch of the next missing slice while one is being sent."""
        try:
            for number, part in enumerate(parts):
                if framing is not None:
                    yield framing[0][number]
                for index, offset, end in plan.layout.pieces(part.first, part.last):
                    self._fetch_ahead(creq, plan, fetches, index)
                    async for chunk in self._slice_bytes(creq, plan, fetches, index, offset,
                                                         end):
                        yield chunk
            if framing is not None:
                yield framing[1]
        finally:
            for fetch in fetches.values():
                fetch.reader.close()

    def _fetch_ahead(self, creq: CacheRequest, plan: _Plan, fetches: dict[int, _Fetch],
                     index: int) -> None:
        position = plan.needed.index(index) if index in plan.needed else len(plan.needed)
        for later in plan.needed[position + 1:position + 2]:
            if later not in fetches and self._stored_slice(plan, later) is None:
                fetches[later] = self._join(creq, later, None)

    async def _slice_bytes(self, creq: CacheRequest, plan: _Plan, fetches: dict[int, _Fetch],
                           index: int, offset: int, end: int
                           ) -> AsyncIterator[Chunk]:
        """Bytes ``offset..end-1`` of slice ``index``: stored, or from its flight."""
        fetch = fetches.pop(index, None)
        if fetch is None:
            stored = self._stored_slice(plan, index)
            if stored is not None and stored.file is None:
                yield stored.body[offset:end]
                return
            if stored is not None and self.engine.disk is not None:
                try:
                    handle = self.engine.disk.open(stored)
                except FileNotFoundError:
                    self.engine.disk.delete_entry(stored.entry_key)
                else:
                    async for piece in read_range(handle, offset, end - 1):
                        yield piece
                    return
            fetch = self._join(creq, index, None)
        with fetch.reader:
            head = fetch.head or await self._head(creq, index, fetch, None)
            got = head.refreshed
            if head.status != 206 or got is None \
                    or record_representation(got.headers) != plan.rep:
                self.forget(creq.target)
                raise SliceMismatch(f"slice {index} of {creq.target} belongs to another "
                                    "representation; the record is dropped")
            skip = plan.layout.span(index)[0] - fetch.start if fetch.start is not None else 0
            offset, end = offset + skip, end + skip
            position = 0
            async for chunk in fetch.reader.chunks():
                start, position = position, position + len(chunk)
                if position > offset and start < end:
                    yield chunk[max(0, offset - start):end - start]
                if position >= end:
                    return

    # -- slice flights -----------------------------------------------------------------------

    def _join(self, creq: CacheRequest, index: int, validators: Fields | None, *,
              shared: bool = True, suffix: int | None = None) -> _Fetch:
        """Join (or start) the flight for slice ``index``, or for a cold suffix request
        (``index`` -1, ``suffix`` bytes): see ``suffix_request_range``."""
        engine = self.engine
        headers = fill_request_fields(creq.headers, via=engine.config.name, peer=None,
                                      drop=engine._drop, validators=validators)
        asked = (suffix_request_range(self.size, suffix) if suffix is not None
                 else slice_request_range(self.size, index))
        headers = headers.with_field("Range", asked)
        producer = functools.partial(self._produce, creq=creq, index=index, headers=headers,
                                     validated=self.record(creq.target) if validators else None)
        key = (f"{creq.target}\x00#fetch:{asked}" if suffix is not None
               else self._flight_key(creq.target, index, validators))
        reader, owner = engine.collapser.join(key, producer, shared=shared)
        return _Fetch(reader, owner, suffix=suffix)

    def _flight_key(self, key: str, index: int, validators: Fields | None) -> str:
        return f"{key}\x00#fetch:{self.size}:{index}:{'v' if validators else ''}"

    async def _head(self, creq: CacheRequest, index: int, fetch: _Fetch,
                    validators: Fields | None) -> FlightHead:
        """The flight's head; someone else's private answer or a head slower than
        ``collapse_timeout`` makes the request fetch on its own (``fetch`` is updated)."""
        try:
            head = await self.engine.wait_head(fetch.reader, fetch.owner)
        except (NotShareable, TimeoutError):
            fetch.reader.close()
            own = self._join(creq, index, validators, shared=False, suffix=fetch.suffix)
            fetch.reader, fetch.owner = own.reader, True
            head = await fetch.reader.head(owner=True)
        fetch.head = head
        return head

    async def _produce(self, flight: Flight, *, creq: CacheRequest, index: int,
                       headers: Fields, validated: StoredResponse | None) -> None:
        """The one upstream exchange of a slice flight (runs in the flight's task)."""
        engine = self.engine
        flight.method = "GET"
        since = engine.store.fetch_mark()
        for _attempt in range(2):
            request_time = engine.clock()
            async with engine._upstream("GET", creq.target, headers) as up:
                response_time = engine.clock()
                if up.status == 304 and validated is not None:
                    if response_304_matches(validated, up.headers):
                        self._refresh(flight, creq, validated, up, request_time,
                                      response_time, since)
                        return
                    headers = headers.without("if-none-match")
                    validated = None
                    continue  # §4.3.4: a 304 for another representation; ask for the bytes
                if up.status != 206:
                    self.forget(creq.target)
                    await engine._receive(flight, creq, "GET", up, request_time,
                                          response_time, fills=up.status != 416, since=since)
                    return
                await self._receive(flight, creq, index, up, request_time, response_time,
                                    since)
                return

    def _refresh(self, flight: Flight, creq: CacheRequest, record: StoredResponse,
                 up: UpstreamResponse, request_time: float, response_time: float,
                 since: FetchMark) -> None:
        engine = self.engine
        policy = engine.config.policy
        refreshed = update_from_304(record, up.headers, request_time, response_time, policy)
        as_get = CacheRequest("GET", creq.target, creq.headers)
        keep = is_storable(as_get, 200, refreshed.headers, policy)
        if keep:
            engine.store.put(refreshed, fetched=since)
        else:
            self.forget(creq.target)
        flight.publish_head(FlightHead(
            status=304, headers=refreshed.headers, shared_headers=refreshed.headers,
            fwd_status=304, stored=keep, request_time=request_time,
            response_time=response_time, refreshed=refreshed))

    async def _receive(self, flight: Flight, creq: CacheRequest, index: int,
                       up: UpstreamResponse, request_time: float, response_time: float,
                       since: FetchMark) -> None:
        """Relay a 206 to the flight's readers and store every whole slice in it (the one
        asked for; one or more at the end of a cold suffix request's answer)."""
        engine = self.engine
        content_range = parse_content_range(up.headers.first("content-range"))
        record = self._combine(creq, index, up.headers, content_range, request_time,
                               response_time, since)
        flight.publish_head(FlightHead(
            status=206, headers=up.headers,
            shared_headers=fields_to_store(up.headers, engine.config.policy)
            if record is not None else None,
            content_length=content_range.size if content_range is not None else None,
            fwd_status=206, stored=record is not None, request_time=request_time,
            response_time=response_time, refreshed=record))
        if record is None or content_range is None:
            engine.collapser.close_to_newcomers(flight)
            async for chunk in up.chunks:
                flight.feed(chunk)
            return
        rep = record_representation(record.headers)
        assert rep is not None
        layout = SliceLayout(self.size, rep.total)
        whole = layout.within(content_range.first, content_range.last)
        position = content_range.first  # of the next byte received
        sink: BodySink | None = None
        try:
            async for chunk in up.chunks:
                flight.feed(chunk)
                done = 0
                while done < len(chunk):  # route the chunk's bytes to the slices they are in
                    at = position + done
                    slice_index = at // self.size
                    first, last = layout.span(slice_index)
                    take = min(len(chunk) - done, last - at + 1)
                    if slice_index in whole:
                        if sink is None:
                            sink = BodySink(engine.store, engine.disk, last - first + 1)
                        await sink.add(chunk[done:done + take] if take < len(chunk) else chunk)
                        if at + take - 1 == last:
                            await self._keep_slice(creq, record, rep, slice_index, sink,
                                                   request_time, response_time, since)
                            sink = None
                    done += take
                position += len(chunk)
        finally:
            if sink is not None:  # cut short: keep no partial slice
                sink.drop()

    async def _keep_slice(self, creq: CacheRequest, record: StoredResponse,
                          rep: Representation, index: int, sink: BodySink,
                          request_time: float, response_time: float, since: FetchMark
                          ) -> None:
        first, last = SliceLayout(self.size, rep.total).span(index)
        if not sink.keeping or sink.size != last - first + 1:
            sink.drop()
            return
        entry = StoredResponse(
            cache_key=creq.target, status=206,
            headers=Fields([("Content-Range", f"bytes {first}-{last}/{rep.total}")]),
            body=sink.body(), request_time=request_time, response_time=response_time,
            surrogate_keys=record.surrogate_keys, slot=slice_slot(rep, self.size, index))
        engine = self.engine
        if sink.writer is not None:
            assert engine.disk is not None
            await engine.disk.commit(sink.writer, entry)
        else:
            engine.store.put(entry, fetched=since)

    def _combine(self, creq: CacheRequest, index: int, headers: Fields,
                 content_range: ContentRange | None, request_time: float,
                 response_time: float, since: FetchMark) -> StoredResponse | None:
        """The record after a 206 for slice ``index`` (or for a cold suffix request, ``index``
        -1) (stored), or ``None`` if the 206 cannot be stored as that slice."""
        engine = self.engine
        policy = engine.config.policy
        total = content_range.length if content_range is not None else None
        rep = representation_of(headers, total)
        as_get = CacheRequest("GET", creq.target, creq.headers)
        if rep is None or vary_field_names(headers) \
                or not is_slice_of(content_range, SliceLayout(self.size, rep.total), index) \
                and not (index < 0 and is_suffix_of(content_range, rep.total)) \
                or not is_storable(as_get, 206, headers, policy, partial=True):
            return None
        old = engine.store.peek(f"{creq.target}\x00{RECORD_SLOT}")
        base = None
        if old is not None:
            if record_representation(old.headers) == rep:
                base = old.headers
            else:
                log.info("%s: representation changed; dropping its slices", creq.target)
                self.forget(creq.target)
        kept = combined_fields(base, fields_to_store(headers, policy), rep.total)
        record = StoredResponse(cache_key=creq.target, status=200, headers=kept, body=b"",
                                request_time=request_time, response_time=response_time,
                                surrogate_keys=surrogate_keys(kept), slot=RECORD_SLOT)
        engine.store.put(record, fetched=since)
        return record
