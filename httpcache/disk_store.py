"""The disk tier: large bodies in files under ``cache_dir``, their metadata in memory.

What lives where:

* the metadata (status, headers, times, cache key, tags, Vary values) of each entry is a
  ``StoredResponse`` with an empty ``body`` and ``file=BodyFile(path, length)``, held by a
  ``MemoryStore`` sized by file bytes (``disk_max_bytes``). That store brings S3-FIFO
  eviction, the tag/path/variant indexes and purges for free; every value that leaves it
  (evicted, deleted, purged hard, replaced by a newer body) has its file unlinked;
* the body is one file per entry, in a directory private to this process.

Writes are atomic: a body is written to ``tmp-*`` while it streams in and renamed to its final
name only once complete (``commit``); only committed files are ever referenced, so a partial
file is never served. A fetch that fails or turns out too big aborts the temp file. Files are
never rewritten: a new body gets a new name, and a reader that opened the old file keeps
reading it after it is unlinked (POSIX semantics), so eviction never cuts a response short.

Restart: the tier is *wiped*, not recovered. Metadata is in memory only, so bodies of a
previous run are unreachable; each process claims ``cache_dir/proc-<pid>-<random>/`` under
an ``flock``ed lock file, and at start-up removes every ``proc-*`` folder whose lock it can
take (its process is gone). Several processes may share one ``cache_dir``. Recovering the
bodies would need the metadata on disk as well, and a crash-consistent index of it; the
shared Redis tier is what keeps a restarting PoP warm.

File reads and writes run in a worker thread (``asyncio.to_thread``) in chunks of
``IO_CHUNK`` bytes, so a cold disk never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import itertools
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from httpcache.errors import StoreError
from httpcache.headers import Fields
from httpcache.messages import BodyFile, Chunk, StoredResponse
from httpcache.ranges import ByteRange, multipart_heads
from httpcache.store import FetchMark, MemoryStore, PurgeResult

log = logging.getLogger("cdn.httpcache.disk")

IO_CHUNK = 256 * 1024
WRITE_BUFFER = 1024 * 1024


def _disk_cost(stored: StoredResponse) -> int:
    return stored.body_length + stored.byte_size()


class BodyWriter:
    """One body being written to a temp file (buffered; flushed from a worker thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 (closed in finish/abort)
        self._buffer: list[Chunk] = []
        self._buffered = 0
        self.size = 0

    async def write(self, chunk: Chunk) -> None:
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        self.size += len(chunk)
        if self._buffered >= WRITE_BUFFER:
            await self._flush()

    async def _flush(self) -> None:
        data, self._buffer, self._buffered = b"".join(self._buffer), [], 0
        if data and self._file is not None:
            await asyncio.to_thread(self._file.write, data)

    async def finish(self) -> None:
        await self._flush()
        if self._file is not None:
            self._file.close()
            self._file = None

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class DiskStore:
    """Bodies of at least ``min_object_bytes`` in files, ``max_bytes`` in total."""

    def __init__(self, directory: str | Path, max_bytes: int, min_object_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"disk tier max_bytes must be positive, got {max_bytes}")
        self.root = Path(directory)
        self.max_bytes = max_bytes
        self.min_object_bytes = min_object_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_orphans()
        self.dir = self.root / f"proc-{os.getpid()}-{secrets.token_hex(4)}"
        self.dir.mkdir()
        self._lock = open(self.dir / "lock", "wb")  # noqa: SIM115 (held for our lifetime)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._names = itertools.count()
        self.index = MemoryStore(max_bytes, max_bytes, sizeof=_disk_cost,
                                 on_remove=self._removed)

    def _remove_orphans(self) -> None:
        for folder in self.root.glob("proc-*"):
            try:
                with open(folder / "lock", "rb") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except FileNotFoundError:
                pass  # no lock file: a folder being created or half removed; take it
            except OSError:
                continue  # locked: a live process owns it
            log.info("disk tier: removing %s left by a previous process", folder)
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Remove this process's bodies (they are unreachable once we are gone)."""
        self.index.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
        self._lock.close()

    # -- reading -------------------------------------------------------------------------------

    def lookup(self, key: str, request_headers: Fields) -> tuple[StoredResponse | None, bool]:
        return self.index.lookup(key, request_headers)

    def __contains__(self, key: object) -> bool:
        return key in self.index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def current_bytes(self) -> int:
        return self.index.current_bytes

    def fits(self, size: int) -> bool:
        return size <= self.max_bytes

    def wants(self, size: int | None) -> bool:
        """Whether a body of ``size`` bytes (``None``: not known yet) belongs on disk."""
        return size is None or self.min_object_bytes <= size <= self.max_bytes

    @staticmethod
    def open(stored: StoredResponse) -> BinaryIO:
        """Open a stored body (synchronously, right after the lookup, so eviction between
        the two cannot happen); ``FileNotFoundError`` if it went missing underneath us."""
        assert stored.file is not None
        return open(stored.file.path, "rb")  # noqa: SIM115 (closed by read_range)

    # -- writing -------------------------------------------------------------------------------

    def writer(self) -> BodyWriter:
        return BodyWriter(self.dir / f"tmp-{next(self._names)}")

    async def commit(self, writer: BodyWriter, stored: StoredResponse) -> bool:
        """Rename the finished temp file to its final name and index it (``stored`` carries
        the metadata; its ``body`` is ignored). ``False`` if it is too big to keep."""
        await writer.finish()
        if not self.fits(writer.size):
            writer.abort()
            return False
        final = self.dir / f"body-{next(self._names)}"
        os.replace(writer.path, final)
        entry = dataclasses.replace(stored, body=b"", file=BodyFile(str(final), writer.size))
        return self.index.put(entry)

    def put_metadata(self, stored: StoredResponse) -> bool:
        """Replace the metadata of an entry whose body is unchanged (a 304 refresh)."""
        return stored.file is not None and self.index.put(stored)

    def _removed(self, stored: StoredResponse) -> None:
        if stored.file is None:
            return
        current = self.index.peek(stored.entry_key)
        if current is not None and current.file == stored.file:
            return  # metadata replaced, same body
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stored.file.path)

    # -- removing ------------------------------------------------------------------------------

    def delete_entry(self, entry: str) -> bool:
        return self.index.delete_entry(entry)

    def purge_tag(self, tag: str, *, soft: bool = False, age: float = 0.0) -> PurgeResult:
        return self.index.purge_tag(tag, soft=soft, age=age)

    def purge_url(self, url: str, *, soft: bool = False, age: float = 0.0) -> PurgeResult:
        return self.index.purge_url(url, soft=soft, age=age)

    def purge_prefix(self, prefix: str, *, soft: bool = False, age: float = 0.0) -> PurgeResult:
        return self.index.purge_prefix(prefix, soft=soft, age=age)

    def fetch_mark(self) -> FetchMark:
        return self.index.fetch_mark()


