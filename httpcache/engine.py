"""The request driver shared by edge and shield: one I/O step per policy decision.

``CacheEngine.handle`` turns an aiohttp request into a ``CacheRequest``, looks up the store,
asks ``policy.decide`` and then does exactly one thing:

* ``FreshHit``    → answer from the stored response (304 / 206 / multipart 206 / 416 / 200 /
  HEAD), with ``Age`` and ``Cache-Status: hit; ttl=…``;
* ``StaleHit``    → the same for a stale response the client (max-stale) or the origin
  (stale-while-revalidate) allows; for the latter one background revalidation is started
  unless a fetch for the key is already running;
* ``Miss``        → fetch (collapsed into one flight per key), stream, maybe store; a HEAD
  is forwarded as HEAD, and its 200 updates the stored GET response it describes or makes
  it stale (RFC 9111 §4.3.5, ``policy.update_from_head``);
* ``Revalidate``  → conditional fetch with the stored validators (also collapsed); a 304 is
  merged by ``policy.update_from_304``, anything else replaces the stored response;
* ``Pass``        → forward the request as is, any method, body streamed; unsafe methods
  invalidate the key (RFC 9111 §4.4);
* ``GatewayTimeout`` → 504 for ``only-if-cached``.

When a revalidation or refetch fails (connection error, timeout, or a 500/502/503/504 from
upstream) and ``may_serve_stale_on_error`` allows it (RFC 5861 stale-if-error, or the tier's
default window), the stale response is served with ``Cache-Status: fwd=stale;
fwd-status=…; detail=stale-if-error``. A collapsed request waits at most
``collapse_timeout`` for the head, then fetches on its own; the first fetch goes on and still
fills the cache.

Clients' own conditionals and ranges are answered here from the (stored or just fetched)
complete response; the upstream is asked for the full representation. The exception is a
ranged miss, and any request for an object already cached in slices: ``SliceDriver``
(``httpcache.slice_driver``, rules in ``httpcache.slices``) fetches and stores only the fixed
slices the request touches, with ``Range`` requests upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from aiohttp import web
from multidict import CIMultiDict

from httpcache import purge_watermark
from httpcache.body_sink import BodySink
from httpcache.cache_key import cache_key, split_target
from httpcache.cache_status import CacheStatus, ForwardReason
from httpcache.collapse import Collapser, Flight, FlightHead, FlightReader, NotShareable
from httpcache.conditional import not_modified, not_modified_fields, requested_ranges
from httpcache.disk_store import DiskStore, file_multipart, read_range
from httpcache.errors import CacheError, OnlyIfCachedMiss, StoreError, UpstreamError
from httpcache.forwarding import (
    client_response_fields,
    fill_request_fields,
    forward_request_fields,
    multipart_fields,
    part_fields,
    partial_base,
    unsatisfiable_fields,
    whole_fields,
)
from httpcache.freshness import ERROR_STATUSES
from httpcache.headers import Fields
from httpcache.messages import Body, CacheRequest, Chunk, StoredResponse
from httpcache.metrics import CacheMetrics, PendingCount
from httpcache.policy import (
    CACHEABLE_METHODS,
    DEFAULT_POLICY,
    FreshHit,
    GatewayTimeout,
    Miss,
    Pass,
    PolicyConfig,
    Revalidate,
    StaleHit,
    current_age,
    decide,
    effective_request_directives,
    fields_to_store,
    invalidated_targets,
    invalidates,
    is_storable,
    is_worth_storing,
    make_stored_response,
    may_serve_stale_on_error,
    response_304_matches,
    selecting_fields,
    stored_age,
    stored_lifetime,
    update_from_304,
    update_from_head,
    validators_for,
    vary_matches,
)
from httpcache.ranges import (
    ByteRange,
    Unsatisfiable,
    multipart_byteranges,
    multipart_content_type,
    new_boundary,
)
from httpcache.shared_store import SharedStore
from httpcache.slice_driver import SliceDriver
from httpcache.slices import DEFAULT_SLICE_SIZE
from httpcache.store import FetchMark, MemoryStore
from httpcache.tiers import CacheTiers
from httpcache.upstream import CHUNK_SIZE, Upstream, UpstreamResponse

log = logging.getLogger("cdn.httpcache.engine")

class GateRequest(Protocol):
    """What a gate may look at: an aiohttp request, or the hit path's view of one."""

    @property
    def method(self) -> str: ...
    @property
    def remote(self) -> str | None: ...
    @property
    def headers(self) -> Any: ...  # CIMultiDictProxy or Fields: .get(name) either way


class PurgeLog(Protocol):
    """How far this tier has applied the purge log (``purge_subscriber.PurgeSubscriber``)."""

    async def applied_by(self, seq: int, patience: float) -> int: ...


