"""Apply purges published on Redis, and catch up from the control plane's durable log.

Contract (see the control plane): a message on the channel (default ``cdn:purge``) is JSON
``{"seq": int, "tags": [...], "urls": [...], "prefixes": [...], "soft": bool}``; urls and
prefixes are request paths (``/bucket/key``). ``GET {control_url}/purge/log?after=SEQ`` with
``Authorization: Bearer TOKEN`` answers ``{"events": [...], "last_seq": int}`` (a page; we
keep asking until we reach ``last_seq``).

Ordering: subscribe first, *then* catch up, so an event published during the catch-up is
either in the log page or in the channel — never in neither. Every ``subscribe``
confirmation (the first one and any after a reconnect, whether our loop or redis-py
reconnected) triggers a catch-up; so does a gap in sequence numbers. Events at or below the
last applied sequence are skipped, so replays are harmless. Redis failures are retried with
exponential backoff; a catch-up that fails is retried on the same backoff while messages
keep being applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from httpcache.app import ENGINE, METRICS, SESSION, TIERS
from httpcache.errors import PurgeError
from httpcache.metrics import CacheMetrics
from httpcache.store import PurgeResult

log = logging.getLogger("cdn.httpcache.purge")


@dataclass(frozen=True, slots=True)
class PurgeSettings:
    redis_url: str
    channel: str = "cdn:purge"
    control_url: str = ""
    token: str = ""
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    poll_interval: float = 1.0  # how often the listen loop looks at pending catch-ups


@dataclass(frozen=True, slots=True)
class PurgeEvent:
    seq: int
    tags: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    soft: bool = False
    # When the control plane logged it (epoch seconds); 0 when unknown.
    created_at: float = 0.0

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at) if self.created_at else 0.0

    @classmethod
    def from_json(cls, obj: Any) -> PurgeEvent:
        """Validate one wire event; ``PurgeError`` names what is wrong."""
        if not isinstance(obj, dict):
            raise PurgeError(f"purge event must be a JSON object, got {type(obj).__name__}")
        seq = obj.get("seq", 0)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise PurgeError(f"purge event seq must be a non-negative integer, got {seq!r}")
        lists: dict[str, tuple[str, ...]] = {}
        for name in ("tags", "urls", "prefixes"):
            value = obj.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PurgeError(f"purge event {name!r} must be a list of strings")
            lists[name] = tuple(value)
        soft = obj.get("soft", False)
        if not isinstance(soft, bool):
            raise PurgeError(f"purge event 'soft' must be a boolean, got {soft!r}")
        created_at = obj.get("created_at", 0.0)
        if not isinstance(created_at, int | float) or isinstance(created_at, bool):
            raise PurgeError(f"purge event created_at must be a number, got {created_at!r}")
        return cls(seq, lists["tags"], lists["urls"], lists["prefixes"], soft, float(created_at))


class Purgeable(Protocol):
    """A ``MemoryStore``, or every tier of a process (``httpcache.tiers.CacheTiers``)."""

    def purge_tag(self, tag: str, *, soft: bool = ..., age: float = ...) -> PurgeResult: ...
    def purge_url(self, url: str, *, soft: bool = ..., age: float = ...) -> PurgeResult: ...
    def purge_prefix(self, prefix: str, *, soft: bool = ..., age: float = ...
                     ) -> PurgeResult: ...


def apply_event(store: Purgeable, event: PurgeEvent, now: float) -> PurgeResult:
    """Remove (hard) or invalidate (soft) everything the event names; ``now`` is wall-clock
    time, to date the purge by when it was made."""
    begin = getattr(store, "begin_purge", None)
    if begin is not None:  # tiers that date entries by purge sequence (the shared tier)
        begin(event.seq)
    result = PurgeResult()
    age = event.age(now)
    try:
        for tag in event.tags:
            result += store.purge_tag(tag, soft=event.soft, age=age)
        for url in event.urls:
            result += store.purge_url(url, soft=event.soft, age=age)
        for prefix in event.prefixes:
            result += store.purge_prefix(prefix, soft=event.soft, age=age)
    finally:
        if begin is not None:
            begin(0)  # purges made otherwise (unsafe methods' invalidations) are not logged
    return result


class PurgeSubscriber:
    """Keeps one store in step with the purge stream; ``run`` until cancelled."""

    def __init__(self, settings: PurgeSettings, store: Purgeable, metrics: CacheMetrics,
                 session: aiohttp.ClientSession | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.session = session
        self.last_seq = 0
        self.connected = False
        self._sleep = sleep
        self._catchup_pending = bool(settings.control_url)
        self._changed = asyncio.Event()

    # -- applying ------------------------------------------------------------------------------

    def apply(self, event: PurgeEvent) -> bool:
        """Apply ``event`` unless already applied; ``False`` when skipped."""
        if event.seq and event.seq <= self.last_seq:
            return False
        now = time.time()
        result = apply_event(self.store, event, now)
        if event.created_at:
            self.metrics.purge_propagation.observe(event.age(now))
        if event.seq > self.last_seq + 1 and self.settings.control_url:
            # A gap: something was missed (or a sequence number was skipped). Applied anyway
            # (purging twice is harmless), but last_seq stays put so the catch-up asks the
            # log for everything after the last event we know we have.
            self._catchup_pending = True
        else:
            self._applied_through(max(self.last_seq, event.seq))
        self.metrics.purge_events.inc()
        self.metrics.purged_objects.labels("removed").inc(result.removed)
        self.metrics.purged_objects.labels("invalidated").inc(result.invalidated)
        log.info("purge seq=%d soft=%s: %d removed, %d invalidated", event.seq, event.soft,
                 result.removed, result.invalidated)
        self._notify()
        return True

    def _applied_through(self, seq: int) -> None:
        """Every purge up to ``seq`` is applied, with no gap: tell the metrics and the
        store (tiers that date what they hold or answer by it: ``CacheTiers``)."""
        self.last_seq = seq
        self.metrics.purge_last_seq.set(seq)
        through = getattr(self.store, "applied_through", None)
        if through is not None:
            through(seq)

    def apply_message(self, data: bytes | str) -> bool:
        try:
            event = PurgeEvent.from_json(json.loads(data))
        except (ValueError, PurgeError) as exc:
            log.warning("ignoring malformed purge message %r: %s", data[:200], exc)
            return False
        return self.apply(event)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for_seq(self, seq: int) -> None:
        """Wait until events up to ``seq`` are applied (wrap in ``asyncio.timeout``)."""
        while self.last_seq < seq:
            await self._changed.wait()

    async def applied_by(self, seq: int, patience: float) -> int:
        """``last_seq`` once every event up to ``seq`` is applied, or after ``patience``
        seconds, whichever comes first (a lower tier asked: ``httpcache.purge_watermark``)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(patience):
                await self.wait_for_seq(seq)
        return self.last_seq

    async def wait_connected(self) -> None:
        """Wait until subscribed and caught up (wrap in ``asyncio.timeout``)."""
        while not (self.connected and not self._catchup_pending):
            await self._changed.wait()

    # -- catching up ---------------------------------------------------------------------------

    async def catch_up(self) -> int:
        """Apply every logged event after ``last_seq``; returns how many were applied."""
        if not self.settings.control_url or self.session is None:
            self._catchup_pending = False
            return 0
        url = self.settings.control_url.rstrip("/") + "/purge/log"
        headers = {"Authorization": f"Bearer {self.settings.token}"}
        applied = 0
        while True:
            try:
                async with self.session.get(url, params={"after": str(self.last_seq)},
                                            headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    if resp.status != 200:
                        text = (await resp.text())[:200]
                        raise PurgeError(f"purge log {url} answered {resp.status}: {text}")
                    page = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise PurgeError(f"purge log {url} unreadable: {exc!r}") from exc
            if not isinstance(page, dict) or not isinstance(page.get("events", []), list):
                raise PurgeError(f"purge log {url} answered an unexpected document")
            events = [PurgeEvent.from_json(e) for e in page.get("events", [])]
            for event in events:
                applied += self.apply(event)
            log_last = page.get("last_seq", self.last_seq)
            if not isinstance(log_last, int):
                raise PurgeError(f"purge log {url}: last_seq must be an integer")
            if not events or self.last_seq >= log_last:
                self._applied_through(max(self.last_seq, log_last))
                self._catchup_pending = False
                self._notify()
                return applied

    async def _try_catch_up(self) -> bool:
        try:
            count = await self.catch_up()
        except PurgeError as exc:
            self.metrics.purge_catchups.labels("error").inc()
            log.warning("purge catch-up failed (will retry): %s", exc.message)
            return False
        self.metrics.purge_catchups.labels("ok").inc()
        if count:
            log.info("purge catch-up applied %d events, now at seq %d", count, self.last_seq)
        return True

    # -- the subscription loop -----------------------------------------------------------------

    async def run(self) -> None:
        backoff = self.settings.backoff_initial
        while True:
            try:
                await self._subscribe_and_listen()
            except (RedisError, OSError) as exc:
                log.warning("purge channel lost (%s); reconnecting in %.1fs", exc, backoff)
            except Exception:  # a bug must not end purging for the life of the process
                log.exception("purge subscriber failed; restarting in %.1fs", backoff)
            finally:
                if self.connected:
                    backoff = self.settings.backoff_initial
                self._set_connected(False)
            await self._sleep(backoff)
            backoff = min(backoff * 2, self.settings.backoff_max)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        self.metrics.purge_connected.set(1 if connected else 0)
        self._notify()

    async def _subscribe_and_listen(self) -> None:
        # No retries inside redis-py: a dropped connection must surface here so we catch up.
        client = aioredis.from_url(self.settings.redis_url, retry=Retry(NoBackoff(), 0),
                                   health_check_interval=10,
                                   client_name=f"cdn-purge:{self.metrics.tier}")
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.settings.channel)
            catchup_backoff = self.settings.backoff_initial
            next_catchup = 0.0
            loop = asyncio.get_running_loop()
            while True:
                message = await pubsub.get_message(timeout=self.settings.poll_interval)
                if message is not None:
                    kind = message.get("type")
                    if kind == "subscribe":
                        self._catchup_pending = bool(self.settings.control_url)
                        self._set_connected(True)
                        log.info("subscribed to %s", self.settings.channel)
                    elif kind == "message":
                        self.apply_message(message["data"])
                if self._catchup_pending and loop.time() >= next_catchup:
                    if await self._try_catch_up():
                        catchup_backoff = self.settings.backoff_initial
                    else:
                        next_catchup = loop.time() + catchup_backoff
                        catchup_backoff = min(catchup_backoff * 2, self.settings.backoff_max)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


PURGE_SUBSCRIBER = web.AppKey("purge_subscriber", PurgeSubscriber)


def purge_context(settings: PurgeSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running the subscriber as a background task of the app."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        subscriber = PurgeSubscriber(settings, app[TIERS], app[METRICS], app[SESSION])
        app[PURGE_SUBSCRIBER] = subscriber
        app[ENGINE].purges = subscriber  # it answers lower tiers' CDN-Purge-Seq from it
        task = asyncio.create_task(subscriber.run(), name="purge-subscriber")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context