async def _read(handle: BinaryIO, first: int, last: int) -> AsyncIterator[bytes]:
    await asyncio.to_thread(handle.seek, first)
    remaining = last - first + 1
    while remaining > 0:
        try:
            chunk = await asyncio.to_thread(handle.read, min(IO_CHUNK, remaining))
        except OSError as exc:
            raise StoreError(f"disk tier: reading {handle.name} failed: {exc}") from exc
        if not chunk:
            raise StoreError(f"disk tier: {handle.name} ended {remaining} bytes early")
        remaining -= len(chunk)
        yield chunk


async def read_range(handle: BinaryIO, first: int, last: int) -> AsyncIterator[bytes]:
    """Bytes ``first..last`` (inclusive) of an open body file, in ``IO_CHUNK`` pieces read in a
    worker thread; closes the file when done."""
    try:
        async for chunk in _read(handle, first, last):
            yield chunk
    finally:
        handle.close()


async def file_multipart(handle: BinaryIO, parts: list[ByteRange], content_type: str | None,
                         boundary: str) -> AsyncIterator[bytes]:
    """A ``multipart/byteranges`` payload (RFC 9110 §14.6) streamed from an open body file;
    closes the file when done."""
    heads, tail = multipart_heads(parts, content_type, boundary)
    try:
        for head, part in zip(heads, parts, strict=True):
            yield head
            async for chunk in _read(handle, part.first, part.last):
                yield chunk
        yield tail
    finally:
        handle.close()
