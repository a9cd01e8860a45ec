"""Maps from 64-bit hashes to integers kept in flat arrays: no Python object per entry.

A ``dict[int, int]`` costs about 110 bytes an entry at a million entries (a 24-byte slot, the
sparse index, a key int object and a value int object). ``IntTable`` holds keys and values
itself (12 bytes a bucket: the S3-FIFO's ghost); ``SlotIndex`` holds only slot numbers and
reads each slot's hash from the caller's array (4 bytes a bucket, about 8 an entry: the
S3-FIFO's key index), which is what lets the memory tier keep its overhead small next to
1 KiB objects (``bench/cache_scaling.py``). Lookups run a few bytecodes a probe, so the hot
path keeps its own dict of recently read entries in front of them (``httpcache.store``).

Open addressing with linear probing; a deletion shifts the following entries of its run back
(Knuth's algorithm R), so there are no tombstones and lookups never slow down with churn. The
table doubles above 3/4 full. Keys are hashes: ``0`` marks an empty bucket, so a key of 0 is
stored as 1 (callers compare the real keys anyway: two keys may share a hash). Values are
non-negative; ``-1`` means absent.
"""

from __future__ import annotations

from array import array

MIN_BUCKETS = 8


def table_key(value: object) -> int:
    """The table key of a hashable value: its hash, with 0 moved to 1."""
    return hash(value) or 1


class IntTable:
    """``hash -> value`` for non-zero 64-bit ``hash`` and non-negative ``value`` below
    ``2 ** 63`` (``typecode`` ``"q"``) or ``2 ** 32`` (``"I"``, 4 bytes a bucket)."""

    __slots__ = ("_keys", "_values", "_mask", "_used", "_typecode")

    def __init__(self, typecode: str = "q") -> None:
        self._typecode = typecode
        self._used = 0
        self._allocate(MIN_BUCKETS)

    def _allocate(self, buckets: int) -> None:
        self._keys = array("q", bytes(8 * buckets))
        self._values = array(self._typecode, bytes(array(self._typecode).itemsize * buckets))
        self._mask = buckets - 1

    def __len__(self) -> int:
        return self._used

    @property
    def buckets(self) -> int:
        return self._mask + 1

    def get(self, key: int) -> int:
        """The value under ``key``, or -1."""
        keys, mask = self._keys, self._mask
        i = key & mask
        while True:
            found = keys[i]
            if found == key:
                return self._values[i]
            if not found:
                return -1
            i = (i + 1) & mask

    def set(self, key: int, value: int) -> None:
        keys, mask = self._keys, self._mask
        i = key & mask
        while True:
            found = keys[i]
            if found == key:
                self._values[i] = value
                return
            if not found:
                break
            i = (i + 1) & mask
        keys[i] = key
        self._values[i] = value
        self._used += 1
        if self._used * 4 > (mask + 1) * 3:
            self._grow()

    def pop(self, key: int) -> int:
        """Remove ``key``; its value, or -1 when absent."""
        keys, values, mask = self._keys, self._values, self._mask
        i = key & mask
        while True:
            found = keys[i]
            if found == key:
                break
            if not found:
                return -1
            i = (i + 1) & mask
        value = values[i]
        # Close the gap: move back each later entry of the run whose home bucket is not
        # (cyclically) between the gap and where the entry sits.
        j = i
        while True:
            j = (j + 1) & mask
            moved = keys[j]
            if not moved:
                break
            home = moved & mask
            if (home <= i < j) or (i < j < home) or (j < home <= i):
                keys[i] = moved
                values[i] = values[j]
                i = j
        keys[i] = 0
        self._used -= 1
        return value

    def items(self) -> list[tuple[int, int]]:
        return [(k, v) for k, v in zip(self._keys, self._values, strict=True) if k]

    def _grow(self) -> None:
        old_keys, old_values = self._keys, self._values
        self._allocate((self._mask + 1) * 2)
        keys, values, mask = self._keys, self._values, self._mask
        for at, key in enumerate(old_keys):  # no list of pairs: that would be a spike of objects
            if key:
                i = key & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = key
                values[i] = old_values[at]


class SlotIndex:
    """``hash -> slot`` where the hash of each slot is kept by the caller, in ``hashes``: the
    buckets hold only ``slot + 1`` (0: empty), 4 bytes each, about 8 bytes an entry at the
    usual load. Same probing and deletion as ``IntTable``; the home bucket of an entry is
    found through ``hashes``."""

    __slots__ = ("_hashes", "_buckets", "_mask", "_used")

    def __init__(self, hashes: array) -> None:  # type: ignore[type-arg]
        self._hashes = hashes
        self._used = 0
        self._buckets = array("I", bytes(4 * MIN_BUCKETS))
        self._mask = MIN_BUCKETS - 1

    def __len__(self) -> int:
        return self._used

    def get(self, key: int) -> int:
        """The slot whose hash is ``key``, or -1."""
        buckets, hashes, mask = self._buckets, self._hashes, self._mask
        i = key & mask
        while True:
            slot = buckets[i] - 1
            if slot < 0 or hashes[slot] == key:
                return slot
            i = (i + 1) & mask

    def add(self, slot: int) -> None:
        """Index ``slot`` under ``hashes[slot]``, which no other indexed slot has."""
        buckets, mask = self._buckets, self._mask
        i = self._hashes[slot] & mask
        while buckets[i]:
            i = (i + 1) & mask
        buckets[i] = slot + 1
        self._used += 1
        if self._used * 4 > (mask + 1) * 3:
            self._grow()

    def remove(self, slot: int) -> None:
        """Take the indexed ``slot`` out (its hash still in ``hashes``)."""
        buckets, hashes, mask = self._buckets, self._hashes, self._mask
        i = hashes[slot] & mask
        while buckets[i] != slot + 1:
            i = (i + 1) & mask
        j = i
        while True:  # close the gap as IntTable.pop does
            j = (j + 1) & mask
            moved = buckets[j]
            if not moved:
                break
            home = hashes[moved - 1] & mask
            if (home <= i < j) or (i < j < home) or (j < home <= i):
                buckets[i] = moved
                i = j
        buckets[i] = 0
        self._used -= 1

    def _grow(self) -> None:
        old = self._buckets
        self._buckets = array("I", bytes(4 * 2 * len(old)))
        self._mask = 2 * len(old) - 1
        buckets, hashes, mask = self._buckets, self._hashes, self._mask
        for entry in old:
            if entry:
                i = hashes[entry - 1] & mask
                while buckets[i]:
                    i = (i + 1) & mask
                buckets[i] = entry