# A gate sees every proxied request before the cache does: it may refuse it (raise a
# ``ClientSideError``) or rewrite the target (e.g. remove URL-signature parameters).
Gate = Callable[[GateRequest, str, float], str]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What differs between an edge and a shield running this engine."""

    name: str  # our member name in Cache-Status and Via
    policy: PolicyConfig = DEFAULT_POLICY
    strip_response_fields: frozenset[str] = frozenset()  # never sent to our clients
    drop_request_fields: frozenset[str] = frozenset()  # never sent upstream
    gates: Sequence[Gate] = field(default_factory=tuple)
    collapse_max_waiters: int = 1000  # beyond this, requests fetch on their own
    collapse_timeout: float = 10.0  # waiters give up on a slow head and fetch themselves
    slice_size: int = DEFAULT_SLICE_SIZE  # large objects cached in slices; 0 = never
    # answer a lower tier's ``CDN-Purge-Seq`` (``httpcache.purge_watermark``): the shield
    answers_purge_seq: bool = False




class CacheEngine:
    def __init__(self, config: EngineConfig, upstream: Upstream, store: MemoryStore,
                 metrics: CacheMetrics, *, clock: Callable[[], float] = time.time,
                 disk: DiskStore | None = None, shared: SharedStore | None = None) -> None:
        self.config = config
        self.upstream = upstream
        self.store = store
        self.disk = disk
        self.shared = shared
        self.tiers = CacheTiers(store, disk, shared)
        self._lower_tiers = disk is not None or shared is not None
        self.metrics = metrics
        self.clock = clock
        self.collapser = Collapser(max_waiters=config.collapse_max_waiters)
        self.purges: PurgeLog | None = None  # set when the tier follows the purge log
        # counted as plain ints, moved into prometheus_client's children when the registry
        # is collected (``PendingCount``): no lock and four calls less per increment
        self._counters: dict[str, PendingCount] = {}
        self._upstream_counters: dict[tuple[str, int | str], PendingCount] = {}
        metrics.on_collect(self._flush_counts)
        self._strip = frozenset(n.lower() for n in config.strip_response_fields)
        self._drop = frozenset(n.lower() for n in config.drop_request_fields)
        size = config.slice_size
        # sliced only where a slice can be kept (memory, or the disk tier)
        self.slices = (SliceDriver(self, size) if size and (
            store.fits(size) or (disk is not None and disk.wants(size))) else None)

    async def aclose(self) -> None:
        await self.collapser.aclose()

    def counter(self, result: str) -> PendingCount:
        """``cdn_requests_total{result}``, looked up once per label value."""
        count = self._counters.get(result)
        if count is None:
            count = self._counters[result] = PendingCount(self.metrics.requests.labels(result))
        return count

    def _upstream_counter(self, method: str, status: int | str) -> PendingCount:
        key = (method, status)
        count = self._upstream_counters.get(key)
        if count is None:
            if len(self._upstream_counters) > 256:  # methods/statuses are few; stay bounded
                self._flush_counts()
                self._upstream_counters.clear()
            count = self._upstream_counters[key] = PendingCount(
                self.metrics.upstream_requests.labels(method, str(status)))
        return count

    def _flush_counts(self) -> None:
        for count in self._counters.values():
            count.flush()
        for count in self._upstream_counters.values():
            count.flush()

    # -- the driver ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        target = request.raw_path
        if not target.startswith("/"):  # absolute-form request target
            target = request.rel_url.raw_path_qs
        for gate in self.config.gates:
            target = gate(request, target, now)
        key = cache_key(*split_target(target))
        creq = CacheRequest(request.method, key, Fields.indexed(request.headers.items()))
        reflects = None
        if self.config.answers_purge_seq and self.purges is not None:
            asked = creq.headers.first(purge_watermark.LOWER)
            if asked is not None:
                reflects = await self.purges.applied_by(purge_watermark.parse(asked),
                                                        purge_watermark.WAIT)
        cacheable = request.method in CACHEABLE_METHODS
        stored, vary_miss = self.store.lookup(key, creq.headers) if cacheable else (None, False)
        if stored is None and cacheable and self._lower_tiers \
                and (self.slices is None or not self.slices.has_record(key)):
            stored, vary_miss = await self._lookup_lower(key, creq, vary_miss)
        match decide(creq, stored, now, self.config.policy, vary_miss=vary_miss):
            case FreshHit(stored=hit, age=age, ttl=ttl):
                self.counter("hit").inc()
                status = CacheStatus(self.config.name, hit=True, ttl=int(ttl),
                                     purge_seq=reflects)
                if hit.file is not None:
                    return await self._answer_file(request, creq, hit, hit.headers, status,
                                                   int(age))
                return self._answer_complete(request, creq, hit.status, hit.headers, hit.body,
                                             status, age=int(age))
            case StaleHit(stored=hit, age=age, ttl=ttl, why=why, revalidate=revalidate):
                self.counter("stale").inc()
                if revalidate:
                    self._revalidate_in_background(request, creq, hit)
                status = CacheStatus(self.config.name, hit=True, ttl=int(ttl) - (ttl < 0),
                                     detail=why, purge_seq=reflects)
                if hit.file is not None:
                    return await self._answer_file(request, creq, hit, hit.headers, status,
                                                   int(age))
                return self._answer_complete(request, creq, hit.status, hit.headers, hit.body,
                                             status, age=int(age))
            case Miss(reason="uri-miss") as decision if self.slices is not None \
                    and creq.headers.first("authorization") is None:
                return await self.slices.route(request, creq, decision, now,
                                               reflecting=reflects is not None)
            case Revalidate() | Miss() as decision:
                return await self._fetch_and_answer(request, creq, decision,
                                                    reflecting=reflects is not None)
            case Pass(reason=reason):
                return await self._forward(request, creq, reason)
            case GatewayTimeout():
                if self.slices is not None and creq.headers.first("authorization") is None:
                    record = self.slices.record(key)
                    if record is not None:  # the slices may hold all it needs
                        return await self.slices.serve(request, creq, Miss("uri-miss"), record)
                raise OnlyIfCachedMiss("only-if-cached: no usable stored response")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _lookup_lower(self, key: str, creq: CacheRequest, vary_miss: bool
                            ) -> tuple[StoredResponse | None, bool]:
        """After a memory miss: the disk tier (metadata in memory, no I/O), then the shared
        tier (one Redis round trip), whose entries are promoted into memory."""
        if self.disk is not None:
            found, disk_vary_miss = self.disk.lookup(key, creq.headers)
            if found is not None:
                return found, False
            vary_miss = vary_miss or disk_vary_miss
        if self.shared is not None:
            found = await self.shared.get(key, creq.headers)
            if found is not None:
                self.metrics.shared_hits.inc()
                self.store.put(found)
                return found, False
        return None, vary_miss

    def _revalidate_in_background(self, request: web.Request, creq: CacheRequest,
                                  stored: StoredResponse) -> None:
        """RFC 5861 §3: serve stale now, revalidate once in the background. A flight already
        running for the key (another revalidation or a miss) is that one revalidation."""
        if self.collapser.busy(creq.target):
            return
        validators = validators_for(stored)
        producer = functools.partial(
            self._produce, creq=creq, method="GET",
            headers=fill_request_fields(creq.headers, via=self.config.name,
                                        peer=request.remote, drop=self._drop,
                                        validators=validators or None),
            stored=stored if validators else None, fills=True)
        reader, _owner = self.collapser.join(creq.target, producer)
        reader.close()  # nobody reads it: the flight only refreshes the store

    # -- answering from a complete body --------------------------------------------------------

    def _answer_complete(self, request: web.Request, creq: CacheRequest, status: int,
                         headers: Fields, body: Body, cache_status: CacheStatus,
                         age: int | None) -> web.Response:
        """Serve a response whose whole body is at hand, honouring the client's conditional
        and single-range requests (RFC 9111 §4.3.2, RFC 9110 §14)."""
        fields = client_response_fields(headers, cache_status, via=self.config.name, age=age,
                                        strip=self._strip)
        if not_modified(creq.method, creq.headers, status, headers):
            return self._not_modified(fields)
        match requested_ranges(creq, status, headers, len(body)):
            case [ByteRange() as part]:
                return _response(206, part_fields(partial_base(fields), part),
                                 body[part.first:part.last + 1])
            case [ByteRange(), ByteRange(), *_] as parts:
                content_type, payload = multipart_byteranges(
                    body, parts, headers.first("content-type"))
                return _response(206, multipart_fields(fields, content_type), payload)
            case Unsatisfiable() as bad:
                return self._unsatisfiable(fields, bad)
        return _response(status, whole_fields(fields, status, len(body)), body)

    def _not_modified(self, fields: Fields) -> web.Response:
        self.counter("not_modified").inc()
        return web.Response(status=304, headers=CIMultiDict(not_modified_fields(fields)))

    @staticmethod
    def _unsatisfiable(fields: Fields, bad: Unsatisfiable) -> web.Response:
        return _response(416, unsatisfiable_fields(fields, bad), b"")

    async def _answer_file(self, request: web.Request, creq: CacheRequest,
                           stored: StoredResponse, headers: Fields, cache_status: CacheStatus,
                           age: int | None) -> web.StreamResponse:
        """Serve a response whose body is a disk-tier file, streamed from the file: the same
        answers as ``_answer_complete`` (304, 206, multipart 206, 416, HEAD, 200)."""
        assert self.disk is not None and stored.file is not None
        try:
            handle = self.disk.open(stored)
        except FileNotFoundError:  # removed under us (by hand?): forget it, fetch again
            log.warning("disk tier: body of %s is gone; fetching it again", stored.cache_key)
            self.disk.delete_entry(stored.entry_key)
            decision = decide(creq, None, self.clock(), self.config.policy)
            if not isinstance(decision, Miss):
                raise OnlyIfCachedMiss("only-if-cached: no usable stored response") from None
            return await self._fetch_and_answer(request, creq, decision)
        length = stored.file.length
        fields = client_response_fields(headers, cache_status, via=self.config.name, age=age,
                                        strip=self._strip)
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(handle.close)
            if not_modified(creq.method, creq.headers, stored.status, headers):
                return self._not_modified(fields)
            status = stored.status
            chunks: AsyncIterator[bytes] | None
            match requested_ranges(creq, stored.status, headers, length):
                case [ByteRange() as part]:
                    fields = part_fields(partial_base(fields), part)
                    status, chunks = 206, read_range(handle, part.first, part.last)
                case [ByteRange(), ByteRange(), *_] as parts:
                    boundary = new_boundary()
                    fields = multipart_fields(fields, multipart_content_type(boundary))
                    status = 206
                    chunks = file_multipart(handle, parts, headers.first("content-type"),
                                             boundary)
                case Unsatisfiable() as bad:
                    return self._unsatisfiable(fields, bad)
                case _:
                    fields = whole_fields(fields, status, length)
                    chunks = read_range(handle, 0, length - 1) if length else None
            if creq.method == "HEAD":
                chunks = None
            if chunks is not None:
                cleanup.pop_all()  # the generator closes the file when it is done
            return await _stream(request, status, fields, chunks)


    # -- misses and revalidations --------------------------------------------------------------

    async def _fetch_and_answer(self, request: web.Request, creq: CacheRequest,
                                decision: Miss | Revalidate, *, reflecting: bool = False
                                ) -> web.StreamResponse:
        stored = decision.stored if isinstance(decision, Revalidate) else None
        fallback = decision.stored if isinstance(decision, Revalidate) else decision.stale
        try:
            reader, head, owner = await self.open_flight(creq, decision, request.remote)
        except UpstreamError as exc:
            if fallback is not None and self._may_serve_stale(creq, fallback):
                return await self._serve_stale_on_error(request, creq, fallback, None, exc)
            raise
        try:
            if (head.fwd_status in ERROR_STATUSES and fallback is not None
                    and self._may_serve_stale(creq, fallback)):
                return await self._serve_stale_on_error(request, creq, fallback,
                                                        head.fwd_status, None)
            return await self._answer_from_flight(request, creq, decision, reader, head, owner,
                                                  revalidated=stored is not None,
                                                  reflecting=reflecting)
        finally:
            reader.close()

    async def open_flight(self, creq: CacheRequest, decision: Miss | Revalidate,
                          remote: str | None) -> tuple[FlightReader, FlightHead, bool]:
        """Join (or start) the flight that fetches ``creq`` and wait for its head: the
        reader (close it when done), the head, and whether this request owns the flight.
        On an ``UpstreamError`` the reader is closed already."""
        producer = self._producer(creq, decision, remote)
        reader, owner = self.collapser.join(creq.target, producer, shared=decision.collapse)
        try:
            try:
                head = await self.wait_head(reader, owner)
                if not owner and not vary_matches(head.vary, creq.headers):
                    raise NotShareable(creq.target)  # another variant (RFC 9111 §4.1)
            except (NotShareable, TimeoutError):
                # someone else's private answer, or a head too slow in coming: fetch our own
                # (the slow flight goes on and still stores what it gets)
                reader.close()
                reader, owner = self.collapser.join(creq.target, producer, shared=False)
                head = await reader.head(owner=True)
        except BaseException:
            reader.close()
            raise
        return reader, head, owner

    def inline_flight(self, creq: CacheRequest, decision: Miss, remote: str | None
                      ) -> tuple[FlightReader, Callable[[], Awaitable[None]]] | None:
        """For a miss that fills the cache with a GET, when no flight for the key is running:
        a new shared flight the caller runs itself (``Collapser.start``), as its reader and
        the coroutine function that runs it (awaited by the caller; never raises but for
        cancellation, which the caller must not suffer meanwhile). ``None``: use
        ``open_flight``. Others join the flight as they would join one in its own task."""
        if creq.method != "GET" or not decision.store or not decision.collapse:
            return None
        flight = self.collapser.start(creq.target)
        if flight is None:
            return None
        producer = self._producer(creq, decision, remote)
        return flight.reader(), functools.partial(self.collapser.run, flight, producer)

    def _producer(self, creq: CacheRequest, decision: Miss | Revalidate, remote: str | None
                  ) -> Callable[[Flight], Awaitable[None]]:
        """The upstream exchange of a flight for ``decision``. The upstream request's
        fields are made only by the request that starts the flight, not by each waiter."""
        stored = decision.stored if isinstance(decision, Revalidate) else None
        fills = isinstance(decision, Revalidate) or decision.store

        def producer(flight: Flight) -> Awaitable[None]:
            return self._produce(
                flight, creq=creq, method="GET" if fills else creq.method,
                headers=self.fill_fields(creq, decision, remote), stored=stored, fills=fills)

        return producer

    def fill_fields(self, creq: CacheRequest, decision: Miss | Revalidate, remote: str | None
                    ) -> Fields:
        """The fields of the upstream request that fetches ``creq`` for ``decision``: with
        ``CDN-Purge-Seq`` while a purge is recent (``purge_watermark``)."""
        fields = fill_request_fields(
            creq.headers, via=self.config.name, peer=remote, drop=self._drop,
            validators=decision.validators if isinstance(decision, Revalidate) else None)
        ask = self.store.seq_to_ask()
        return fields.with_field(purge_watermark.FIELD, str(ask)) if ask else fields

    def flight_fields(self, decision: Miss | Revalidate, head: FlightHead, owner: bool, *,
                      revalidated: bool, reflecting: bool = False
                      ) -> tuple[Fields, CacheStatus, int | None, Fields]:
        """Count the answer, and what it is made of: the upstream's fields this request may
        see, its ``Cache-Status`` member, ``Age`` (of a shared response) and the fields to
        send (``client_response_fields``); ``reflecting``: with the purge sequence the
        flight's answer reflects (``purge_watermark``)."""
        self.counter(_result(owner, revalidated, head)).inc()
        headers = head.headers if owner else head.shared_headers
        assert headers is not None
        cache_status = CacheStatus(self.config.name, fwd=decision.reason,
                                   fwd_status=head.fwd_status, stored=head.stored and owner,
                                   collapsed=not owner,
                                   purge_seq=head.applied if reflecting else None)
        age = None
        if head.shared_headers is not None:
            age = int(current_age(headers, head.request_time, head.response_time, self.clock()))
        return headers, cache_status, age, client_response_fields(
            headers, cache_status, via=self.config.name, age=age, strip=self._strip)

    async def wait_head(self, reader: FlightReader, owner: bool) -> FlightHead:
        """The flight's head; a waiter gives up after ``collapse_timeout`` (TimeoutError)."""
        if owner:
            return await reader.head(owner=True)
        # a timer, not wait_for's extra task per waiter (a flash crowd has a thousand)
        async with asyncio.timeout(self.config.collapse_timeout):
            return await reader.head(owner=False)

    def _may_serve_stale(self, creq: CacheRequest, stored: StoredResponse) -> bool:
        req = effective_request_directives(creq, self.config.policy)
        return may_serve_stale_on_error(stored, req, self.clock(), self.config.policy)

    async def _serve_stale_on_error(self, request: web.Request, creq: CacheRequest,
                                    stored: StoredResponse, fwd_status: int | None,
                                    error: CacheError | None) -> web.StreamResponse:
        """RFC 5861 §4 stale-if-error (and RFC 9111 §4.2.4 "disconnected")."""
        self.counter("stale").inc()
        now = self.clock()
        age = stored_age(stored, now)
        ttl = stored_lifetime(stored, self.config.policy) - age
        if error is not None:
            log.warning("%s %s: serving stale: %s", request.method, request.path, error.message)
        status = CacheStatus(self.config.name, fwd="stale",
                             fwd_status=fwd_status if fwd_status is not None else 502,
                             ttl=int(ttl) - (ttl < 0), detail="stale-if-error")
        if stored.file is not None:
            return await self._answer_file(request, creq, stored, stored.headers, status,
                                           int(age))
        return self._answer_complete(request, creq, stored.status, stored.headers, stored.body,
                                     status, age=int(age))

    async def _answer_from_flight(self, request: web.Request, creq: CacheRequest,
                                  decision: Miss | Revalidate, reader: FlightReader,
                                  head: FlightHead, owner: bool, *, revalidated: bool,
                                  reflecting: bool = False) -> web.StreamResponse:
        headers, cache_status, age, fields = self.flight_fields(
            decision, head, owner, revalidated=revalidated, reflecting=reflecting)
        if head.refreshed is not None and head.refreshed.file is not None:
            # a 304 refreshed a disk-tier entry: its body is the file
            return await self._answer_file(request, creq, head.refreshed, headers,
                                           cache_status, age)
        if not_modified(creq.method, creq.headers, head.status, headers):
            return self._not_modified(fields)  # the fetch goes on filling the cache
        length = head.content_length
        if length is None and (creq.method == "HEAD" or creq.headers.first("range")):
            # the length must be known first (Content-Length of HEAD, Content-Range)
            body = await reader.body()
            return self._answer_complete(request, creq, head.status, headers, body,
                                         cache_status, age)
        if creq.method == "HEAD":
            return await _stream(request, head.status, fields, None)
        match requested_ranges(creq, head.status, headers, length or 0):
            case [ByteRange(), ByteRange(), *_]:
                body = await reader.body()
                return self._answer_complete(request, creq, head.status, headers, body,
                                             cache_status, age)
            case [ByteRange() as part]:
                return await _stream(request, 206, part_fields(partial_base(fields), part),
                                     _slice(reader.chunks(), part))
            case Unsatisfiable() as bad:
                return self._unsatisfiable(fields, bad)
        # The head waits for the first body bytes when they are at hand or when the length
        # is declared (a finite body the origin is sending now), so both go out in one write
        # as nginx's postpone_output does; an open-ended body (no length: a stream, perhaps
        # long-polled) gets its head at once.
        return await _stream(request, head.status, fields, reader.chunks(),
                             head_now=length is None and not reader.ready())

    async def _produce(self, flight: Flight, *, creq: CacheRequest, method: str,
                       headers: Fields, stored: StoredResponse | None, fills: bool) -> None:
        """The one upstream exchange of a flight (runs in the flight's task)."""
        flight.method = method
        since = self.store.fetch_mark()
        for _attempt in range(2):
            request_time = self.clock()
            async with self._upstream(method, creq.target, headers) as up:
                response_time = self.clock()
                reflects = up.headers.first(purge_watermark.LOWER)
                if reflects is not None:
                    since = since.reflecting(purge_watermark.parse(reflects))
                if up.status == 304 and stored is not None:
                    if response_304_matches(stored, up.headers):
                        self._refresh(flight, creq, stored, up, request_time, response_time,
                                      since)
                        return
                    # §4.3.4: a 304 for a different representation updates nothing; ask again
                    # without validators for the full response.
                    headers = headers.without("if-none-match", "if-modified-since")
                    stored = None
                    continue
                await self._receive(flight, creq, method, up, request_time, response_time,
                                    fills=fills, since=since)
                return

    def _refresh(self, flight: Flight, creq: CacheRequest, stored: StoredResponse,
                 up: UpstreamResponse, request_time: float, response_time: float,
                 since: FetchMark) -> None:
        refreshed = update_from_304(stored, up.headers, request_time, response_time,
                                    self.config.policy)
        refreshed, keep = self._store_updated(creq, stored, refreshed, since)
        cookies = [(k, v) for k, v in up.headers if k.lower() in ("set-cookie", "set-cookie2")]
        flight.publish_head(FlightHead(
            status=refreshed.status, headers=Fields([*refreshed.headers, *cookies]),
            shared_headers=refreshed.headers,
            content_length=refreshed.body_length, fwd_status=304, stored=keep,
            request_time=request_time, response_time=response_time, vary=refreshed.vary,
            refreshed=refreshed, applied=since.applied))
        if refreshed.file is None:
            flight.feed(refreshed.body)

    def _store_updated(self, creq: CacheRequest, stored: StoredResponse,
                       updated: StoredResponse, since: FetchMark
                       ) -> tuple[StoredResponse, bool]:
        """Put ``updated`` (new header fields for ``stored``'s body) where ``stored`` is, or
        delete ``stored`` when the new fields forbid keeping it: the response as kept (marked
        invalidated when a purge came since ``since``) and whether it was."""
        as_get = CacheRequest("GET", creq.target, creq.headers)
        keep = is_storable(as_get, updated.status, updated.headers, self.config.policy)
        if keep and stored.file is not None and self.disk is not None:
            if self.store.purged_since(updated, since):
                updated = dataclasses.replace(updated, invalidated=True)
            keep = self.disk.put_metadata(updated)
        elif keep:
            self.store.put(updated, fetched=since)
        else:
            self.tiers.delete_entry(stored.entry_key)
        return updated, keep

    def _update_from_head(self, creq: CacheRequest, headers: Fields, request_time: float,
                          response_time: float, since: FetchMark) -> None:
        """RFC 9111 §4.3.5: a 200 answering a HEAD updates, or makes stale, the stored GET
        response that request would have been answered with (``update_from_head``)."""
        stored, _vary_miss = self.store.lookup(creq.target, creq.headers)
        if stored is None and self.disk is not None:
            stored, _vary_miss = self.disk.lookup(creq.target, creq.headers)
        if stored is None:
            return
        updated = update_from_head(stored, headers, request_time, response_time,
                                   self.config.policy)
        self._store_updated(creq, stored, updated, since)

    async def _receive(self, flight: Flight, creq: CacheRequest, method: str,
                       up: UpstreamResponse, request_time: float, response_time: float,
                       *, fills: bool, since: FetchMark) -> None:
        fill = FillSteps(self, flight, creq, method, up.status, up.headers, request_time,
                         response_time, fills=fills, applied=since.applied)
        sink = fill.sink
        if sink is not None and sink.keeping and sink.writer is None:
            up.keep_whole()  # kept in memory as it arrives: one buffer, no join (lean_client)
        fill.publish()
        try:
            async for chunk in up.chunks:
                fill.piece(chunk)
                if sink is not None:
                    await sink.add(chunk)
        except BaseException:
            if sink is not None:
                sink.drop()
            raise
        stored = fill.end(up.whole())
        if stored is not None:
            assert sink is not None
            await self._keep(stored, sink, since)
        elif method == "HEAD" and up.status == 200:
            self._update_from_head(creq, up.headers, request_time, response_time, since)

    async def _keep(self, stored: StoredResponse, sink: BodySink, since: FetchMark) -> None:
        """Store a fetched response in memory or on disk (removing an older copy from the
        other tier, which would shadow or outlive it) and offer it to the shared tier."""
        if sink.writer is not None:
            assert self.disk is not None
            if self.store.purged_since(stored, since):
                stored = dataclasses.replace(stored, invalidated=True)
            if await self.disk.commit(sink.writer, stored):
                self.store.delete_entry(stored.entry_key)
            return
        self.keep_in_memory(stored, since)

    def keep_in_memory(self, stored: StoredResponse, since: FetchMark) -> None:
        """``_keep`` for a body kept in memory: nothing to wait for."""
        if not self.store.put(stored, fetched=since):
            return
        entry = stored.entry_key
        if self.disk is not None:
            self.disk.delete_entry(entry)
        if self.shared is not None:
            kept = self.store.peek(entry)  # as stored (a racing purge may have marked it)
            if kept is not None and not kept.invalidated:
                self.shared.put_later(kept)

    def _delete_variant(self, creq: CacheRequest) -> None:
        stored, _vary_miss = self.store.lookup(creq.target, creq.headers)
        if stored is None and self.disk is not None:
            stored, _vary_miss = self.disk.lookup(creq.target, creq.headers)
        if stored is not None:
            self.tiers.delete_entry(stored.entry_key)

    def _stop_retaining(self, flight: Flight) -> None:
        """Too big to keep: stream it through to the readers it has, take no new ones."""
        self.collapser.close_to_newcomers(flight)
        flight.stop_retaining()

    # -- forwarding ----------------------------------------------------------------------------

    async def _forward(self, request: web.Request, creq: CacheRequest,
                       reason: ForwardReason) -> web.StreamResponse:
        self.counter("pass").inc()
        headers = forward_request_fields(creq.headers, via=self.config.name,
                                         peer=request.remote, drop=self._drop)
        body = request.content.iter_chunked(CHUNK_SIZE) if request.body_exists else None
        async with self._upstream(creq.method, creq.target, headers, body) as up:
            if invalidates(creq.method, up.status):
                self._invalidate(creq, up.headers)
            status = CacheStatus(self.config.name, fwd=reason, fwd_status=up.status)
            fields = client_response_fields(up.headers, status, via=self.config.name,
                                            strip=self._strip)
            chunks = up.chunks if creq.method != "HEAD" else None
            return await _stream(request, up.status, fields, chunks)

    def _invalidate(self, creq: CacheRequest, headers: Fields) -> None:
        """RFC 9111 §4.4: the target URI and same-origin Location/Content-Location URIs."""
        locations = headers.get_all("location") + headers.get_all("content-location")
        targets = [creq.target, *invalidated_targets(creq.target, locations,
                                                     creq.headers.first("host"))]
        for target in dict.fromkeys(targets):
            self.tiers.purge_url(target)  # recorded, so a fetch in flight cannot undo it

    def _upstream(self, method: str, target: str, headers: Fields,
                  body: AsyncIterable[bytes] | None = None) -> _CountedExchange:
        """One upstream exchange, counted in ``cdn_upstream_requests_total``."""
        return _CountedExchange(self, method, target, headers, body)


