"""The plain data the policy reasons about: a request as the cache sees it and a stored
response. Both are frozen; every change produces a new value (``dataclasses.replace``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from httpcache.headers import Fields
from httpcache.vary import variant_key


@dataclass(frozen=True, slots=True)
class CacheRequest:
    """A client request reduced to what caching depends on."""

    method: str
    target: str  # path and query as keyed (signature parameters already removed)
    headers: Fields = field(default_factory=Fields)


@dataclass(frozen=True, slots=True)
class BodyFile:
    """Where a stored body lives when it is not in memory: a complete, committed file of the
    disk tier (``httpcache.disk_store``) of ``length`` bytes."""

    path: str
    length: int


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response in the cache, with the two timestamps the age calculation needs.

    ``request_time``/``response_time`` are RFC 9111 §4.2.3's "the current value of the local
    clock when the cache made the request" and "... received the response". ``vary`` holds the
    request's values of the fields named by ``Vary`` when it was stored (§4.1). ``invalidated``
    is set by a soft purge: the response must be validated before it is used again.
    ``file`` is set (and ``body`` empty) when the body is in the disk tier. ``slot`` is set
    for the parts of a sliced object (``httpcache.slices``): its representation record and
    its slices live next to the cache key's variants, under their own entry keys.
    """

    cache_key: str
    status: int
    headers: Fields
    body: bytes
    request_time: float
    response_time: float
    surrogate_keys: frozenset[str] = frozenset()
    vary: tuple[tuple[str, str | None], ...] = ()
    invalidated: bool = False
    file: BodyFile | None = None
    slot: str = ""
    # Caches of values derived from the fields above, filled on first use (never by callers:
    # a replaced response starts empty, so a cache can never describe another response).
    # ``memo_policy``: ``freshness.stored_view``; ``memo_wire``: the hit path's
    # pre-serialised heads (``httpcache.hit_path``).
    memo_policy: object = field(default=None, init=False, compare=False, repr=False)
    memo_wire: object = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # a name index is for fields looked up many times and soon dropped; a stored
        # response is looked at once per ``memo_*`` and kept long: the index would cost memory
        object.__setattr__(self, "headers", self.headers.unindexed())

    @property
    def body_length(self) -> int:
        return len(self.body) if self.file is None else self.file.length

    @property
    def path(self) -> str:
        return self.cache_key.split("?", 1)[0]

    @property
    def vary_names(self) -> tuple[str, ...]:
        return tuple(name for name, _value in self.vary)

    @property
    def entry_key(self) -> str:
        """The key of this variant in a store: the cache key, plus the secondary key when
        the response varies (RFC 9111 §4.1), so several variants of one URL coexist; or the
        ``slot`` of a sliced object's record or slice."""
        if self.slot:
            return f"{self.cache_key}\x00{self.slot}"
        secondary = variant_key(self.vary)
        return f"{self.cache_key}\x00{secondary}" if secondary else self.cache_key

    def remember(self, slot: str, value: object) -> None:
        """Fill one of the ``memo_*`` caches (the value is frozen otherwise)."""
        object.__setattr__(self, slot, value)

    def byte_size(self) -> int:
        """Approximate memory cost, used for the store's byte bound."""
        return len(self.body) + self.headers.byte_size() + len(self.cache_key) + 256
