"""A stored response as one ``bytes`` record: how the memory tier keeps small objects.

A ``StoredResponse`` of a 1 KiB body costs about 360 bytes besides its body and field lines
(the object, two float objects, the tag tuple, and a separate header for the body and for the
packed fields). A million of them would add a third to the bytes cached. Packed as a record,
the same response costs its ``bytes`` header and a 25-byte head (``bench/cache_scaling.py``):

    8  request_time (double)   8  response_time (double)   2  status   1  flags (1: invalidated)
    2  key length K            2  fields length F          2  keys length T
    K  cache key               F  packed fields (``messages.pack_fields``)
    T  surrogate keys, NUL-separated                        …  body

Strings are Latin-1, which is what field values parsed off the wire are; a response whose
key, fields or tags do not fit Latin-1 or 64 KiB, that varies, that is a slice, whose body is
on disk or larger than ``PACK_LIMIT`` stays an object (``pack`` returns ``None``): above
32 KiB the object's overhead is under 1%, and unpacking would copy the body on every read
that the store's read memo does not absorb.
"""

from __future__ import annotations

import struct
import sys

from httpcache.messages import StoredResponse, from_packed, packed_state

PACK_LIMIT = 32 * 1024  # largest body kept as a record
_HEAD = struct.Struct("<ddHBHHH")
_KEY_LENGTH = struct.Struct("<H")
_KEY_LENGTH_AT = 19  # after the two doubles, status and flags
_LENGTHS = struct.Struct("<HHH")
_INVALIDATED = 1
_SEP = "\x00"


def pack(stored: StoredResponse) -> bytes | None:
    """``stored`` as a record, or ``None`` when it must stay an object (see above)."""
    if (stored.file is not None or stored.vary or stored.slot
            or len(stored.body) > PACK_LIMIT):
        return None
    fields, keys = packed_state(stored)
    if not isinstance(fields, str):
        return None
    try:
        key = stored.cache_key.encode("latin-1")
        packed = fields.encode("latin-1")
        tags = _SEP.join(keys).encode("latin-1")
    except UnicodeEncodeError:
        return None
    if max(len(key), len(packed), len(tags)) > 0xFFFF:
        return None
    head = _HEAD.pack(stored.request_time, stored.response_time, stored.status,
                      _INVALIDATED if stored.invalidated else 0, len(key), len(packed), len(tags))
    return b"".join((head, key, packed, tags, stored.body))


def unpack(record: bytes) -> StoredResponse:
    """The stored response of ``record`` (a new object; the body is copied out)."""
    request_time, response_time, status, flags, k, f, t = _HEAD.unpack_from(record)
    at = _HEAD.size
    key = record[at:at + k].decode("latin-1")
    at += k
    fields = record[at:at + f].decode("latin-1")
    at += f
    tags = record[at:at + t].decode("latin-1")
    keys = tuple(map(sys.intern, tags.split(_SEP))) if tags else ()
    return from_packed(key, status, fields, record[at + t:], request_time, response_time,
                       keys, bool(flags & _INVALIDATED))


def key_of(record: bytes) -> str:
    """The cache key of ``record`` (also its entry key: records never vary)."""
    (length,) = _KEY_LENGTH.unpack_from(record, _KEY_LENGTH_AT)
    start = _HEAD.size
    return record[start:start + length].decode("latin-1")


def tags_of(record: bytes) -> list[str]:
    """The surrogate keys of ``record``."""
    k, f, t = _LENGTHS.unpack_from(record, _KEY_LENGTH_AT)
    if not t:
        return []
    start = _HEAD.size + k + f
    return record[start:start + t].decode("latin-1").split(_SEP)


def invalidated(record: bytes) -> bytes:
    """``record`` marked invalidated (a soft purge)."""
    flags = record[_KEY_LENGTH_AT - 1] | _INVALIDATED
    return record[:_KEY_LENGTH_AT - 1] + bytes((flags,)) + record[_KEY_LENGTH_AT:]