class FillSteps:
    """Receiving one upstream response into its flight and, when it may be kept, the cache,
    as steps with no waiting in them: made from the head (what may be shared and stored, the
    sink), ``publish`` the head, ``piece`` per body chunk (the caller adds it to ``sink``),
    ``end``. ``CacheEngine._receive`` drives them awaiting the upstream;
    ``callback_fill.CallbackFill`` from the upstream connection's callbacks."""

    __slots__ = ("applied", "as_sent", "creq", "engine", "flight", "kept", "length",
                 "method", "request_time", "response_time", "retaining", "shareable", "sink",
                 "size", "status", "headers", "vary")

    def __init__(self, engine: CacheEngine, flight: Flight, creq: CacheRequest, method: str,
                 status: int, headers: Fields, request_time: float, response_time: float,
                 *, fills: bool, applied: int = 0) -> None:
        policy = engine.config.policy
        self.applied = applied  # the purge sequence applied when the fetch began
        self.engine = engine
        self.flight = flight
        self.creq = creq
        self.method = method
        self.status = status
        self.headers = headers
        self.request_time = request_time
        self.response_time = response_time
        as_sent = self.as_sent = creq if method == creq.method else CacheRequest(
            method, creq.target, creq.headers)
        shareable = self.shareable = is_storable(as_sent, status, headers, policy)
        length = self.length = _content_length(headers)
        self.sink = (BodySink(engine.store, engine.disk, length)
                     if fills and shareable
                     and is_worth_storing(status, headers, response_time, policy) else None)
        self.kept = fields_to_store(headers, policy) if shareable else None
        self.vary = selecting_fields(as_sent.headers, headers)
        self.size = 0
        # chunks are retained for late joiners while they fit in memory as one object
        self.retaining = length is None or engine.store.fits(length)

    def publish(self) -> None:
        sink, flight, engine = self.sink, self.flight, self.engine
        flight.publish_head(FlightHead(
            status=self.status, headers=self.headers,
            shared_headers=self.kept,
            content_length=self.length, fwd_status=self.status,
            stored=sink is not None and sink.keeping,
            request_time=self.request_time, response_time=self.response_time,
            vary=self.vary, applied=self.applied))
        if not self.shareable:
            engine.collapser.close_to_newcomers(flight)
        if not self.retaining:
            engine._stop_retaining(flight)

    def piece(self, chunk: Chunk) -> None:
        self.flight.feed(chunk)
        self.size += len(chunk)
        if self.retaining and not self.engine.store.fits(self.size):
            self.retaining = False
            self.engine._stop_retaining(self.flight)

    def end(self, whole: bytearray | None) -> StoredResponse | None:
        """The response to keep (``CacheEngine._keep``) when the sink kept its body; or
        ``None``, a stored variant it supersedes deleted."""
        sink = self.sink
        if sink is not None and sink.keeping:
            return make_stored_response(self.creq.target, self.as_sent, self.status,
                                        self.headers, sink.body(whole), self.request_time,
                                        self.response_time, self.engine.config.policy,
                                        kept=self.kept, vary=self.vary)
        if self.method == "GET" and self.status not in ERROR_STATUSES:
            # superseded by a response we do not keep (an error keeps the stale one usable
            # for stale-if-error)
            self.engine._delete_variant(self.creq)
        return None


