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

Nothing is a Python object per entry but the value: an entry is a *slot*, an index into flat
arrays (value, table key, size, and one byte of state: live, in main, frequency), found by
its key's hash in an ``httpcache.int_table.SlotIndex``; the queues are arrays of slot numbers.
That is about 55 bytes an entry where an entry object, a dict slot and a deque slot cost
about 170, which matters for a million 1 KiB objects. The key itself is kept only when no
``keyof`` is given: a store whose values carry their keys (``httpcache.store``) passes
``keyof`` and the key string is not held at all. A ``pop`` from the middle of a queue is
lazy: the slot is marked dead, its value released, and it is skipped (and freed for reuse)
when it reaches the head, or when dead slots outnumber the live ones. The ghost keeps the
keys' hashes, not the keys, so an evicted key's string is not held on to; two keys with one
hash only share a second chance.

The interface is the part of ``cachetools.Cache`` the memory tier uses: ``get`` (counts as a
read), ``peek`` (does not), item assignment (may evict, reporting each eviction to
``on_evict``), ``pop``, ``replace`` (same key, no change of position or frequency),
``currsize``/``maxsize`` in bytes.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from httpcache.int_table import IntTable, SlotIndex, table_key

K = TypeVar("K")
V = TypeVar("V")

SMALL_SHARE = 0.10  # the paper's 10% of the cache for the small queue
MAX_FREQ = 3
# a slot's state byte
FREQ = 0b0011
MAIN = 0b0100
LIVE = 0b1000
COMPACT_AT = 4096  # consumed queue positions dropped from an array's front once this many


class _Queue:
    """A FIFO of slot numbers: an array consumed from ``head``, its front cut off now and
    then (amortised O(1), 4 bytes a slot)."""

    __slots__ = ("slots", "head")

    def __init__(self, slots: Iterator[int] | None = None) -> None:
        self.slots = array("I", slots or ())
        self.head = 0

    def __len__(self) -> int:
        return len(self.slots) - self.head

    def __iter__(self) -> Iterator[int]:
        return iter(self.slots[self.head:])

    def append(self, slot: int) -> None:
        self.slots.append(slot)

    def popleft(self) -> int:
        slot = self.slots[self.head]
        self.head += 1
        if self.head >= COMPACT_AT and self.head * 2 >= len(self.slots):
            del self.slots[:self.head]
            self.head = 0
        return slot


class _Ghost:
    """Hashes of keys evicted unread, oldest first, each once: a FIFO of hashes and a table
    from hash to its position (removing one from the middle leaves a stale position behind,
    recognised because the table no longer points at it)."""

    __slots__ = ("_ring", "_head", "_where", "_base")

    def __init__(self) -> None:
        self._ring = array("q")
        self._head = 0  # _ring[:_head] are consumed
        self._where = IntTable("q")  # hash -> absolute position in the FIFO
        self._base = 0  # absolute position of _ring[0]

    def __len__(self) -> int:
        return len(self._where)

    def add(self, fingerprint: int) -> None:
        if self._where.get(fingerprint) < 0:  # already there: keeps its place
            self._where.set(fingerprint, self._base + len(self._ring))
            self._ring.append(fingerprint)
            if len(self._ring) - self._head > 2 * len(self._where) + COMPACT_AT:
                self._drop_taken()

    def _drop_taken(self) -> None:
        """Rebuild the FIFO without the positions ``take`` left behind (they pile up when
        keys come back before the ghost is full): linear, once per as many adds."""
        ring, where = self._ring, self._where
        kept = array("q", (fingerprint for at, fingerprint in enumerate(ring[self._head:],
                                                                        self._base + self._head)
                           if where.get(fingerprint) == at))
        self._base += len(ring)  # new positions, past every old one
        for at, fingerprint in enumerate(kept, self._base):
            where.set(fingerprint, at)
        self._ring, self._head = kept, 0

    def take(self, fingerprint: int) -> bool:
        return self._where.pop(fingerprint) >= 0

    def trim(self, limit: int) -> None:
        ring, where, at = self._ring, self._where, self._head
        while len(where) > limit:
            fingerprint = ring[at]
            if where.get(fingerprint) == self._base + at:
                where.pop(fingerprint)
            at += 1
        self._head = at
        if at >= COMPACT_AT and at * 2 >= len(ring):  # amortised: as _Queue.popleft
            del ring[:at]
            self._base += at
            self._head = 0


