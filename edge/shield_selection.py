"""Which shield serves a cache key: rendezvous hashing over the healthy shields.

Ranking by ``cdn.rendezvous.rank`` means every edge picks the same shield for a key without
coordination, and when a shield goes down only the keys it ranked first move. ``ShieldPool``
is the (pure) state; ``HealthChecker`` probes ``GET /_health`` in the background; and
``ShieldUpstream`` sends a request to the best shield, failing over to the next in rank when
the chosen one cannot be reached (only for requests without a body, which can be repeated).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Callable, Mapping
from types import TracebackType

import aiohttp

from cdn.rendezvous import rank
from httpcache.errors import UpstreamDisconnected, UpstreamUnavailable
from httpcache.headers import Fields
from httpcache.lean_client import LeanCall, LeanPools
from httpcache.upstream import HttpUpstream, RequestSigner, UpstreamResponse

log = logging.getLogger("cdn.edge.shields")

RETRYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ShieldPool:
    """Shield names → URLs, and which are currently believed down."""

    def __init__(self, shields: Mapping[str, str]) -> None:
        if not shields:
            raise ValueError("a shield pool needs at least one shield")
        self.urls = dict(shields)
        self._down: set[str] = set()

    def is_up(self, name: str) -> bool:
        return name not in self._down

    def healthy(self) -> list[str]:
        return [n for n in self.urls if n not in self._down]

    def candidates(self, key: str) -> list[str]:
        """Healthy shields best first, then the down ones (a last resort beats a 502)."""
        up = rank(key, self.healthy())
        down = rank(key, [n for n in self.urls if n in self._down])
        return up + down

    def choose(self, key: str) -> str:
        return self.candidates(key)[0]

    def mark_down(self, name: str) -> None:
        if name not in self._down:
            log.warning("shield %s marked down", name)
        self._down.add(name)

    def mark_up(self, name: str) -> None:
        if name in self._down:
            log.info("shield %s is back up", name)
        self._down.discard(name)


class HealthChecker:
    """Probes every shield's ``/_health`` each ``interval`` seconds.

    A shield is marked down after ``fall`` failed probes in a row, not one: a single slow
    answer from a busy shield must not move its keys to another shield (every moved key is
    one more origin fetch). Real connection errors on requests still fail over at once
    (``ShieldUpstream``); one good probe brings a shield back.
    """

    def __init__(self, pool: ShieldPool, session: aiohttp.ClientSession,
                 interval: float, *, fall: int = 3) -> None:
        self.pool = pool
        self.session = session
        self.interval = interval
        self.fall = fall
        self._failures: dict[str, int] = {}

    async def check(self, name: str) -> bool:
        timeout = aiohttp.ClientTimeout(total=max(0.2, min(self.interval, 2.0)))
        try:
            async with self.session.get(self.pool.urls[name].rstrip("/") + "/_health",
                                        timeout=timeout) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def check_all(self) -> None:
        names = list(self.pool.urls)
        results = await asyncio.gather(*(self.check(n) for n in names))
        for name, ok in zip(names, results, strict=True):
            if ok:
                self._failures[name] = 0
                self.pool.mark_up(name)
                continue
            self._failures[name] = self._failures.get(name, 0) + 1
            if self._failures[name] >= self.fall:
                self.pool.mark_down(name)

    async def run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.interval)


class ShieldUpstream:
    """``httpcache.upstream.Upstream`` over a pool of shields with failover."""

    def __init__(self, pool: ShieldPool, session: aiohttp.ClientSession,
                 signer: RequestSigner | None = None, *, lean: LeanPools | None = None
                 ) -> None:
        self.pool = pool
        self._hops = {name: HttpUpstream(session, url, signer, lean=lean)
                      for name, url in pool.urls.items()}

    def open(
        self,
        method: str,
        target: str,
        headers: Fields,
        body: AsyncIterable[bytes] | None = None,
        *,
        cache_key: str,
    ) -> ShieldExchange:
        return ShieldExchange(self, method, target, headers, body, cache_key)

    def call_now(self, target: str, headers: Fields, listener: Callable[[], None], *,
                 cache_key: str) -> LeanCall | None:
        """``HttpUpstream.call_now`` to the key's first shield. There is no failover here:
        the connection it reuses has answered before, and when it turns out closed the fill
        goes on through ``open`` (``httpcache.callback_fill``), which fails over."""
        return self._hops[self.pool.choose(cache_key)].call_now(target, headers, listener)


class ShieldExchange:
    """``ShieldUpstream.open``: the exchange with the first shield of the key's ranking that
    answers; a shield that cannot be reached (or drops the connection before answering) is
    marked down and, for a retryable request, the next one is tried. A class rather than an
    ``asynccontextmanager``: every miss passes through it."""

    __slots__ = ("body", "cache_key", "headers", "inner", "method", "target", "upstream")

    def __init__(self, upstream: ShieldUpstream, method: str, target: str, headers: Fields,
                 body: AsyncIterable[bytes] | None, cache_key: str) -> None:
        self.upstream = upstream
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.cache_key = cache_key
        self.inner: contextlib.AbstractAsyncContextManager[UpstreamResponse] | None = None

    async def __aenter__(self) -> UpstreamResponse:
        upstream = self.upstream
        retryable = self.method in RETRYABLE_METHODS and self.body is None
        candidates = upstream.pool.candidates(self.cache_key)
        for attempt, name in enumerate(candidates):
            inner = upstream._hops[name].open(self.method, self.target, self.headers,
                                              self.body, cache_key=self.cache_key)
            try:
                response = await inner.__aenter__()
            except (UpstreamUnavailable, UpstreamDisconnected) as exc:
                upstream.pool.mark_down(name)
                if not retryable or attempt == len(candidates) - 1:
                    raise
                log.warning("shield %s failed (%s); trying %s", name, exc.message,
                            candidates[attempt + 1])
                continue
            self.inner = inner
            return response
        raise UpstreamUnavailable("no shield to ask")  # a pool is never empty

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        assert self.inner is not None
        return await self.inner.__aexit__(exc_type, exc, tb)
