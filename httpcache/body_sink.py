"""Where a body being fetched is kept while it streams in: memory while it is small, a
disk-tier temp file once it is (or is announced to be) large, nowhere once it is too large
for both.

With a known ``Content-Length`` the place is chosen up front: at least the disk tier's
``min_object_bytes`` (and no more than it holds) → disk; otherwise memory if one object may be
that large. Without one, the body starts in memory and moves to a temp file when it reaches
the disk threshold (or is dropped when it outgrows memory and there is no disk tier).
"""

from __future__ import annotations

from httpcache.disk_store import BodyWriter, DiskStore
from httpcache.messages import Body, Chunk
from httpcache.store import MemoryStore


class BodySink:
    def __init__(self, memory: MemoryStore, disk: DiskStore | None, length: int | None) -> None:
        self.memory = memory
        self.disk = disk
        self.size = 0
        self.writer: BodyWriter | None = None
        self._kept: list[Chunk] = []
        self.keeping = True
        if length is None:
            return
        if disk is not None and disk.min_object_bytes <= length and disk.fits(length):
            self.writer = disk.writer()
        elif not memory.fits(length):
            self.keeping = False

    async def add(self, chunk: Chunk) -> None:
        if not self.keeping:
            return
        self.size += len(chunk)
        if self.writer is not None:
            assert self.disk is not None
            if self.disk.fits(self.size):
                await self.writer.write(chunk)
            else:
                self.drop()
            return
        self._kept.append(chunk)
        disk = self.disk
        if disk is not None and self.size >= disk.min_object_bytes and disk.fits(self.size):
            self.writer = disk.writer()
            for kept in self._kept:
                await self.writer.write(kept)
            self._kept = []
        elif not self.memory.fits(self.size):
            self.drop()

    def add_in_memory(self, chunk: Chunk) -> None:
        """``add`` for a sink with no disk tier, which never has to wait."""
        assert self.disk is None
        if self.keeping:
            self.size += len(chunk)
            self._kept.append(chunk)
            if not self.memory.fits(self.size):
                self.drop()

    def body(self, whole: bytearray | None = None) -> Body:
        """The body kept in memory (empty when it went to a file). ``whole``: the complete
        response body, read into one buffer by the upstream client; when every one of its
        bytes went through ``add`` (the chunks were views of it), it is the body, unjoined."""
        if whole is not None and self.writer is None and len(whole) == self.size:
            return whole
        return b"".join(self._kept)

    def drop(self) -> None:
        """Keep nothing (too large, or the fetch failed): the temp file is removed."""
        self.keeping = False
        self._kept = []
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