class _CountedExchange:
    """``CacheEngine._upstream``: the upstream's context, with the exchange counted by its
    status, or as an error when it fails before the head. A class rather than an
    ``asynccontextmanager``: every miss passes through it (no async generator per miss)."""

    __slots__ = ("body", "engine", "headers", "inner", "method", "target")

    def __init__(self, engine: CacheEngine, method: str, target: str, headers: Fields,
                 body: AsyncIterable[bytes] | None) -> None:
        self.engine = engine
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.inner: contextlib.AbstractAsyncContextManager[UpstreamResponse] | None = None

    async def __aenter__(self) -> UpstreamResponse:
        engine, method = self.engine, self.method
        try:
            inner = engine.upstream.open(method, self.target, self.headers, self.body,
                                         cache_key=self.target)
            up = await inner.__aenter__()
        except UpstreamError:
            engine._upstream_counter(method, "error").inc()
            raise
        self.inner = inner
        engine._upstream_counter(method, up.status).inc()
        return up

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        assert self.inner is not None
        return await self.inner.__aexit__(exc_type, exc, tb)


def _result(owner: bool, revalidated: bool, head: FlightHead) -> str:
    if not owner:
        return "collapsed"
    if not revalidated:
        return "miss"
    return "revalidated" if head.fwd_status == 304 else "refetched"


