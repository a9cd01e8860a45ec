"""The in-memory cache tier: a byte-bounded S3-FIFO of stored responses plus purge indexes.

Eviction is S3-FIFO (``httpcache.s3fifo``): it beat LRU on every trace of
``bench/eviction_policies.py`` (Zipf 0.8/1.0, Zipf with scans, a shifting hot set; by 1 to
11 points of hit ratio) and a hit only bumps a counter. The same class, sized by file bytes
instead of memory bytes, holds the disk tier's metadata (``httpcache.disk_store``).

Entries are keyed by *entry key*: the cache key, plus a secondary key for responses that
vary (RFC 9111 §4.1), so several variants of one URL are stored side by side. The Vary field
names last seen for a URL say how a request selects its variant (``lookup``).

Indexes are kept in step with every insert, delete and eviction, so a purge costs time in
proportion to what it removes, not to the cache size:

* variants: cache key → its entry keys (a purge by key removes every variant), for the
  cache keys whose only entry is not the plain one (the entry keyed by the cache key itself,
  which is most of them: an index slot per entry would cost as much as the S3-FIFO's);
* tag index: surrogate key → entry keys carrying it (purge by tag);
* query index: path → the cache keys with that path and a query (purge by URL: a path names
  itself and those).

An index holds a name's only key as the key itself and makes a set of the second (most
names have one key: a set costs 216 bytes, a cache holds millions of entries).

Purge by prefix scans the keys (O(entries)); prefixes are rare and a sorted index would cost
every insert. A hard purge evicts; a soft purge keeps the bytes but marks the response
invalid so the next request revalidates it (RFC 9111 §4.3 with the stored validators).

A purge that arrives while a response for a matching key is being fetched must not be undone
when that fetch completes; ``put(fetched=fetch_mark())`` stores such a response marked
invalid. The same holds for a purge shortly *before* the fetch (``purge_grace`` seconds):
tiers receive a purge independently, so an edge that has applied it may refetch from a shield
that has not yet, and get the old bytes. Marked invalid, they are revalidated next time.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from httpcache.headers import Fields
from httpcache.messages import StoredResponse
from httpcache.s3fifo import S3FIFO
from httpcache.vary import request_variant_key

# How many recent purges are remembered to catch a purge racing with a fetch (see ``put``).
RECENT_PURGES = 4096
# How long before a fetch a matching purge still makes its response suspect (tier skew).
PURGE_GRACE = 2.0

_Keys = str | set[str]  # what an index holds under a name: one key, or a set of two or more


@dataclass(frozen=True, slots=True)
class FetchMark:
    """Where the purge history stood when an upstream request was sent."""

    serial: int
    time: float


@dataclass(frozen=True, slots=True)
class PurgeResult:
    removed: int = 0
    invalidated: int = 0

    def __add__(self, other: PurgeResult) -> PurgeResult:
        return PurgeResult(self.removed + other.removed, self.invalidated + other.invalidated)


class MemoryStore:
    """Stored responses bounded by ``max_bytes`` in total and ``max_object_bytes`` each."""

    def __init__(self, max_bytes: int, max_object_bytes: int | None = None,
                 on_evict: Callable[[StoredResponse], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 purge_grace: float = PURGE_GRACE,
                 sizeof: Callable[[StoredResponse], int] = StoredResponse.byte_size,
                 on_remove: Callable[[StoredResponse], None] | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError(f"cache max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.max_object_bytes = min(max_object_bytes or max_bytes, max_bytes)
        self._sizeof = sizeof
        self._cache: S3FIFO[str, StoredResponse] = S3FIFO(max_bytes, sizeof, self._evicted)
        self._tags: dict[str, _Keys] = {}
        self._queries: dict[str, _Keys] = {}  # path -> cache keys with a query
        self._variants: dict[str, _Keys] = {}  # cache key -> entry keys, unless just itself
        # cache key -> the latest Vary names, for the keys that vary
        self._vary_names: dict[str, tuple[str, ...]] = {}
        self._listener = on_evict
        self._on_remove = on_remove  # every value that leaves: evicted, deleted, replaced
        self.evictions = 0
        self._clock = clock
        self.purge_grace = purge_grace
        self._serial = 0
        self._recent: deque[tuple[int, float, str, str]] = deque(maxlen=RECENT_PURGES)

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str) -> StoredResponse | None:
        """The stored response for entry key ``key`` (counted as a read for eviction)."""
        return self._cache.get(key)

    def lookup(self, key: str, request_headers: Fields) -> tuple[StoredResponse | None, bool]:
        """The variant of ``key`` that ``request_headers`` select, and whether other variants
        exist (a vary-miss) when none matches."""
        names = self._vary_names.get(key)
        if not names:
            return self._cache.get(key), False
        entry = f"{key}\x00{request_variant_key(names, request_headers)}"
        found = self._cache.get(entry)
        return found, found is None and (key in self._variants or key in self._cache)

    def variants(self, key: str) -> list[StoredResponse]:
        """Every stored variant of ``key`` (without changing recency)."""
        found = [self.peek(k) for k in self._entries_of(key)]
        return [s for s in found if s is not None]

    def peek(self, key: str) -> StoredResponse | None:
        """Like ``get`` without counting as a read."""
        return self._cache.peek(key)

    def __contains__(self, key: object) -> bool:
        return key in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def current_bytes(self) -> int:
        return int(self._cache.currsize)

    def keys_for_tag(self, tag: str) -> set[str]:
        return set(_members(self._tags, tag))

    def fits(self, size: int) -> bool:
        """Whether a body of ``size`` bytes may be kept in memory at all."""
        return size <= self.max_object_bytes

    # -- writing -------------------------------------------------------------------------------

    def put(self, stored: StoredResponse, *, fetched: FetchMark | None = None) -> bool:
        """Store (or replace) ``stored``; ``False`` when it is larger than one object may be.

        ``fetched`` is ``fetch_mark()`` as taken when the upstream request was sent; if a
        matching purge happened since (or just before), the response is stored invalid.
        """
        if fetched is not None and self._purged_since(stored, fetched):
            stored = dataclasses.replace(stored, invalidated=True)
        entry = stored.entry_key
        if self._sizeof(stored) > self.max_object_bytes:
            self.delete_entry(entry)
            return False
        old = self._cache.peek(entry)
        if old is not None:
            self._unindex(entry, old)
        self._index(entry, stored)
        # a replacement keeps its place and read count; may evict others (or, rarely, this
        # very entry), each reported to _evicted, which unindexes it
        self._cache[entry] = stored
        if old is not None and self._on_remove is not None:
            self._on_remove(old)
        return True

    def delete(self, key: str) -> bool:
        """Remove every variant of cache key ``key`` (or the one entry ``key`` names)."""
        entries = list(self._entries_of(key)) or [key]
        removed = False
        for entry in entries:
            removed = self.delete_entry(entry) or removed
        return removed

    def delete_entry(self, entry: str) -> bool:
        stored = self._cache.pop(entry, None)
        if stored is None:
            return False
        self._unindex(entry, stored)
        if self._on_remove is not None:
            self._on_remove(stored)
        return True

    def clear(self) -> None:
        for key in list(self._cache.keys()):
            self.delete(key)

    # -- purging -------------------------------------------------------------------------------

    def purge_keys(self, keys: Iterable[str], *, soft: bool = False) -> PurgeResult:
        """Purge entry keys, or every variant of cache keys."""
        removed = invalidated = 0
        entries: list[str] = []
        for key in list(keys):
            entries.extend(self._entries_of(key) or [key])
        for key in entries:
            if soft:
                stored = self.peek(key)
                if stored is not None and not stored.invalidated:
                    # same size, same key: no eviction, and no read counted either
                    self._cache.replace(key, dataclasses.replace(stored, invalidated=True))
                    invalidated += 1
            elif self.delete_entry(key):
                removed += 1
        return PurgeResult(removed, invalidated)

    def purge_tag(self, tag: str, *, soft: bool = False, age: float = 0.0) -> PurgeResult:
        """``age``: how long ago the purge was made (see ``_remember``)."""
        self._remember("tag", tag, age)
        return self.purge_keys(self.keys_for_tag(tag), soft=soft)

    def purge_url(self, url: str, *, soft: bool = False, age: float = 0.0) -> PurgeResult:
        """A path purges every query variant of it; a path with a query purges that key."""
        self._remember("url", url, age)
        if "?" in url:
            return self.purge_keys([url], soft=soft)
        return self.purge_keys([url, *_members(self._queries, url)], soft=soft)

    def purge_prefix(self, prefix: str, *, soft: bool = False, age: float = 0.0) -> PurgeResult:
        self._remember("prefix", prefix, age)
        # an entry key starts with its cache key (``StoredResponse.entry_key``)
        keys = {k.partition("\x00")[0] for k in self._cache.keys() if k.startswith(prefix)}
        return self.purge_keys([k for k in keys if k.startswith(prefix)], soft=soft)

    # -- purges racing with fetches ------------------------------------------------------------

    def fetch_mark(self) -> FetchMark:
        """Take before fetching; pass to ``put``."""
        return FetchMark(self._serial, self._clock())

    def _remember(self, kind: str, value: str, age: float = 0.0) -> None:
        """Record a purge for the race check, dated when it was *made* (``age`` seconds ago),
        not when this node learned of it: a purge caught up from the log long after it was
        issued has reached every tier already and must not invalidate fresh fetches.
        Dates never go backwards, so the newest-first scan in ``_purged_since`` may stop at
        the first old entry."""
        self._serial += 1
        when = self._clock() - max(0.0, age)
        if self._recent:
            when = max(when, self._recent[-1][1])
        self._recent.append((self._serial, when, kind, value))

    def purged_since(self, stored: StoredResponse, mark: FetchMark) -> bool:
        """Whether a purge matching ``stored`` happened since ``mark`` (or just before): the
        other tiers ask the memory tier, which sees every purge."""
        return self._purged_since(stored, mark)

    def _purged_since(self, stored: StoredResponse, mark: FetchMark) -> bool:
        horizon = mark.time - self.purge_grace
        if not self._recent or (self._recent[-1][1] < horizon and mark.serial >= self._serial):
            return False
        oldest_serial, oldest_time = self._recent[0][0], self._recent[0][1]
        forgotten = len(self._recent) == self._recent.maxlen
        if oldest_serial > mark.serial + 1 or (forgotten and oldest_time >= horizon):
            return True  # the history no longer reaches back that far: assume it matched
        for serial, when, kind, value in reversed(self._recent):
            if serial <= mark.serial and when < horizon:
                break
            if purge_matches(kind, value, stored):
                return True
        return False

    # -- indexes -------------------------------------------------------------------------------

    def _entries_of(self, key: str) -> tuple[str, ...] | set[str]:
        """The entry keys of cache key ``key`` (a copy)."""
        entries = _members(self._variants, key)
        return entries or ((key,) if key in self._cache else ())

    def _index(self, entry: str, stored: StoredResponse) -> None:
        key = stored.cache_key
        for tag in stored.surrogate_keys:
            _add(self._tags, tag, entry)
        if "?" in key:
            _add(self._queries, stored.path, key)
        if entry != key or key in self._variants:
            if key not in self._variants and key in self._cache:
                _add(self._variants, key, key)  # the plain entry gets company
            _add(self._variants, key, entry)
        if not stored.slot:  # slices and their record do not say how variants are selected
            if stored.vary:
                self._vary_names[key] = stored.vary_names
            else:
                self._vary_names.pop(key, None)

    def _unindex(self, entry: str, stored: StoredResponse) -> None:
        key = stored.cache_key
        for tag in stored.surrogate_keys:
            _discard(self._tags, tag, entry)
        _discard(self._variants, key, entry)
        if self._variants.get(key) == key:
            del self._variants[key]  # the plain entry is alone again
        if key not in self._variants and key not in self._cache:
            self._vary_names.pop(key, None)
            if "?" in key:
                _discard(self._queries, stored.path, key)

    def _evicted(self, key: str, stored: StoredResponse) -> None:
        self._unindex(key, stored)
        self.evictions += 1
        if self._listener is not None:
            self._listener(stored)
        if self._on_remove is not None:
            self._on_remove(stored)

    def check_indexes(self) -> None:
        """Assert the indexes describe exactly the stored entries (for tests)."""
        entries = {k: self.peek(k) for k in self._cache.keys()}
        tags: dict[str, set[str]] = {}
        queries: dict[str, set[str]] = {}
        variants: dict[str, set[str]] = {}
        for key, stored in entries.items():
            assert stored is not None
            for tag in stored.surrogate_keys:
                tags.setdefault(tag, set()).add(key)
            if "?" in stored.cache_key:
                queries.setdefault(stored.path, set()).add(stored.cache_key)
            variants.setdefault(stored.cache_key, set()).add(key)
        variants = {key: keys for key, keys in variants.items() if keys != {key}}
        for expected, index in ((tags, self._tags), (queries, self._queries),
                                (variants, self._variants)):
            assert all(isinstance(keys, str) or len(keys) > 1 for keys in index.values())
            found = {name: set(_members(index, name)) for name in index}
            assert expected == found, (expected, found)
        assert all(name in self._variants or name in self._cache for name in self._vary_names)
        assert not any(keys == name for name, keys in self._variants.items())


def purge_matches(kind: str, value: str, stored: StoredResponse) -> bool:
    """Whether purge ``kind`` (``tag``, ``url``, ``prefix``) of ``value`` names ``stored``: a
    URL without a query names every query of its path (as ``purge_url`` does)."""
    if kind == "tag":
        return value in stored.surrogate_keys
    if kind == "url":
        return value == (stored.cache_key if "?" in value else stored.path)
    return stored.cache_key.startswith(value)


def _members(index: dict[str, _Keys], name: str) -> tuple[str, ...] | set[str]:
    """The keys under ``name`` (a copy: the caller may change the index meanwhile)."""
    keys = index.get(name)
    if keys is None:
        return ()
    return (keys,) if isinstance(keys, str) else set(keys)


def _add(index: dict[str, _Keys], name: str, key: str) -> None:
    keys = index.get(name)
    if keys is None:
        index[name] = key
    elif isinstance(keys, str):
        if keys != key:
            index[name] = {keys, key}
    else:
        keys.add(key)


def _discard(index: dict[str, _Keys], name: str, key: str) -> None:
    keys = index.get(name)
    if keys is None:
        return
    if isinstance(keys, str):
        if keys == key:
            del index[name]
        return
    keys.discard(key)
    if len(keys) == 1:
        index[name] = next(iter(keys))
