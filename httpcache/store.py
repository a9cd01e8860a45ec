"""The in-memory cache tier: a byte-bounded S3-FIFO of stored responses plus purge indexes.

Eviction is S3-FIFO (``httpcache.s3fifo``): it beat LRU on every trace of
``bench/eviction_policies.py`` (Zipf 0.8/1.0, Zipf with scans, a shifting hot set; by 1 to
11 points of hit ratio) and a hit only bumps a counter. The same class, sized by file bytes
instead of memory bytes, holds the disk tier's metadata (``httpcache.disk_store``).

Entries are keyed by *entry key*: the cache key, plus a secondary key for responses that
vary (RFC 9111 §4.1), so several variants of one URL are stored side by side. The Vary field
names last seen for a URL say how a request selects its variant (``lookup``).

A response with a body of up to 32 KiB that does not vary is kept as one ``bytes`` record
(``httpcache.stored_record``), and the S3-FIFO keeps no key string for it (the record holds
its key), so a million 1 KiB objects cost about 14% over their body and field bytes where
response objects cost 57%, and the cyclic GC has nothing per entry to walk. A read unpacks the
record into a ``StoredResponse``; the *read memo* keeps the last few thousand of those (by
count, and by the body bytes they copied), so a hot object is unpacked once and keeps its
pre-serialised head. Bigger responses stay objects: their overhead is under 1%.

Indexes are kept in step with every insert, delete and eviction, so a purge costs time in
proportion to what it removes, not to the cache size:

* variants: cache key → its entry keys (a purge by key removes every variant), for the
  cache keys whose only entry is not the plain one (the entry keyed by the cache key itself,
  which is most of them: an index slot per entry would cost as much as the S3-FIFO's);
* tag index: surrogate key → the S3-FIFO table keys (hashes) of the entries carrying it,
  one int or an array of them. A leaving entry is not searched out of a tag's array: the
  tag counts it as stale, is dropped when all its members are, and a tag of more than 16
  is rebuilt from the entries that still carry it once half are (constant time per
  removal, amortised). A purge checks each member's tags,
  so a stale or colliding hash never removes an entry without the tag;
* query index: path → the cache keys with that path and a query (purge by URL: a path names
  itself and those).

The variant and query indexes hold a name's only key as the key itself and make a set of
the second (most names have one key: a set costs 216 bytes, a cache holds millions of
entries).

Purge by prefix scans the keys (O(entries)); prefixes are rare and a sorted index would cost
every insert. A hard purge evicts; a soft purge keeps the bytes but marks the response
invalid so the next request revalidates it (RFC 9111 §4.3 with the stored validators).

A purge that arrives while a response for a matching key is being fetched must not be undone
when that fetch completes; ``put(fetched=fetch_mark())`` stores such a response marked
invalid. The same holds for a purge shortly *before* the fetch (``purge_grace`` seconds):
tiers receive a purge independently, so an edge that has applied it may refetch from a shield
that has not yet, and get the old bytes. Marked invalid, they are revalidated next time,
and so is what each such revalidation stores. Unless the upstream says which purges its
answer reflects (``httpcache.purge_watermark``; the mark's ``reflected``): those are not
suspect, so once the shield has a purge, what the edge fetches is kept valid. A purge that is
not from the log, or an upstream that does not say, leaves every request for a matching key
going upstream (conditionally; concurrent ones collapse) for ``purge_grace`` seconds. Where the
upstream is the origin itself there is no other tier to wait for: the roles set the grace to 0.
"""

from __future__ import annotations

import dataclasses
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from httpcache import stored_record
from httpcache.headers import Fields
from httpcache.int_table import table_key
from httpcache.messages import StoredResponse, packed_state
from httpcache.records import record
from httpcache.s3fifo import S3FIFO
from httpcache.vary import request_variant_key

# How many recent purges are remembered to catch a purge racing with a fetch (see ``put``).
RECENT_PURGES = 4096
# How long before a fetch a matching purge still makes its response suspect (tier skew).
PURGE_GRACE = 2.0

