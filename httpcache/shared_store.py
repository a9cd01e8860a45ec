"""The shared tier: stored responses in Redis (through ``aiocache``), shared by the processes of
one PoP, looked up after a memory/disk miss and before going upstream.

Bounded: only bodies up to ``max_object_bytes`` go there (the big ones are the disk tier's
job), each with a TTL of its remaining freshness plus the windows it may still be used in
(stale-while-revalidate, stale-if-error or the tier's default, and ``revalidate_grace`` when it
has validators, so an expired entry can still be revalidated with a 304). Redis' own
``maxmemory`` policy bounds the total; each key carries a TTL, so ``volatile-*`` policies work.

Layout under ``prefix`` (one per PoP, or per test): ``e:<entry key>`` an entry, ``n:<cache
key>`` the Vary field names last stored for a URL, ``t:<tag>`` and ``p:<path>`` sets of entry
keys (the purge indexes). A lookup is one MGET of ``e:<key>`` and ``n:<key>`` (a second GET
for a varying URL). Entries are written in the background (``put_later``), never on the
request path.

Purges: every process applies every purge event to Redis (delete the members of ``t:<tag>``
/ ``p:<path>``, SCAN for a prefix); several processes applying the same purge is harmless (it
deletes what is already gone). Soft purges delete too: the processes' own memory tiers keep
their revalidatable copies. Because a process may write an entry it fetched just before a
purge it has not seen yet, every entry is dated by the purge sequence its writer had applied
*with no gap* when it offered the entry (``applied_seq``: every purge up to it applied;
``put_later``, not when the background write runs). Not by the latest purge it applied: a
process that missed purge N and applied N+1 (a gap, until the purge log's catch-up brings
N) may still hold what N removed, and an entry dated N+1 would tell every reader it
reflects N. A reader marks an entry invalidated, so it is revalidated before use, if it
has applied a later purge matching it, or if it cannot tell: its purge history no longer
reaches back that far, or it has a gap of its own above the entry's date. A process that
follows no purge log dates everything 0 and, knowing no purge, trusts everything.

Failures (Redis down, timeouts) count in ``cdn_shared_errors_total`` and make a lookup a
miss: the shared tier never makes a request fail. When Redis is slow, writes beyond
``MAX_PENDING_WRITES`` pending are dropped (``cdn_shared_dropped_writes_total``); purges'
deletes never are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiocache import RedisCache
from aiocache.serializers import BaseSerializer
from redis.exceptions import RedisError
from yarl import URL

from httpcache.cache_control import response_directives
from httpcache.headers import Fields
from httpcache.messages import StoredResponse
from httpcache.policy import PolicyConfig, stored_age, stored_lifetime, validators_for
from httpcache.store import RECENT_PURGES, purge_matches
from httpcache.vary import request_variant_key

log = logging.getLogger("cdn.httpcache.shared")

MAGIC = b"CDN1"
MAX_PENDING_WRITES = 256


class _Bytes(BaseSerializer):
    """Values are our own bytes; no decoding."""

    DEFAULT_ENCODING = None

    def dumps(self, value: Any) -> Any:
        return value

    def loads(self, value: Any) -> Any:
        return value


def encode_entry(stored: StoredResponse, purge_seq: int) -> bytes:
    meta = json.dumps({
        "k": stored.cache_key, "s": stored.status, "h": list(stored.headers),
        "rq": stored.request_time, "rs": stored.response_time,
        "t": sorted(stored.surrogate_keys), "v": list(stored.vary), "q": purge_seq,
    }, separators=(",", ":")).encode()
    return MAGIC + len(meta).to_bytes(4, "big") + meta + stored.body


def decode_entry(raw: bytes) -> tuple[StoredResponse, int]:
    """The stored response and its writer's purge sequence; ``ValueError`` if malformed."""
    if raw[:4] != MAGIC:
        raise ValueError("not a shared-tier entry")
    size = int.from_bytes(raw[4:8], "big")
    meta = json.loads(raw[8:8 + size])
    stored = StoredResponse(
        cache_key=meta["k"], status=int(meta["s"]),
        headers=Fields((str(k), str(v)) for k, v in meta["h"]), body=raw[8 + size:],
        request_time=float(meta["rq"]), response_time=float(meta["rs"]),
        surrogate_keys=frozenset(meta["t"]),
        vary=tuple((str(n), v if v is None else str(v)) for n, v in meta["v"]))
    return stored, int(meta["q"])


def entry_ttl(stored: StoredResponse, now: float, policy: PolicyConfig,
              revalidate_grace: float) -> int:
    """Seconds the entry is worth keeping: remaining freshness plus the stale windows."""
    lifetime = stored_lifetime(stored, policy)
    remaining = max(0.0, lifetime - stored_age(stored, now))
    cc = response_directives(stored.headers, policy.targeted_fields).cc
    stale = max(cc.stale_while_revalidate or 0, cc.stale_if_error or 0,
                policy.stale_if_error_default)
    grace = revalidate_grace if validators_for(stored) else 0.0
    return max(1, int(remaining + max(stale, grace)))


