"""The wire format of the storage node's batch endpoints (pure: bytes in, values out).

A 4 KiB object is nine fragments of under 1 KiB; sending each in its own HTTP request makes the
request, not the bytes, the cost of a small PUT or GET. The origin therefore coalesces the
fragments headed to one node into one request (``origin.nodeclient``), framed as below. All
integers are big-endian; every frame is self-delimiting so a truncated body is detected.

``POST /fragments/batch`` (store), request: per fragment ::

    2  fragment id length N      4  payload length L      4  CRC-32 of the payload (origin's)
    N  fragment id               L  payload

answer: per fragment, in request order, a fixed 17-byte entry ::

    1  status (``STATUS``)   4  volume   8  offset (record start)   4  payload length

``POST /fragments/read`` (fetch), request: per fragment ::

    4  volume   8  offset   4  payload length   2  expected fragment id length N   N  id

answer: per fragment, in request order ::

    1  status   4  body length B   B  payload (status ok) or UTF-8 error message

The status codes mirror the single-fragment endpoints' ``X-Fragment-Error`` kinds.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

# Status byte <-> the kind names of the single-fragment endpoints.
STATUS: dict[str, int] = {
    "ok": 0, "not-found": 1, "checksum-mismatch": 2, "corrupt-record": 3,
    "fragment-id-mismatch": 4, "io-error": 5,
}
KIND: dict[int, str] = {code: kind for kind, code in STATUS.items()}

_STORE_HEAD = struct.Struct(">HII")
_STORED = struct.Struct(">BIQI")
_FETCH_HEAD = struct.Struct(">IQIH")
_FETCHED_HEAD = struct.Struct(">BI")
# The items below are named tuples (cheap to make: a small PUT or GET makes dozens).


class BatchFormatError(ValueError):
    """A batch body or answer does not parse (truncated, lengths out of range)."""


class StoreItem(NamedTuple):
    fragment_id: bytes
    payload: bytes | memoryview
    crc32: int


class StoredItem(NamedTuple):
    """A store answer entry; ``volume/offset/length`` are meaningful only when ``ok``."""

    status: int
    volume: int
    offset: int
    length: int

    @property
    def ok(self) -> bool:
        return self.status == STATUS["ok"]


class FetchItem(NamedTuple):
    volume: int
    offset: int
    length: int
    fragment_id: bytes


class FetchedItem(NamedTuple):
    status: int
    body: bytes  # the payload when ok, else the node's error message

    @property
    def ok(self) -> bool:
        return self.status == STATUS["ok"]


def encode_store(items: Iterable[StoreItem]) -> list[bytes | memoryview]:
    """Buffers to send one after another (payloads are not copied into one big buffer)."""
    out: list[bytes | memoryview] = []
    for item in items:
        out.append(_STORE_HEAD.pack(len(item.fragment_id), len(item.payload), item.crc32)
                   + item.fragment_id)
        out.append(item.payload)
    return out


def decode_store(body: bytes | memoryview, max_id: int, max_payload: int) -> list[StoreItem]:
    """The fragments of a store request; ``BatchFormatError`` if it does not parse or an id or
    payload is out of ``1..max_id`` / ``0..max_payload`` bytes."""
    view = memoryview(body)
    items: list[StoreItem] = []
    pos = 0
    while pos < len(view):
        if pos + _STORE_HEAD.size > len(view):
            raise BatchFormatError(f"truncated frame header at byte {pos}")
        id_len, length, crc = _STORE_HEAD.unpack_from(view, pos)
        pos += _STORE_HEAD.size
        if not 0 < id_len <= max_id:
            raise BatchFormatError(f"fragment id of {id_len} bytes (1..{max_id} allowed)")
        if length > max_payload:
            raise BatchFormatError(f"fragment of {length} bytes (at most {max_payload})")
        end = pos + id_len + length
        if end > len(view):
            raise BatchFormatError(f"frame at byte {pos} runs past the end of the body")
        items.append(StoreItem(bytes(view[pos:pos + id_len]), view[pos + id_len:end], crc))
        pos = end
    return items


def encode_stored(entries: Iterable[StoredItem]) -> bytes:
    return b"".join(_STORED.pack(e.status, e.volume, e.offset, e.length) for e in entries)


def decode_stored(body: bytes, count: int) -> list[StoredItem]:
    return [StoredItem(*entry) for entry in decode_stored_tuples(body, count)]


def decode_stored_tuples(body: bytes, count: int) -> list[tuple[int, int, int, int]]:
    """``decode_stored`` as plain ``(status, volume, offset, length)`` tuples (the origin's
    hot path: no named tuple per entry)."""
    if len(body) != count * _STORED.size:
        raise BatchFormatError(f"store answer of {len(body)} bytes for {count} fragments")
    return list(_STORED.iter_unpack(body))


def fetch_frame(volume: int, offset: int, length: int, fragment_id: bytes) -> bytes:
    """One fragment's frame of a fetch request body (the body is the frames, concatenated)."""
    return _FETCH_HEAD.pack(volume, offset, length, len(fragment_id)) + fragment_id


def encode_fetch(items: Iterable[FetchItem]) -> bytes:
    return b"".join(fetch_frame(i.volume, i.offset, i.length, i.fragment_id) for i in items)


def decode_fetch(body: bytes, max_id: int) -> list[FetchItem]:
    view = memoryview(body)
    items: list[FetchItem] = []
    pos = 0
    while pos < len(view):
        if pos + _FETCH_HEAD.size > len(view):
            raise BatchFormatError(f"truncated frame header at byte {pos}")
        volume, offset, length, id_len = _FETCH_HEAD.unpack_from(view, pos)
        pos += _FETCH_HEAD.size
        if id_len > max_id or pos + id_len > len(view):
            raise BatchFormatError(f"fragment id of {id_len} bytes at byte {pos}")
        items.append(FetchItem(volume, offset, length, bytes(view[pos:pos + id_len])))
        pos += id_len
    return items


def encode_fetched(entries: Iterable[FetchedItem]) -> list[bytes]:
    out: list[bytes] = []
    for entry in entries:
        out.append(_FETCHED_HEAD.pack(entry.status, len(entry.body)))
        out.append(entry.body)
    return out


def decode_fetched(body: bytes, count: int) -> list[FetchedItem]:
    return [FetchedItem(*entry) for entry in decode_fetched_tuples(body, count)]


def decode_fetched_tuples(body: bytes, count: int) -> list[tuple[int, bytes]]:
    """``decode_fetched`` as plain ``(status, body)`` tuples (the origin's hot path)."""
    view = memoryview(body)
    entries: list[tuple[int, bytes]] = []
    pos = 0
    for _ in range(count):
        if pos + _FETCHED_HEAD.size > len(view):
            raise BatchFormatError(f"fetch answer ends after {len(entries)} of {count} entries")
        status, length = _FETCHED_HEAD.unpack_from(view, pos)
        pos += _FETCHED_HEAD.size
        if pos + length > len(view):
            raise BatchFormatError(f"fetch answer entry {len(entries)} runs past the end")
        entries.append((status, bytes(view[pos:pos + length])))
        pos += length
    if pos != len(view):
        raise BatchFormatError(f"{len(view) - pos} bytes after the last fetch answer entry")
    return entries