class S3FIFO(Generic[K, V]):
    """A byte-bounded S3-FIFO map. ``getsizeof(value)`` gives each value's cost for item
    assignment (``None``: the caller gives each size to ``put``);
    ``keyof(value)``, when given, its key (then keys are not stored)."""

    def __init__(self, maxsize: int, getsizeof: Callable[[V], int] | None,
                 on_evict: Callable[[K, V], None] | None = None,
                 small_share: float = SMALL_SHARE, promote_at: int = 1,
                 keyof: Callable[[V], K] | None = None) -> None:
        if maxsize <= 0:
            raise ValueError(f"S3FIFO maxsize must be positive, got {maxsize}")
        if not 0 < small_share < 1:
            raise ValueError(f"S3FIFO small_share must be in (0, 1), got {small_share}")
        self.maxsize = maxsize
        self._promote_at = promote_at
        self._sizeof = getsizeof
        self._on_evict = on_evict
        self._keyof = keyof
        self._small_target = max(1, int(maxsize * small_share))
        self._values: list[V | None] = []
        self._keys: list[K | None] = []  # only without keyof
        self._hashes = array("q")  # table_key of each slot's key
        self._table = SlotIndex(self._hashes)
        self._sizes = array("Q")
        self._state = bytearray()
        self._free = array("I")  # slots neither live nor queued
        self._small = _Queue()
        self._main = _Queue()
        self._ghost = _Ghost()
        self._live = 0
        self._dead = 0  # popped slots still queued
        self._small_bytes = 0
        self._main_bytes = 0

    # -- slots -----------------------------------------------------------------------------

    def _key_at(self, slot: int) -> K:
        if self._keyof is None:
            return self._keys[slot]  # type: ignore[return-value]  # a live slot's
        return self._keyof(self._values[slot])  # type: ignore[arg-type]

    def slot(self, key: K) -> int:
        """The slot of ``key``, or -1. A slot stays ``key``'s until ``key`` leaves."""
        slot = self._table.get(table_key(key))
        if slot < 0 or self._key_at(slot) != key:
            return -1
        return slot

    def touch(self, slot: int) -> None:
        """Count a read of the live entry in ``slot`` (what ``get`` does after finding it)."""
        state = self._state[slot]
        if state & FREQ < MAX_FREQ:
            self._state[slot] = state + 1

    def _new_slot(self) -> int:
        if self._free:
            return self._free.pop()
        self._values.append(None)
        if self._keyof is None:
            self._keys.append(None)
        self._hashes.append(0)
        self._sizes.append(0)
        self._state.append(0)
        return len(self._state) - 1

    def _release(self, slot: int) -> None:
        self._values[slot] = None
        if self._keyof is None:
            self._keys[slot] = None

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: K, default: V | None = None) -> V | None:
        slot = self.slot(key)
        if slot < 0:
            return default
        self.touch(slot)
        return self._values[slot]

    def peek(self, key: K) -> V | None:
        slot = self.slot(key)
        return None if slot < 0 else self._values[slot]

    def value_at(self, slot: int) -> V | None:
        return self._values[slot]

    def peek_hash(self, fingerprint: int) -> V | None:
        """The value whose key has ``table_key`` ``fingerprint`` (the caller checks the key)."""
        slot = self._table.get(fingerprint)
        return None if slot < 0 else self._values[slot]

    def __contains__(self, key: object) -> bool:
        return self.slot(key) >= 0  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._live

    def keys(self) -> Iterator[K]:
        return iter([self._key_at(slot) for slot, state in enumerate(self._state)
                     if state & LIVE])

    @property
    def currsize(self) -> int:
        return self._small_bytes + self._main_bytes

    # -- writing ---------------------------------------------------------------------------

    def __setitem__(self, key: K, value: V) -> None:
        """Insert (or replace in place, keeping queue and frequency), then evict to fit.
        A value larger than ``maxsize`` raises ``ValueError`` like cachetools does."""
        if self._sizeof is None:
            raise TypeError("this S3FIFO has no getsizeof: give sizes to put()")
        self.put(key, value, self._sizeof(value))

    def put(self, key: K, value: V, size: int) -> None:
        """``self[key] = value`` with ``value``'s size given."""
        if size > self.maxsize:
            raise ValueError(f"value of {size} bytes is larger than the cache ({self.maxsize})")
        fingerprint = table_key(key)
        slot = self._table.get(fingerprint)
        if slot >= 0 and self._key_at(slot) != key:
            self._drop(slot, dequeued=False)  # another key with the same hash makes way
            slot = -1
        if slot >= 0:
            self._account(slot, size - self._sizes[slot])
            self._values[slot] = value
            self._sizes[slot] = size
        else:
            slot = self._new_slot()
            self._values[slot] = value
            if self._keyof is None:
                self._keys[slot] = key
            self._hashes[slot] = fingerprint
            self._sizes[slot] = size
            self._table.add(slot)
            self._live += 1
            if self._ghost.take(fingerprint):  # seen recently: straight to main
                self._state[slot] = LIVE | MAIN
                self._main.append(slot)
            else:
                self._state[slot] = LIVE
                self._small.append(slot)
            self._account(slot, size)
        self._evict_to_fit()

    def replace(self, key: K, value: V) -> None:
        """Swap the value of an existing key of the same size (no eviction, no read)."""
        slot = self.slot(key)
        if slot < 0:
            raise KeyError(key)
        self._values[slot] = value

    def pop(self, key: K, default: V | None = None) -> V | None:
        slot = self.slot(key)
        if slot < 0:
            return default
        value = self._values[slot]
        self._unlink(slot)
        self._dead += 1  # still queued: skipped when it reaches its queue's head
        if self._dead > self._live + 64:
            self._drop_dead()
        return value

    # -- eviction --------------------------------------------------------------------------

    def _account(self, slot: int, delta: int) -> None:
        if self._state[slot] & MAIN:
            self._main_bytes += delta
        else:
            self._small_bytes += delta

    def _unlink(self, slot: int) -> None:
        """Take a live slot out of the table and the byte count (it stays queued, dead)."""
        self._table.remove(slot)
        self._account(slot, -self._sizes[slot])
        self._state[slot] = 0
        self._release(slot)
        self._live -= 1

    def _drop_dead(self) -> None:
        """Rebuild the queues without popped slots: linear, once per as many pops as there
        are live entries, so constant time per pop."""
        state = self._state
        for queue in (self._small, self._main):
            for slot in queue:
                if not state[slot] & LIVE:
                    self._free.append(slot)
            queue.slots = array("I", (slot for slot in queue if state[slot] & LIVE))
            queue.head = 0
        self._dead = 0

    def _evict_to_fit(self) -> None:
        while self.currsize > self.maxsize:
            if self._small_bytes > self._small_target or not self._main:
                self._evict_small()
            else:
                self._evict_main()

    def _evict_small(self) -> None:
        slot = self._small.popleft()
        state = self._state[slot]
        if not state & LIVE:
            self._dead -= 1
            self._free.append(slot)
            return
        if state & FREQ >= self._promote_at:  # read again while on probation: keep it
            size = self._sizes[slot]
            self._small_bytes -= size
            self._state[slot] = LIVE | MAIN
            self._main.append(slot)
            self._main_bytes += size
            return
        self._ghost.add(self._hashes[slot])
        self._ghost.trim(max(self._live, 1))
        self._drop(slot, dequeued=True)

    def _evict_main(self) -> None:
        slot = self._main.popleft()
        state = self._state[slot]
        if not state & LIVE:
            self._dead -= 1
            self._free.append(slot)
            return
        if state & FREQ:
            self._state[slot] = state - 1
            self._main.append(slot)  # reinserted at the tail
            return
        self._drop(slot, dequeued=True)

    def _drop(self, slot: int, *, dequeued: bool) -> None:
        """Evict the live entry in ``slot``, just taken from its queue's head or not."""
        key, value = self._key_at(slot), self._values[slot]
        self._unlink(slot)
        if dequeued:
            self._free.append(slot)
        else:
            self._dead += 1
        if self._on_evict is not None:
            self._on_evict(key, value)  # type: ignore[arg-type]  # live: not None
