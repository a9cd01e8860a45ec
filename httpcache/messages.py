"""The plain data the policy reasons about: a request as the cache sees it and a stored
response. Both are frozen; every change produces a new value (``dataclasses.replace``).

A stored response keeps its header fields and surrogate keys packed, since a cache holds
millions of them: the fields as one string (``pack_fields``), the keys as a sorted tuple of
interned strings. A ``Fields`` of eight (name, value) tuples of new strings is about 1.4 KB
of small objects and a frozenset of two tags 216 bytes, against one string about as long
as the field lines and a 56-byte tuple; neither packed form is tracked by the cyclic GC.
Reading ``headers`` or ``surrogate_keys`` unpacks them (about a microsecond for eight
fields); the hit path reads them once per stored response (``memo_wire``, ``memo_policy``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from httpcache.headers import Fields
from httpcache.records import rebuild_init, record
from httpcache.vary import variant_key

# A stored body: ``bytes``, or the ``bytearray`` a body of declared length was read into by
# the upstream client (``lean_client``), kept as it is rather than copied; nothing writes to
# it once the response is complete. (A ``StoredResponse`` holding one is unhashable: nothing
# hashes stored responses; they are kept by key.)
Body = bytes | bytearray
# A piece of a body on its way: a view of such a buffer, or bytes.
Chunk = bytes | bytearray | memoryview


@record
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


@record
class StoredResponse:
    """A response in the cache, with the two timestamps the age calculation needs.

    ``request_time``/``response_time`` are RFC 9111 §4.2.3's "the current value of the local
    clock when the cache made the request" and "... received the response". ``vary`` holds the
    request's values of the fields named by ``Vary`` when it was stored (§4.1). ``invalidated``
    is set by a soft purge: the response must be validated before it is used again.
    ``file`` is set (and ``body`` empty) when the body is in the disk tier. ``slot`` is set
    for the parts of a sliced object (``httpcache.slices``): its representation record and
    its slices live next to the cache key's variants, under their own entry keys.

    ``headers`` and ``surrogate_keys`` are read and written as ``Fields`` and frozenset and
    kept packed (see the module docstring): each read makes a new value.
    """

    cache_key: str
    status: int
    headers: Fields
    body: Body
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
        return len(self.body) + fields_wire_size(_headers_slot.__get__(self)) + len(
            self.cache_key) + 256


# Packed fields: names and values alternate, joined by NUL, which RFC 9110 §5.5 forbids in
# both ("Field values containing CR, LF, or NUL characters are invalid and dangerous"), so one
# split recovers them. Fields that contain one anyway (made in code, never parsed) are kept
# as they are.
_SEP = "\x00"


def pack_fields(fields: Fields) -> str | Fields:
    """``fields`` as one string (or, if a name or value holds NUL, as an unindexed ``Fields``)."""
    flat = [part for item in fields for part in item]
    packed = _SEP.join(flat)
    if packed.count(_SEP) != max(0, len(flat) - 1):
        return fields.unindexed()
    return packed


def unpack_fields(packed: str | Fields) -> Fields:
    if not isinstance(packed, str):
        return packed
    if not packed:
        return Fields()
    parts = iter(packed.split(_SEP))
    return Fields.of_str_pairs(tuple(zip(parts, parts, strict=True)))


def fields_wire_size(packed: str | Fields) -> int:
    """``unpack_fields(packed).byte_size()``: the field lines' bytes (``name: value`` and
    CRLF) without unpacking them."""
    if not isinstance(packed, str):
        return packed.byte_size()
    # a field takes 4 bytes besides its name and value on the wire (": ", CRLF) and 2 NULs
    # packed, less one for the last: 2 NULs a field, so count + 1 is twice the fields
    return len(packed) + packed.count(_SEP) + 2 if packed else 0


def _pack_keys(keys: frozenset[str]) -> tuple[str, ...]:
    # interned: a tag is usually shared by many responses, each of which would otherwise
    # hold its own copy of the string (interned strings are freed with their last user)
    return tuple(sorted(map(sys.intern, keys))) if keys else ()


def _packed_slot(cls: type, name: str, pack: Callable[[Any], Any],
                 unpack: Callable[[Any], Any], doc: str) -> Any:
    """Put a property in front of the dataclass slot ``name`` that packs what is written
    (by the generated ``__init__``, ``dataclasses.replace``, unpickling: all write through
    ``object.__setattr__``) and unpacks what is read, so the dataclass keeps its signature,
    equality, hash and ``replace`` while the slot holds the small form. Returns the slot."""
    slot = cls.__dict__[name]
    setattr(cls, name, property(lambda self: unpack(slot.__get__(self, cls)),
                                lambda self, value: slot.__set__(self, pack(value)), doc=doc))
    return slot


_headers_slot = _packed_slot(
    StoredResponse, "headers", pack_fields, unpack_fields,
    "The stored fields (a new unindexed ``Fields`` on every read: keep it if read often).")
_keys_slot = _packed_slot(
    StoredResponse, "surrogate_keys", _pack_keys, frozenset,
    "The surrogate keys (a new frozenset on every read).")
rebuild_init(StoredResponse)  # its __init__ writes through the packing properties


def packed_state(stored: StoredResponse) -> tuple[str | Fields, tuple[str, ...]]:
    """The packed fields and keys as held in ``stored``'s slots (``httpcache.stored_record``)."""
    return _headers_slot.__get__(stored), _keys_slot.__get__(stored)


def from_packed(cache_key: str, status: int, fields: str, body: bytes, request_time: float,
                response_time: float, keys: tuple[str, ...], invalidated: bool) -> StoredResponse:
    """A plain (no Vary, no file, no slot) stored response from packed parts, without the
    unpack and repack that the constructor's ``Fields`` would cost."""
    stored = object.__new__(StoredResponse)
    init = object.__setattr__
    init(stored, "cache_key", cache_key)
    init(stored, "status", status)
    _headers_slot.__set__(stored, fields)
    init(stored, "body", body)
    init(stored, "request_time", request_time)
    init(stored, "response_time", response_time)
    _keys_slot.__set__(stored, keys)
    init(stored, "vary", ())
    init(stored, "invalidated", invalidated)
    init(stored, "file", None)
    init(stored, "slot", "")
    init(stored, "memo_policy", None)
    init(stored, "memo_wire", None)
    return stored
