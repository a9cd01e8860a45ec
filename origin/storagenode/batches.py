"""What the node answers to its two batch endpoints, whichever server parsed the request.

``POST /fragments/batch`` and ``POST /fragments/read`` are served both by the aiohttp
application (``storagenode.server``) and by the node's protocol-level front
(``storagenode.front``), which answers them without aiohttp's request and response objects.
Both call these functions with the request body and send back the ``Answer``, so the two
paths cannot differ in what they store, verify or say.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import NamedTuple

from origin import batch_wire
from origin.storagenode import record
from origin.storagenode.committer import GroupCommitter
from origin.storagenode.metrics import NodeMetrics
from origin.storagenode.volume import Address, RecordNotFound, VolumeError, VolumeSet

# Fragments up to this size are read on the event loop when they are in the page cache.
INLINE_READ_LIMIT = 64 << 10

OCTETS = "application/octet-stream"


class Answer(NamedTuple):
    """One HTTP answer: status, body and its type; ``error_kind`` goes into
    ``X-Fragment-Error`` (error answers only). A named tuple: one is made per request."""

    status: int
    body: bytes
    content_type: str = OCTETS
    error_kind: str | None = None


def error_answer(status: int, kind: str, message: str) -> Answer:
    """The node's error document: JSON ``{"error", "message"}`` and ``X-Fragment-Error``."""
    body = json.dumps({"error": kind, "message": message}).encode()
    return Answer(status, body, "application/json", kind)


async def store_batch(committer: GroupCommitter, metrics: NodeMetrics, body: bytes,
                      limit: int) -> Answer:
    """Store the fragments of a batch body; one status entry each, once all are durable."""
    got = start_store_batch(committer, metrics, body, limit)
    return got if isinstance(got, Answer) else await got


def start_store_batch(committer: GroupCommitter, metrics: NodeMetrics, body: bytes,
                      limit: int) -> Answer | asyncio.Future[Answer]:
    """``store_batch`` without a coroutine: the answer at once when nothing is to be stored
    (a malformed body, every payload damaged), else its future, resolved by a callback once
    the group commit made the fragments durable (the node front needs no task per store)."""
    try:
        items = batch_wire.decode_store(body, record.MAX_FRAGMENT_ID, limit)
    except batch_wire.BatchFormatError as exc:
        return error_answer(400, "bad-request", str(exc))
    metrics.batch_store_requests.inc()
    metrics.batch_store_fragments.inc(len(items))
    # A payload damaged between origin and node is refused here, not stored and found later;
    # an intact one's CRC goes on into its record header (not computed a second time).
    intact = [i for i, item in enumerate(items) if zlib.crc32(item.payload) == item.crc32]
    if not intact:
        return _stored_answer(len(items), intact, [])
    # StoreItem is an (id, payload, crc) record as it is
    stored = committer.submit(list(items) if len(intact) == len(items)
                              else [items[i] for i in intact])
    answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

    def durable(done: asyncio.Future[list[Address]]) -> None:
        if answer.done():
            return
        if done.cancelled():
            answer.cancel()
            return
        exc = done.exception()
        if exc is not None and not isinstance(exc, VolumeError):
            answer.set_exception(exc)
            return
        # a failed commit pass (VolumeError) stored none of them
        answer.set_result(_stored_answer(len(items), intact,
                                         None if exc is not None else done.result()))

    stored.add_done_callback(durable)
    return answer


def _stored_answer(count: int, intact: list[int], stored: list[Address] | None) -> Answer:
    """One status entry per fragment of the batch: ``intact`` were given to the committer
    and stored at ``stored`` (``None``: the pass failed), the others failed their CRC."""
    if stored is not None and len(intact) == count:  # the usual case
        return Answer(200, batch_wire.encode_stored(
            [batch_wire.StoredItem(0, a.volume, a.offset, a.length) for a in stored]))
    entries = [batch_wire.StoredItem(batch_wire.STATUS["checksum-mismatch"], 0, 0, 0)
               for _ in range(count)]
    for n, i in enumerate(intact):
        entries[i] = (batch_wire.StoredItem(batch_wire.STATUS["io-error"], 0, 0, 0)
                      if stored is None else
                      batch_wire.StoredItem(0, stored[n].volume, stored[n].offset,
                                            stored[n].length))
    return Answer(200, batch_wire.encode_stored(entries))


