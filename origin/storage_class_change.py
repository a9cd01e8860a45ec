"""Change the storage class of a stored object (lifecycle transitions, operators).

``change_storage_class`` streams the object out through the reader (verified fragments,
decoded segment by segment), writes it again through the writer in the new class (under the
same object id, so fragment ids keep naming the object), checks size and MD5, and swaps the
fragment map and scheme in one transaction — only if the object still has the scheme it was
read with (``swap_scheme``). Readers see the old or the new map, never a mix; the old
fragments become garbage for the collector. If the object was deleted or overwritten
meanwhile, nothing changes and the new fragments are garbage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg

from origin.ec_reader import ECReader
from origin.ec_writer import ECWriter
from origin.erasure import cached_scheme
from origin.errors import InternalError
from origin.layout import FragmentMap
from origin.metadata import objects as object_store
from origin.metadata.fragments import Blob, part_blobs, swap_scheme
from origin.metadata.models import ObjectRecord
from origin.storage_class import StorageClass


class _ChunkReader:
    """``read(n)`` over an async iterator of chunks (the ``BodyReader`` contract)."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._done = False

    async def read(self, n: int) -> bytes:
        while len(self._buffer) < n and not self._done:
            try:
                self._buffer += await anext(self._chunks)
            except StopAsyncIteration:
                self._done = True
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


async def change_storage_class(
    pool: asyncpg.Pool, writer: ECWriter, reader: ECReader, obj: ObjectRecord,
    new_class: StorageClass,
) -> bool:
    """Rewrite ``obj``'s data in ``new_class``; ``True`` if anything was swapped, ``False`` if
    the data already had that scheme or changed meanwhile. A completed multipart object's data
    are its parts' blobs: each is rewritten in turn (each swap is atomic on its own; a reader
    between two swaps reads parts of both classes, all verified)."""
    if obj.delete_marker:
        return False
    if obj.part_count:
        changed = False
        for part in await part_blobs(pool, obj.id):
            changed |= await change_blob_class(pool, writer, reader, part, new_class)
        return changed
    s = obj.scheme
    return await change_blob_class(
        pool, writer, reader,
        Blob(obj.id, obj.size, (s.ec_type, s.ndata, s.nparity, s.segment_size), obj.etag),
        new_class)


async def change_blob_class(pool: asyncpg.Pool, writer: ECWriter, reader: ECReader,
                            blob: Blob, new_class: StorageClass) -> bool:
    expected = blob.scheme
    target = writer.scheme_for(new_class, blob.size if blob.size < writer.scheme.segment_size
                               else None)
    new = (target.ec_type, target.ndata, target.nparity, target.segment_size)
    if new == expected:
        return False
    ec_type, ndata, nparity, segment_size = expected
    scheme = cached_scheme(ndata, nparity, segment_size, ec_type)

    async def load_map(first: int, last: int) -> FragmentMap:
        return await object_store.get_fragments(pool, blob.id, first, last)

    slices = scheme.segment_slices(blob.size, 0, blob.size - 1) if blob.size else []
    chunks = reader.stream(blob.id, scheme, blob.size, slices, load_map)
    try:
        written = await writer.write(blob.id, _ChunkReader(chunks).read,
                                     max_size=max(blob.size, 1), storage_class=new_class)
    finally:
        await chunks.aclose()
    if written.size != blob.size or (len(blob.etag) == 32 and "-" not in blob.etag
                                     and written.md5_hex != blob.etag):
        raise InternalError(f"re-reading blob {blob.id} gave different bytes")
    return await swap_scheme(pool, blob.id, expected, new, written.fragments,
                             written.missing_fragments)