class SharedStore:
    def __init__(self, url: str, *, prefix: str = "cdn:", max_object_bytes: int = 1024 * 1024,
                 policy: PolicyConfig, revalidate_grace: float = 300.0,
                 timeout: float = 0.5, clock: Callable[[], float] = time.time,
                 on_error: Callable[[], None] | None = None,
                 on_drop: Callable[[], None] | None = None) -> None:
        parsed = URL(url)
        if parsed.scheme not in ("redis", "rediss"):
            raise ValueError(f"shared cache URL must be redis://host:port/db, got {url!r}")
        db = int(parsed.path.strip("/") or 0)
        self.prefix = prefix
        self.max_object_bytes = max_object_bytes
        self.policy = policy
        self.revalidate_grace = revalidate_grace
        self.clock = clock
        self._on_error = on_error
        self._on_drop = on_drop  # a write dropped: too many pending (``cdn_shared_dropped``)
        self.max_pending = MAX_PENDING_WRITES
        self.cache = RedisCache(serializer=_Bytes(), endpoint=parsed.host or "127.0.0.1",
                                port=parsed.port or 6379, db=db, password=parsed.password,
                                ssl=parsed.scheme == "rediss",
                                # aiocache joins namespace and key with ":"; prefixes are
                                # configured with their own (``cdn:cache:``), so one goes
                                namespace=prefix.removesuffix(":"),
                                timeout=timeout)
        self.purge_seq = 0  # the latest purge sequence this process knows was made
        self.applied_seq = 0  # every purge up to this one applied (no gap): entries' date
        self._applying = 0
        # Purges applied past a gap (above applied_seq), and the highest sequence in the
        # gap, not applied (0: no gap): entries dated below it may predate a purge this
        # process has not seen, so it cannot vouch for them.
        self._ahead: set[int] = set()
        self._missing = 0
        # Sorted by sequence (a catch-up applies older purges after newer ones), so a scan
        # from the newest may stop at the first at or before an entry's date.
        self._recent: deque[tuple[int, str, str]] = deque(maxlen=RECENT_PURGES)
        self._forgotten = 0  # the newest purge dropped from ``_recent`` for room
        self._tasks: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.cache.close()

    async def drain(self) -> None:
        """Wait for background writes and purges (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _failed(self, what: str, exc: BaseException) -> None:
        log.warning("shared tier: %s failed: %r", what, exc)
        if self._on_error is not None:
            self._on_error()

    def _spawn(self, coro: Any, *, droppable: bool = True) -> None:
        if droppable and len(self._tasks) >= self.max_pending:
            coro.close()  # Redis is slow: drop the write rather than pile up tasks
            if self._on_drop is not None:
                self._on_drop()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- reading -------------------------------------------------------------------------------

    async def get(self, key: str, request_headers: Fields) -> StoredResponse | None:
        try:
            raw, names_raw = await self.cache.multi_get([f"e:{key}", f"n:{key}"])
            if names_raw is not None:
                names = tuple(json.loads(names_raw))
                variant = request_variant_key(names, request_headers)
                raw = await self.cache.get(f"e:{key}\x00{variant}")
            if raw is None:
                return None
            stored, seq = decode_entry(raw)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("lookup", exc)
            return None
        except (ValueError, KeyError, TypeError) as exc:
            self._failed("decoding an entry", exc)
            return None
        if stored.cache_key != key:
            return None
        if self._purged_after(stored, seq):
            stored = dataclasses.replace(stored, invalidated=True)
        return stored

    def _purged_after(self, stored: StoredResponse, seq: int) -> bool:
        """Whether a purge after ``seq`` (the entry's date) may have removed ``stored``."""
        if seq >= self.purge_seq:
            return False  # no purge we know of was made after it
        if seq < self._missing or seq < self._forgotten:
            return True  # a purge after it is one we have not seen or no longer remember
        if not self._recent or self._recent[0][0] > seq + 1:
            return True  # our history does not reach back to the writer's: assume it matched
        for purge_seq, kind, value in reversed(self._recent):
            if purge_seq <= seq:
                break
            if purge_matches(kind, value, stored):
                return True
        return False

    # -- writing -------------------------------------------------------------------------------

    def put_later(self, stored: StoredResponse) -> None:
        """Write ``stored`` in the background if it is small enough."""
        if stored.file is not None or len(stored.body) > self.max_object_bytes:
            return
        # Dated now, not when the write runs: a purge applied before the task starts would
        # otherwise date the entry after a purge that names it, and readers would take it
        # as valid (that purge's delete can run before the write adds it to the index).
        self._spawn(self.put(stored, self.applied_seq))

    async def put(self, stored: StoredResponse, purge_seq: int | None = None) -> None:
        """Write ``stored``, dated by ``purge_seq``: every purge up to it is reflected in
        ``stored`` (default: ``applied_seq``, those this process has applied with no gap)."""
        ttl = entry_ttl(stored, self.clock(), self.policy, self.revalidate_grace)
        entry = stored.entry_key
        seq = self.applied_seq if purge_seq is None else purge_seq
        try:
            await self.cache.set(f"e:{entry}", encode_entry(stored, seq), ttl=ttl)
            if stored.vary:
                await self.cache.set(f"n:{stored.cache_key}",
                                     json.dumps(list(stored.vary_names)).encode(), ttl=ttl)
            else:
                await self.cache.delete(f"n:{stored.cache_key}")
            for index in [f"t:{tag}" for tag in stored.surrogate_keys] + [f"p:{stored.path}"]:
                name = self.cache.build_key(index)
                await self.cache.raw("sadd", name, entry)
                if await self.cache.raw("ttl", name) < ttl:  # as long as its longest member
                    await self.cache.raw("expire", name, ttl)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("write", exc)

    # -- purging -------------------------------------------------------------------------------

    def begin_purge(self, seq: int) -> None:
        """The purges recorded next belong to event ``seq`` of the purge log."""
        self._applying = seq
        if seq > self.applied_seq:
            self._ahead.add(seq)
            if seq > self.purge_seq + 1:  # past a gap: its top is the highest missing now
                self._missing = seq - 1
            elif seq == self._missing:
                self._missing = self._highest_missing(seq - 1)
        self.purge_seq = max(self.purge_seq, seq)

    def applied_through(self, seq: int) -> None:
        """Every purge of the log up to ``seq`` has been applied, with no gap."""
        # Never backwards: entries already written carry the higher date.
        self.applied_seq = max(self.applied_seq, seq)
        # A catch-up may vouch for purges it never showed us (older than the log keeps):
        # they were made, so entries dated before them cannot be vouched for.
        self.purge_seq = max(self.purge_seq, self.applied_seq)
        if self._ahead:
            self._ahead = {s for s in self._ahead if s > self.applied_seq}
        if self._missing <= self.applied_seq:
            self._missing = 0  # it was the highest missing: any lower one is applied too

    def _highest_missing(self, below: int) -> int:
        """The highest sequence from ``below`` down not applied yet (0: none)."""
        while below > self.applied_seq and below in self._ahead:
            below -= 1
        return below if below > self.applied_seq else 0

    def purge_later(self, kind: str, value: str) -> None:
        self._remember(self._applying or self.purge_seq, kind, value)
        # Never dropped: readers would still check entries against the purge while it is in
        # their history, but the entries would stay in Redis, taking room, until their TTL.
        # Purges are few next to writes, so they cannot pile up the way writes can.
        self._spawn(self.purge(kind, value), droppable=False)

    def _remember(self, seq: int, kind: str, value: str) -> None:
        recent = self._recent
        at = len(recent)
        while at and recent[at - 1][0] > seq:
            at -= 1
        if len(recent) == recent.maxlen:
            if at == 0:  # older than all we remember: forgotten at once
                self._forgotten = max(self._forgotten, seq)
                return
            self._forgotten = max(self._forgotten, recent.popleft()[0])
            at -= 1
        recent.insert(at, (seq, kind, value))

    async def purge(self, kind: str, value: str) -> int:
        """Delete the entries a purge names; how many."""
        try:
            if kind == "prefix":
                pattern = self.cache.build_key("e:" + _glob_escape(value) + "*")
                names = [k async for k in self.cache.client.scan_iter(match=pattern, count=500)]
                return int(await self.cache.client.delete(*names)) if names else 0
            if kind == "url" and "?" in value:  # one query of a path: its entries only
                members = await self.cache.raw("smembers", self.cache.build_key(
                    f"p:{value.split('?', 1)[0]}"))
                entries = {m for m in members if m.split(b"\x00", 1)[0] == value.encode()}
                index = None
            else:
                index = self.cache.build_key(f"t:{value}" if kind == "tag" else f"p:{value}")
                entries = set(await self.cache.raw("smembers", index))
            names = [self.cache.build_key("e:" + e.decode()) for e in entries]
            removed = int(await self.cache.client.delete(*names)) if names else 0
            if index is not None:
                await self.cache.client.delete(index)
            return removed
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(f"purge {kind} {value}", exc)
            return 0


def _glob_escape(text: str) -> str:
    """Redis MATCH patterns are globs: escape their special characters."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)