def read_failure(exc: Exception) -> str | None:
    """The error kind a failed read is answered with (``None``: not a read failure)."""
    if isinstance(exc, RecordNotFound):
        return "not-found"
    if isinstance(exc, record.ChecksumMismatch):
        return "checksum-mismatch"
    if isinstance(exc, record.FragmentIdMismatch):
        return "fragment-id-mismatch"
    if isinstance(exc, record.RecordError):
        return "corrupt-record"
    if isinstance(exc, VolumeError):
        return "io-error"
    return None


_Read = tuple[bytes, bytes] | Exception


def _read_quietly(volumes: VolumeSet, address: Address, expected_id: bytes | None,
                  *, cached_only: bool) -> _Read | None:
    """One read whose failure is returned, not raised (so one bad fragment answers as an
    entry of a batch); ``None`` when ``cached_only`` and the record is not in the page cache."""
    try:
        if cached_only:
            return volumes.read_if_cached(address, expected_id)
        return volumes.read(address, expected_id)
    except (VolumeError, record.RecordError) as exc:
        return exc


def read_batch_cached(volumes: VolumeSet, metrics: NodeMetrics, body: bytes) -> Answer | None:
    """``read_batch``'s answer when no fragment of the batch needs the disk (all small and in
    the page cache, or failing without it), computed on the spot; ``None`` otherwise, and
    nothing counted (``read_batch`` then reads the batch). The node front answers a small
    GET's fragments this way without a task per request."""
    try:
        wanted = batch_wire.decode_fetch(body, record.MAX_FRAGMENT_ID)
    except batch_wire.BatchFormatError as exc:
        return error_answer(400, "bad-request", str(exc))
    found: list[_Read | None] = []
    for w in wanted:
        if w.length > INLINE_READ_LIMIT:
            return None
        got = _read_quietly(volumes, Address(w.volume, w.offset, w.length),
                            w.fragment_id or None, cached_only=True)
        if got is None:
            return None
        found.append(got)
    return _read_answer(metrics, found)


async def read_batch(volumes: VolumeSet, metrics: NodeMetrics, body: bytes) -> Answer:
    """Read the fragments a batch body asks for; per fragment the payload or the error."""
    try:
        wanted = batch_wire.decode_fetch(body, record.MAX_FRAGMENT_ID)
    except batch_wire.BatchFormatError as exc:
        return error_answer(400, "bad-request", str(exc))
    addresses = [Address(w.volume, w.offset, w.length) for w in wanted]
    expected = [w.fragment_id or None for w in wanted]
    found: list[_Read | None] = [
        _read_quietly(volumes, a, e, cached_only=True) if a.length <= INLINE_READ_LIMIT
        else None for a, e in zip(addresses, expected, strict=True)]
    misses = [i for i, f in enumerate(found) if f is None]
    if misses:
        # Whatever would wait for the disk is read by one thread call for the whole batch.
        from_disk = await asyncio.get_running_loop().run_in_executor(None, lambda: [
            _read_quietly(volumes, addresses[i], expected[i], cached_only=False)
            for i in misses])
        for i, got in zip(misses, from_disk, strict=True):
            found[i] = got
    return _read_answer(metrics, found)


def _read_answer(metrics: NodeMetrics, found: list[_Read | None]) -> Answer:
    """The batch answer for the outcome of each read, counted (one increment per metric and
    batch: each takes the metric's lock)."""
    metrics.batch_read_requests.inc()
    metrics.batch_read_fragments.inc(len(found))
    entries = []
    ok = nbytes = 0
    for got in found:
        if isinstance(got, tuple):
            ok += 1
            nbytes += len(got[1])
            entries.append(batch_wire.FetchedItem(0, got[1]))
            continue
        kind = read_failure(got) if isinstance(got, Exception) else None
        if kind is None:
            raise AssertionError(f"unexpected read outcome {got!r}")
        metrics.reads.labels(result=kind).inc()
        entries.append(batch_wire.FetchedItem(batch_wire.STATUS[kind], str(got).encode()))
    if ok:
        metrics.reads_ok.inc(ok)
        metrics.read_bytes.inc(nbytes)
    return Answer(200, b"".join(batch_wire.encode_fetched(entries)))