def _content_length(headers: Fields) -> int | None:
    raw = headers.first("content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


async def _slice(chunks: AsyncIterator[Chunk], part: ByteRange
                 ) -> AsyncIterator[Chunk]:
    """The bytes ``part.first..part.last`` of a body arriving as ``chunks``."""
    offset = 0
    async for chunk in chunks:
        end = offset + len(chunk)
        if end > part.first:
            yield chunk[max(0, part.first - offset):part.last + 1 - offset]
        offset = end
        if offset > part.last:
            return


def _response(status: int, fields: Fields, body: Body) -> web.Response:
    """A complete response; aiohttp computes Content-Length (and omits the body for HEAD)."""
    headers = CIMultiDict(fields.without("content-length"))
    response = web.Response(status=status, body=body, headers=headers)
    if "Content-Type" not in headers:
        response.headers.pop("Content-Type", None)  # do not invent one the origin did not send
    return response


class _HeadWithBody(web.StreamResponse):
    """A streamed response whose head is sent with its first body bytes (one write, one
    segment: for a small body the whole response) instead of on its own at ``prepare``.
    aiohttp's ``Response`` buffers its head the same way; an aiohttp without this switch
    sends the head at ``prepare`` as before."""

    _send_headers_immediately = False


async def _stream(request: web.Request, status: int, fields: Fields,
                  chunks: AsyncIterable[Chunk] | None, *, head_now: bool = True
                  ) -> web.StreamResponse:
    """Send the head, then the chunks as they come (each write waits for the socket).

    ``head_now=False``: the head goes out with the first chunk (or the end), in one write;
    the caller knows that chunk is at hand or coming now. Otherwise the head is sent at
    once. Either way the time to first byte never waits for more than the first chunk.

    If the upstream breaks off after the head was sent, the only honest thing left is to cut
    the connection: the client then sees a truncated response (Content-Length short, or an
    unterminated chunked body) instead of a complete-looking wrong one.
    """
    response = _HeadWithBody(status=status, headers=CIMultiDict(fields))
    await response.prepare(request)
    if chunks is not None:
        if head_now:
            await response.write(b"")  # the head alone
        try:
            async for chunk in chunks:
                await response.write(chunk)
        except (UpstreamError, StoreError) as exc:
            log.warning("%s %s: aborting response: %s", request.method, request.path,
                        exc.message)
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response
