"""Forward reads of one volume file through one reusable buffer (blocking file I/O).

A walk over a volume (``VolumeSet.scan``: the scrubber, the garbage collector, the compactor)
used to issue one ``pread`` for each record's header and, when verifying, one for its payload:
two system calls per record, ≈ 3.5 µs for a small fragment, which dominated a walk over many
small objects. ``ReadAhead`` stands in for those ``pread`` calls: it reads the file forwards a
chunk at a time into one buffer and answers from memory, so a walk costs one system call per
chunk and each byte is copied once, whatever the records' sizes.

Views it returns are slices of that buffer, valid until the next call (the next fill
overwrites it); the caller parses or checksums them at once and keeps nothing.
"""

from __future__ import annotations

import os
import zlib


class ReadAhead:
    """Reads of ``fd`` at non-decreasing offsets, answered from one buffer of up to
    ``chunk`` bytes (allocated as large as the first fill that needs it).

    ``end`` bounds the read-ahead (the end of the walk's page, or of the volume's data): a
    fill never reads past it unless the request itself does, so a page walk does not read
    the next page's bytes only to throw them away.
    """

    def __init__(self, fd: int, chunk: int, end: int) -> None:
        self._fd = fd
        self._chunk = chunk
        self._end = end
        self._view = memoryview(bytearray())  # grown by the first fill that needs more
        self._start = 0  # the buffer holds the file's bytes [_start, _start + _len)
        self._len = 0
        self._eof = False  # the last fill came back short: the file ended there

    def read(self, offset: int, n: int, *, ahead: int | None = None) -> memoryview:
        """What ``os.pread(fd, n, offset)`` would return: ``n`` bytes (at most the chunk),
        fewer only where the file ends. When they are not all in the buffer it is filled
        from ``offset`` with ``ahead`` bytes (default: a chunk), never fewer than ``n``;
        with ``ahead=0`` they are read with a plain ``pread`` and the buffer kept."""
        if n > self._chunk:
            raise ValueError(f"a read of {n} bytes does not fit the {self._chunk}-byte chunk")
        at = offset - self._start
        if at < 0 or (at + n > self._len and not (self._eof and at <= self._len)):
            if ahead == 0:
                return memoryview(os.pread(self._fd, n, offset))
            self._fill(offset, self._want(offset, n, self._chunk if ahead is None else ahead))
            at = 0
        return self._view[at:at + min(n, self._len - at)]

    def crc32(self, offset: int, n: int) -> tuple[int, int]:
        """The CRC-32 of the ``n`` bytes at ``offset`` and how many of them the file holds
        (fewer than ``n``: it ends first), taken a buffer at a time, so a payload larger
        than the chunk needs no buffer of its own."""
        at = offset - self._start
        if 0 <= at and at + n <= self._len:  # the usual case: all of it is in the buffer
            return zlib.crc32(self._view[at:at + n]), n
        crc = found = 0
        while found < n:
            part = self._next(offset + found, n - found)
            if not part:
                break
            crc = zlib.crc32(part, crc)
            found += len(part)
        return crc, found

    def _next(self, offset: int, most: int) -> memoryview:
        """Up to ``most`` bytes at ``offset``: what the buffer holds from there, or what a
        fill from there brings (nothing: the file ends at ``offset``)."""
        at = offset - self._start
        if not 0 <= at < self._len:
            self._fill(offset, self._want(offset, min(most, self._chunk), self._chunk))
            at = 0
        return self._view[at:at + min(most, self._len - at)]

    def _want(self, offset: int, n: int, ahead: int) -> int:
        """Bytes to read for ``n`` at ``offset``: up to ``ahead`` and no further than
        ``end`` (unless ``n`` goes further)."""
        return max(n, min(ahead, self._chunk, self._end - offset))

    def _fill(self, offset: int, want: int) -> None:
        if len(self._view) < want:
            self._view = memoryview(bytearray(want))
        got = os.preadv(self._fd, [self._view[:want]], offset)
        self._start, self._len, self._eof = offset, got, got < want
