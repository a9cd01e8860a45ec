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

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from origin.ec_reader import ECReader
from origin.ec_writer import ECWriter
from origin.erasure import cached_scheme
from origin.errors import InternalError
from origin.layout import FragmentMap
from origin.metadata import objects as object_store
from origin.metadata.fragments import Blob, part_blobs, set_storage_class, swap_scheme
from origin.metadata.models import ObjectRecord
from origin.metadata.versions import get_by_id
from origin.storage_class import StorageClass, StorageClassPolicy


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
    """Rewrite ``obj``'s data in ``new_class`` and name that class on its row; ``True`` if
    anything changed, ``False`` if it was already in that class or changed meanwhile. A
    completed multipart object's data are its parts' blobs: each is rewritten in turn (each
    swap is atomic on its own; a reader between two swaps reads parts of both classes, all
    verified), then the object row is renamed. An object whose bytes are already encoded as
    the class wants (a tiny STANDARD object is stored replicated) is only renamed."""
    if obj.delete_marker:
        return False
    if obj.part_count:
        changed = False
        for part in await part_blobs(pool, obj.id):
            changed |= await change_blob_class(pool, writer, reader, part, new_class)
        return await set_storage_class(pool, obj.id, new_class.name) or changed
    s = obj.scheme
    scheme = (s.ec_type, s.ndata, s.nparity, s.segment_size)
    blob = Blob(obj.id, obj.size, scheme, obj.etag)
    if await change_blob_class(pool, writer, reader, blob, new_class):
        return True
    return await set_storage_class(pool, obj.id, new_class.name, scheme)


async def change_blob_class(pool: asyncpg.Pool, writer: ECWriter, reader: ECReader,
                            blob: Blob, new_class: StorageClass) -> bool:
    """Re-encode one blob (an object's or a part's data) in ``new_class``; ``False`` if its
    scheme already is the class's or changed meanwhile (then the new copy is garbage)."""
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
                             written.missing_fragments, new_class.name)


def lifecycle_mover(pool: asyncpg.Pool, writer: ECWriter, reader: ECReader,
                    policy: StorageClassPolicy) -> Callable[[str, str], Awaitable[bool]]:
    """The lifecycle worker's transition hook: ``(object id, class name) -> moved?``."""

    async def move(object_id: str, target: str) -> bool:
        obj = await get_by_id(pool, object_id)
        if obj is None or not obj.is_latest:
            return False  # deleted or overwritten since the worker's scan
        return await change_storage_class(pool, writer, reader, obj, policy.get(target))

    return move
