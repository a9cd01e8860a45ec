"""Bytes in and out of the data path for the object handlers.

``store_body`` writes a request body (plain or aws-chunked) as one erasure-coded blob and
checks it (length, Content-MD5, signed SHA-256, x-amz-checksum-*) before the caller commits
anything. ``object_chunks`` streams a byte range of an object: one blob, or for a completed
multipart upload the part blobs it references, in order.
"""

from __future__ import annotations

import binascii
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from origin.api.auth import Principal
from origin.api.body import IncomingBody
from origin.api.keys import CONFIG, METRICS, OBJECT_CACHE, POOL, READER, WRITER
from origin.api.object_headers import content_md5
from origin.ec_reader import MAP_WINDOW, ECReader
from origin.ec_writer import BodyReader
from origin.erasure import cached_scheme
from origin.errors import BadDigest, ContentSHA256Mismatch, InvalidStorageClass
from origin.layout import FragmentMap
from origin.metadata import multipart as upload_store
from origin.metadata import objects as object_store
from origin.metadata.models import ObjectRecord, StorageScheme
from origin.multipart import part_ranges
from origin.storage_class import StorageClass, StorageClassError


@dataclass(frozen=True)
class StoredData:
    size: int
    md5_hex: str
    checksum: tuple[str, str] | None
    fragments: FragmentMap
    missing_fragments: int
    scheme: StorageScheme
    storage_class: str = "STANDARD"  # the class's name (its scheme may differ: tiny objects)


def requested_class(request: web.Request, name: str | None = None) -> StorageClass:
    """The storage class named by ``name`` or else the request's ``x-amz-storage-class``
    (STANDARD, REPLICATED, or a configured class); ``InvalidStorageClass`` if unknown."""
    try:
        return request.app[CONFIG].storage_policy.get(
            name if name is not None else request.headers.get("x-amz-storage-class"))
    except StorageClassError as exc:
        raise InvalidStorageClass(str(exc)) from None


async def write_blob(request: web.Request, object_id: str, read: BodyReader,
                     want_sha256: bool = False, storage_class: str | None = None,
                     ) -> tuple[StoredData, str | None]:
    """Write one blob in ``storage_class`` (default: the request's header)."""
    cls = requested_class(request, storage_class)
    written = await request.app[WRITER].write(
        object_id, read, max_size=request.app[CONFIG].max_object_size,
        want_sha256=want_sha256, storage_class=cls)
    s = written.scheme  # the class's scheme; tiny objects are stored replicated
    return StoredData(written.size, written.md5_hex, None, written.fragments,
                      written.missing_fragments,
                      StorageScheme(s.ec_type, s.ndata, s.nparity, s.segment_size),
                      cls.name), written.sha256_hex


async def store_body(request: web.Request, object_id: str, principal: Principal | None,
                     storage_class: str | None = None) -> StoredData:
    """Write the request body; raise the S3 error of the first check that fails."""
    body = IncomingBody(request, principal, request.app[CONFIG].max_object_size)
    expected_md5 = content_md5(request.headers.get("Content-MD5"))
    declared_sha256 = principal.payload_sha256 if principal else None
    stored, sha256_hex = await write_blob(request, object_id, body.read,
                                          want_sha256=declared_sha256 is not None,
                                          storage_class=storage_class)
    checksum = body.finish()
    if expected_md5 is not None and binascii.hexlify(expected_md5).decode() != stored.md5_hex:
        raise BadDigest()
    if declared_sha256 is not None and sha256_hex != declared_sha256:
        raise ContentSHA256Mismatch()
    # (``replace`` builds the whole frozen dataclass again: only when there is a checksum)
    return stored if checksum is None else dataclasses.replace(stored, checksum=checksum)


async def _blob_chunks(reader: ECReader, pool: asyncpg.Pool, blob_id: str, s: StorageScheme,
                       size: int, first: int, last: int,
                       prefetched: FragmentMap | None = None) -> AsyncGenerator[bytes, None]:
    """``prefetched``: the map of segments ``0 .. MAP_WINDOW - 1`` read along with the
    object row; it answers the reader's first map load when the read starts there."""
    scheme = cached_scheme(s.ndata, s.nparity, s.segment_size, s.ec_type)

    async def load_map(first_segment: int, last_segment: int) -> FragmentMap:
        nonlocal prefetched
        if prefetched is not None and first_segment == 0 and last_segment < MAP_WINDOW:
            known, prefetched = prefetched, None
            return {i: known.get(i, {}) for i in range(first_segment, last_segment + 1)}
        return await object_store.get_fragments(pool, blob_id, first_segment, last_segment)

    slices = scheme.segment_slices(size, first, last)
    chunks = reader.stream(blob_id, scheme, size, slices, load_map)
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            yield chunk


async def small_object_bytes(app: web.Application, obj: ObjectRecord, first: int, last: int,
                             prefetched: FragmentMap | None) -> bytes | None:
    """Bytes ``first..last`` of a one-segment object whose fragment map came with its row,
    read and decoded in one step (or found in the object cache, when there is one: the row
    was read just now, so the id is current); ``None`` when the object is not such a one
    (multipart, several segments, no prefetched map), for ``object_chunks`` to stream
    instead. A 4 KiB GET then costs no generators and no read-ahead task."""
    s = obj.scheme
    if obj.part_count or not 0 < obj.size <= s.segment_size:
        return None
    cache = app.get(OBJECT_CACHE)
    data = cache.get(obj.id) if cache is not None else None
    if data is None:
        if not prefetched or 0 not in prefetched:
            return None
        scheme = cached_scheme(s.ndata, s.nparity, s.segment_size, s.ec_type)
        data = await app[READER].read_segment(obj.id, scheme, 0, obj.size, prefetched[0])
        if cache is not None:
            cache.put(obj.id, data)
            app[METRICS].object_cache_misses.inc()
    else:
        app[METRICS].object_cache_hits.inc()
    return data if first == 0 and last == obj.size - 1 else data[first:last + 1]


async def object_chunks(app: web.Application, obj: ObjectRecord, first: int, last: int,
                        prefetched: FragmentMap | None = None) -> AsyncGenerator[bytes, None]:
    """Bytes ``first..last`` (inclusive) of ``obj``, in order. ``prefetched``: see
    ``_blob_chunks`` (ignored for multipart objects, whose data lives in the parts)."""
    pool, reader = app[POOL], app[READER]
    if not obj.part_count:
        async with contextlib.aclosing(_blob_chunks(
                reader, pool, obj.id, obj.scheme, obj.size, first, last, prefetched)) as it:
            async for chunk in it:
                yield chunk
        return
    parts = await upload_store.object_parts(pool, obj.id)
    for span in part_ranges([p.size for p in parts], first, last):
        part = parts[span.index]
        async with contextlib.aclosing(_blob_chunks(
                reader, pool, part.object_id, part.scheme, part.size, span.first,
                span.last)) as it:
            async for chunk in it:
                yield chunk


def chunk_reader(chunks: AsyncIterator[bytes]) -> BodyReader:
    """Adapt a stream of chunks of any size to ``read(n)`` (exactly n, fewer at the end)."""
    buffer = bytearray()
    done = False

    async def read(n: int) -> bytes:
        nonlocal done
        while len(buffer) < n and not done:
            try:
                buffer.extend(await anext(chunks))
            except StopAsyncIteration:
                done = True
        with memoryview(buffer) as view:
            data = bytes(view[:n])  # one copy of the segment, not two
        del buffer[:n]
        return data

    return read
