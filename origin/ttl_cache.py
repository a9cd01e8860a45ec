"""A small time-bounded memo (pure: the caller passes ``now``).

The origin looks up the signing credential and the bucket on every S3 request; both change
rarely, and a PostgreSQL round trip each costs more than the rest of a small GET's metadata
work. Entries live ``ttl`` seconds, so a change made through another origin process (a
rotated secret, versioning switched on) is seen within ``ttl``; the process that makes a
change drops its own entry at once (``discard``). Only found values are stored: a miss is
asked again next time, so a freshly created key or bucket works immediately.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """At most ``max_entries`` values, each for ``ttl`` seconds; least recently stored go
    first when full."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        if ttl < 0 or max_entries < 1:
            raise ValueError(f"ttl ({ttl}) must be >= 0 and max_entries ({max_entries}) >= 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        """The value stored for ``key`` if it is younger than ``ttl``, else ``None``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if now >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V, now: float) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (now + self.ttl, value)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
