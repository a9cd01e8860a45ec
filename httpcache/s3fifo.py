"""S3-FIFO eviction (Yang et al., "FIFO queues are all you need for cache eviction", SOSP '23),
byte-bounded, pure (no I/O, no clock).

Three FIFO queues:

* ``small`` (about 10% of the bytes) takes new keys. When it is over its share, its oldest
  entry leaves: to ``main`` if it was read at least ``promote_at`` times while in ``small``
  (default 1; the paper's pseudo-code says more than once, ``bench/eviction_policies.py``
  compares both), otherwise out of the cache with its key remembered in ``ghost``;
* ``main`` takes keys promoted from ``small`` and keys found in ``ghost`` (seen recently
  enough to deserve a second chance). Its oldest entry is reinserted at the tail with its
  frequency decremented while the frequency is positive, evicted when it is zero;
* ``ghost`` holds keys only (no values), at most as many as the cache holds entries.

Each entry carries a 2-bit frequency (0..3) bumped on a read. A read is a dict lookup and an
integer update: no list is reordered on a hit (unlike LRU), which is also what makes it cheap.
Every operation is O(1) amortised (each entry moves between queues a bounded number of times
per insertion).

One-hit wonders (a scan, a crawler) pass through ``small`` and leave without disturbing the
hot set in ``main``; that is why it beats LRU on Zipf and scan-polluted traces
(``bench/eviction_policies.py`` measures it).

Memory per entry is one small object (``_Entry``: key, value, size, frequency, queue) and a
slot in one dict; the queues are deques of those objects (8 bytes a slot) rather than
OrderedDicts (about 100 bytes a key), so a ``pop`` from the middle of a queue is lazy: the
entry is marked dead, its value released, and it is skipped when it reaches the head (or
dropped when dead entries outnumber the live ones). The ghost keeps the keys' hashes, not
the keys, so an evicted key's string is not held on to; two keys with one hash only share a
second chance.

The interface is the part of ``cachetools.Cache`` the memory tier uses: ``get`` (counts as a
read), ``peek`` (does not), item assignment (may evict, reporting each eviction to
``on_evict``), ``pop``, ``replace`` (same key, no change of position or frequency),
``currsize``/``maxsize`` in bytes.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

SMALL_SHARE = 0.10  # the paper's 10% of the cache for the small queue
MAX_FREQ = 3
DEAD = -1  # the size of a popped entry still in a queue


class _Entry(Generic[K, V]):
    __slots__ = ("key", "value", "size", "freq", "in_main")

    def __init__(self, key: K, value: V | None, size: int) -> None:
        self.key = key
        self.value = value
        self.size = size
        self.freq = 0
        self.in_main = False


class S3FIFO(Generic[K, V]):
    """A byte-bounded S3-FIFO map. ``getsizeof(value)`` gives each value's cost."""

    def __init__(self, maxsize: int, getsizeof: Callable[[V], int],
                 on_evict: Callable[[K, V], None] | None = None,
                 small_share: float = SMALL_SHARE, promote_at: int = 1) -> None:
        if maxsize <= 0:
            raise ValueError(f"S3FIFO maxsize must be positive, got {maxsize}")
        if not 0 < small_share < 1:
            raise ValueError(f"S3FIFO small_share must be in (0, 1), got {small_share}")
        self.maxsize = maxsize
        self._promote_at = promote_at
        self._sizeof = getsizeof
        self._on_evict = on_evict
        self._small_target = max(1, int(maxsize * small_share))
        self._entries: dict[K, _Entry[K, V]] = {}
        self._small: deque[_Entry[K, V]] = deque()
        self._main: deque[_Entry[K, V]] = deque()
        self._dead = 0  # popped entries still in _small or _main
        self._ghost: OrderedDict[int, None] = OrderedDict()  # hash(key), oldest first
        self._small_bytes = 0
        self._main_bytes = 0

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: K, default: V | None = None) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return default
        if entry.freq < MAX_FREQ:
            entry.freq += 1
        return entry.value

    def peek(self, key: K) -> V | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.value

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> Iterator[K]:
        return iter(list(self._entries))

    @property
    def currsize(self) -> int:
        return self._small_bytes + self._main_bytes

    # -- writing ---------------------------------------------------------------------------

    def __setitem__(self, key: K, value: V) -> None:
        """Insert (or replace in place, keeping queue and frequency), then evict to fit.
        A value larger than ``maxsize`` raises ``ValueError`` like cachetools does."""
        size = self._sizeof(value)
        if size > self.maxsize:
            raise ValueError(f"value of {size} bytes is larger than the cache ({self.maxsize})")
        entry = self._entries.get(key)
        if entry is not None:
            self._account(entry, size - entry.size)
            entry.value, entry.size = value, size
        else:
            entry = _Entry(key, value, size)
            self._entries[key] = entry
            fingerprint = hash(key)
            if fingerprint in self._ghost:  # seen recently: straight to main
                del self._ghost[fingerprint]
                entry.in_main = True
                self._main.append(entry)
            else:
                self._small.append(entry)
            self._account(entry, size)
        self._evict_to_fit()

    def replace(self, key: K, value: V) -> None:
        """Swap the value of an existing key of the same size (no eviction, no read)."""
        self._entries[key].value = value

    def pop(self, key: K, default: V | None = None) -> V | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return default
        self._account(entry, -entry.size)
        value = entry.value
        entry.value, entry.size = None, DEAD  # skipped when it reaches its queue's head
        self._dead += 1
        if self._dead > len(self._entries) + 64:
            self._drop_dead()
        return value

    # -- eviction --------------------------------------------------------------------------

    def _account(self, entry: _Entry[K, V], delta: int) -> None:
        if entry.in_main:
            self._main_bytes += delta
        else:
            self._small_bytes += delta

    def _drop_dead(self) -> None:
        """Rebuild the queues without popped entries: linear, once per as many pops as
        there are live entries, so constant time per pop."""
        self._small = deque(e for e in self._small if e.size != DEAD)
        self._main = deque(e for e in self._main if e.size != DEAD)
        self._dead = 0

    def _evict_to_fit(self) -> None:
        while self.currsize > self.maxsize:
            if self._small_bytes > self._small_target or not self._main:
                self._evict_small()
            else:
                self._evict_main()

    def _evict_small(self) -> None:
        entry = self._small.popleft()
        if entry.size == DEAD:
            self._dead -= 1
            return
        self._small_bytes -= entry.size
        if entry.freq >= self._promote_at:  # read again while on probation: keep it
            entry.freq = 0
            entry.in_main = True
            self._main.append(entry)
            self._main_bytes += entry.size
            return
        self._ghost[hash(entry.key)] = None
        while len(self._ghost) > max(len(self._entries), 1):
            self._ghost.popitem(last=False)
        self._drop(entry)

    def _evict_main(self) -> None:
        entry = self._main.popleft()
        if entry.size == DEAD:
            self._dead -= 1
            return
        if entry.freq > 0:
            entry.freq -= 1
            self._main.append(entry)  # reinserted at the tail
            return
        self._main_bytes -= entry.size
        self._drop(entry)

    def _drop(self, entry: _Entry[K, V]) -> None:
        del self._entries[entry.key]
        if self._on_evict is not None:
            self._on_evict(entry.key, entry.value)  # type: ignore[arg-type]  # live: not None