_Keys = str | set[str]  # what an index holds under a name: one key, or a set of two or more
_Members = int | array  # a tag's entries: one entry's table key, or an array of them
_Value = bytes | StoredResponse  # what the S3-FIFO holds: a record, or a response too big to pack

# The read memo: responses unpacked for recent reads, so a hot object is unpacked once
# (and its pre-serialised head, ``memo_wire``, kept); bounded by count and by the bytes of
# the bodies it copied out of records.
READ_MEMO_ENTRIES = 4096
READ_MEMO_SHARE = 32  # of max_bytes, at most, in copied bodies (and at least 1 MiB)
# A tag of at most this many members is not pruned: it is dropped when all have left.
PRUNE_ABOVE = 16


@record
class FetchMark:
    """Where the purge history stood when an upstream request was sent."""

    serial: int
    time: float
    # the purge log's sequence applied with no gap then (0: none, or no log followed): what
    # this tier may say its answer from this fetch reflects (``httpcache.purge_watermark``)
    applied: int = 0
    # the upstream's answer reflects every purge of the log up to this sequence (0: it did
    # not say); set with ``reflecting`` once its head has come
    reflected: int = 0

    def reflecting(self, seq: int) -> FetchMark:
        return self if seq <= self.reflected else FetchMark(self.serial, self.time,
                                                             self.applied, seq)


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
        # sizes are given with each put (``sizeof`` of the response, packed or not)
        self._cache: S3FIFO[str, _Value] = S3FIFO(max_bytes, None, self._evicted,
                                                  keyof=_entry_key)
        # entry key -> (slot, response) for recent reads; see READ_MEMO_*
        self._memo: OrderedDict[str, tuple[int, StoredResponse, int]] = OrderedDict()
        self._memo_bytes = 0
        self._memo_max_bytes = max(1 << 20, max_bytes // READ_MEMO_SHARE)
        self._tags: dict[str, _Members] = {}  # tag -> table keys of entries (lazily pruned)
        self._stale: dict[str, int] = {}  # tag -> members left behind (arrays only)
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
        # (serial, when made, kind, value, sequence in the purge log or 0)
        self._recent: deque[tuple[int, float, str, str, int]] = deque(maxlen=RECENT_PURGES)
        self._applying = 0  # the purge log event being applied (``begin_purge``)
        self.applied_seq = 0  # every purge of the log up to this one is applied
        self._last_logged = (0, 0.0)  # the latest purge from the log: (sequence, when made)

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str) -> StoredResponse | None:
        """The stored response for entry key ``key`` (counted as a read for eviction)."""
        memo = self._memo.get(key)
        if memo is not None:
            self._cache.touch(memo[0])
            return memo[1]
        slot = self._cache.slot(key)
        if slot < 0:
            return None
        self._cache.touch(slot)
        return self._read(key, slot)

    def _read(self, key: str, slot: int) -> StoredResponse:
        """The response in ``slot``, unpacked if need be, and remembered in the read memo."""
        value = self._cache.value_at(slot)
        assert value is not None  # a live slot holds a value
        if not isinstance(value, bytes):
            stored = value
            copied = 0
        else:
            stored = stored_record.unpack(value)
            copied = len(stored.body)
        memo = self._memo
        while memo and (len(memo) >= READ_MEMO_ENTRIES
                        or self._memo_bytes + copied > self._memo_max_bytes):
            self._memo_bytes -= memo.popitem(last=False)[1][2]  # the oldest read
        if copied <= self._memo_max_bytes:
            memo[key] = (slot, stored, copied)
            self._memo_bytes += copied
        return stored

    def _forget(self, key: str) -> None:
        memo = self._memo.pop(key, None)
        if memo is not None:
            self._memo_bytes -= memo[2]

    def lookup(self, key: str, request_headers: Fields) -> tuple[StoredResponse | None, bool]:
        """The variant of ``key`` that ``request_headers`` select, and whether other variants
        exist (a vary-miss) when none matches."""
        names = self._vary_names.get(key)
        if not names:
            return self.get(key), False
        entry = f"{key}\x00{request_variant_key(names, request_headers)}"
        found = self.get(entry)
        return found, found is None and (key in self._variants or key in self._cache)

    def variants(self, key: str) -> list[StoredResponse]:
        """Every stored variant of ``key`` (without changing recency)."""
        found = [self.peek(k) for k in self._entries_of(key)]
        return [s for s in found if s is not None]

    def peek(self, key: str) -> StoredResponse | None:
        """Like ``get`` without counting as a read."""
        memo = self._memo.get(key)
        if memo is not None:
            return memo[1]
        value = self._cache.peek(key)
        return stored_record.unpack(value) if isinstance(value, bytes) else value

    def __contains__(self, key: object) -> bool:
        return key in self._memo or key in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def current_bytes(self) -> int:
        return int(self._cache.currsize)

    def keys_for_tag(self, tag: str) -> set[str]:
        """The entry keys of the stored responses that carry ``tag``."""
        members = self._tags.get(tag)
        if members is None:
            return set()
        keys = set()
        for fingerprint in {members} if isinstance(members, int) else set(members):
            value = self._cache.peek_hash(fingerprint)
            if value is not None and tag in _tags_of(value):
                keys.add(_entry_key(value))
        return keys

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
        size = self._sizeof(stored)
        if size > self.max_object_bytes:
            self.delete_entry(entry)
            return False
        old = self._cache.peek(entry)
        if old is not None:
            self._unindex(entry, old)
            self._forget(entry)
        self._index(entry, stored)
        # a replacement keeps its place and read count; may evict others (or, rarely, this
        # very entry), each reported to _evicted, which unindexes it
        record = stored_record.pack(stored)
        self._cache.put(entry, stored if record is None else record, size)
        if old is not None and self._on_remove is not None:
            self._on_remove(_response(old))
        return True

    def delete(self, key: str) -> bool:
        """Remove every variant of cache key ``key`` (or the one entry ``key`` names)."""
        entries = list(self._entries_of(key)) or [key]
        removed = False
        for entry in entries:
            removed = self.delete_entry(entry) or removed
        return removed

    def delete_entry(self, entry: str) -> bool:
        self._forget(entry)
        value = self._cache.pop(entry, None)
        if value is None:
            return False
        self._unindex(entry, value)
        if self._on_remove is not None:
            self._on_remove(_response(value))
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
                    self._forget(key)
                    value = self._cache.peek(key)
                    # same size, same key: no eviction, and no read counted either
                    self._cache.replace(key, stored_record.invalidated(value) if isinstance(
                        value, bytes) else dataclasses.replace(stored, invalidated=True))
                    invalidated += 1
            elif self.delete_entry(key):
                removed += 1
        return PurgeResult(removed, invalidated)

    def purge_tag(self, tag: str, *, soft: bool = False, age: float = 0.0) -> PurgeResult:
        """``age``: how long ago the purge was made (see ``_remember``)."""
        self._remember("tag", tag, age)
        keys = self.keys_for_tag(tag)
        if not soft:  # every entry with the tag goes: no need to count them out one by one
            self._tags.pop(tag, None)
            self._stale.pop(tag, None)
        return self.purge_keys(keys, soft=soft)

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
        return FetchMark(self._serial, self._clock(), self.applied_seq)

    def begin_purge(self, seq: int) -> None:
        """The purges that follow belong to event ``seq`` of the purge log (0: to none)."""
        self._applying = seq

    def applied_through(self, seq: int) -> None:
        """Every purge of the log up to ``seq`` has been applied, with no gap."""
        self.applied_seq = seq

    def seq_to_ask(self) -> int:
        """The purge the upstream should have applied before answering a fetch sent now: the
        latest from the log if it is recent enough that the upstream may not have it yet
        (``purge_grace``), else 0. An upstream that says it has (``FetchMark.reflecting``)
        spares the response being stored invalid."""
        seq, when = self._last_logged
        return seq if seq and when >= self._clock() - self.purge_grace else 0

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
        seq = self._applying
        self._recent.append((self._serial, when, kind, value, seq))
        if seq:
            self._last_logged = (max(seq, self._last_logged[0]), when)

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
        reflected = mark.reflected
        for serial, when, kind, value, seq in reversed(self._recent):
            if serial <= mark.serial and when < horizon:
                break
            if seq and seq <= reflected:
                continue  # the upstream applied it before it answered
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
        fingerprint = table_key(entry)
        tags = self._tags
        for tag in packed_state(stored)[1]:
            members = tags.get(tag)
            if members is None:
                tags[tag] = fingerprint
            elif isinstance(members, int):
                if members != fingerprint:
                    tags[tag] = array("q", (members, fingerprint))
            else:
                members.append(fingerprint)
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

    def _unindex(self, entry: str, value: _Value) -> None:
        fingerprint = table_key(entry)
        for tag in _tags_of(value):
            members = self._tags.get(tag)
            if isinstance(members, int):
                if members == fingerprint:
                    del self._tags[tag]
            elif members is not None:
                # left in place (removing it would cost the tag's size): pruned in bulk
                stale = self._stale.get(tag, 0) + 1
                if stale >= len(members):  # each member counted out once: all are gone
                    del self._tags[tag]
                    self._stale.pop(tag, None)
                elif stale * 2 >= len(members) > PRUNE_ABOVE:
                    self._prune(tag, entry)
                else:
                    self._stale[tag] = stale
        if isinstance(value, bytes):
            key = stored_record.key_of(value)
            path = key.split("?", 1)[0]
        else:
            key, path = value.cache_key, value.path
        _discard(self._variants, key, entry)
        if self._variants.get(key) == key:
            del self._variants[key]  # the plain entry is alone again
        if key not in self._variants and key not in self._cache:
            self._vary_names.pop(key, None)
            if "?" in key:
                _discard(self._queries, path, key)

    def _prune(self, tag: str, leaving: str) -> None:
        """Rebuild ``tag``'s members from the entries that still carry it, but ``leaving``
        (being removed): linear in the members, once per as many removals as half of them."""
        self._stale.pop(tag, None)
        members = self._tags[tag]
        kept = []
        assert not isinstance(members, int)  # a tag with stale members holds an array
        for fingerprint in dict.fromkeys(members):
            value = self._cache.peek_hash(fingerprint)
            if value is not None and tag in _tags_of(value) and _entry_key(value) != leaving:
                kept.append(fingerprint)
        if not kept:
            del self._tags[tag]
        else:
            self._tags[tag] = kept[0] if len(kept) == 1 else array("q", kept)

    def _evicted(self, key: str, value: _Value) -> None:
        self._forget(key)
        self._unindex(key, value)
        self.evictions += 1
        if self._listener is not None or self._on_remove is not None:
            stored = _response(value)
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
        found_tags = {tag: self.keys_for_tag(tag) for tag in self._tags}
        assert {tag: keys for tag, keys in found_tags.items() if keys} == tags, (tags, found_tags)
        for stale_tag, stale in self._stale.items():
            members = self._tags[stale_tag]
            assert not isinstance(members, int) and 0 < stale < len(members)
        for key, (slot, stored, _copied) in self._memo.items():
            value = self._cache.value_at(slot)
            assert _entry_key(value) == key, (key, value)  # type: ignore[arg-type]
            assert value is stored or stored_record.pack(stored) == value
        for expected, index in ((queries, self._queries), (variants, self._variants)):
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


def _entry_key(value: _Value) -> str:
    return stored_record.key_of(value) if isinstance(value, bytes) else value.entry_key


def _tags_of(value: _Value) -> tuple[str, ...] | list[str]:
    return stored_record.tags_of(value) if isinstance(value, bytes) else packed_state(value)[1]


def _response(value: _Value) -> StoredResponse:
    return stored_record.unpack(value) if isinstance(value, bytes) else value


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
