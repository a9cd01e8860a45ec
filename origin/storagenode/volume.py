"""Append-only volume files on one storage node (blocking file I/O; callers use threads).

Many fragments of many objects are packed into a few large files (``volumes/000001.vol``, …),
as Haystack does, so the file system sees big sequential appends instead of millions of small
files, and no user key ever becomes a path. Only the newest volume takes appends; once the next
record would push it past ``max_bytes`` it is sealed and a new one is started.

Numbering: volumes are numbered consecutively from ``first_volume``. The storage node passes
its disk's ``volume_base`` and a ``start_delay`` (``identity.py``): a number is started only
once the clock allows it, so a fresh disk's numbers never repeat a previous disk's. Until
then a full (or old) active volume keeps taking appends past ``max_bytes`` and ``seal``
answers ``None``. Without ``start_delay`` (tools, benchmarks) numbers start at once.

Threading contract: ``append_batch`` is called by one writer thread at a time (the group
committer guarantees it); ``read`` may be called from any number of threads concurrently
(``os.pread`` is positionless). Records are written once and never changed, so a reader can only
see bytes that were acknowledged (durable) before its address was handed out.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from origin.storagenode import record
from origin.storagenode.readahead import ReadAhead

log = logging.getLogger("cdn.storagenode")

_IOV_MAX = 1024  # Linux UIO_MAXIOV: buffers per pwritev
_NAME = re.compile(r"^(\d{6,})\.vol$")
# preadv flag: fail with EAGAIN instead of waiting for the disk (Linux 4.14+).
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)
# A record's header with the longest fragment id: what one read must get to parse a header.
_HEAD_WINDOW = record.HEADER_SIZE + record.MAX_FRAGMENT_ID
# A volume walk (scrub, GC, compaction) reads the file this many bytes at a time: one
# preadv then covers ≈ 1,300 small (760 B) fragments instead of two preads for each. From
# the page cache a walk costs the same per record from 64 KiB to 4 MiB chunks (4 KiB: ≈ 1.7×
# verifying); 1 MiB also keeps reads from disk large and sequential, while each concurrent
# walk holds only one such buffer.
SCAN_CHUNK = 1 << 20
# A walk that only parses headers (GC, compactor) copies the payloads it skips, so it reads
# ahead less far: 64 KiB (as fast per small record as 1 MiB, and wastes less before a large
# record); and after a record larger than 16 KiB, as large ones tend to come together, it
# preads just the next header (copying 64 KiB to find one costs more than that pread).
_SKIP_READ_AHEAD = 64 << 10
_SKIP_LARGE = 16 << 10


class VolumeError(Exception):
    """A volume operation failed (I/O error, full disk)."""


class RecordNotFound(VolumeError):
    """No record at that address: unknown volume or an offset past the end of the data."""


# A record to append: (fragment id, payload) or (fragment id, payload, payload CRC-32).
Record = tuple[bytes, bytes | memoryview] | tuple[bytes, bytes | memoryview, int]


class Address(NamedTuple):
    """Where a fragment lives on this node; ``offset`` is the record start. A named tuple,
    not a frozen dataclass: one is made per fragment read or written, and a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``."""

    volume: int
    offset: int
    length: int


@dataclass(frozen=True)
class VolumeInfo:
    """``modified`` is the volume file's mtime (node clock): no record in it is younger, which
    is what the garbage collector's grace period is measured against."""

    volume: int
    size: int
    active: bool
    modified: float = 0.0


@dataclass(frozen=True)
class ScannedRecord:
    """One record found by walking a volume. ``error`` is None for a verified record, else
    ``"checksum-mismatch"`` (payload rotted) or ``"corrupt-record"`` (header unreadable; the
    walk resynchronised at the next valid header, ``length`` covers the skipped bytes)."""

    offset: int
    fragment_id: bytes
    length: int
    error: str | None = None


@dataclass(frozen=True)
class ScanPage:
    """One page of a walk. ``records`` is every record walked, or only the failed ones when
    the walk was asked for errors only; ``walked`` and ``walked_bytes`` count every record
    walked (and the sum of their ``length``) either way."""

    records: list[ScannedRecord]
    next_offset: int | None  # None: end of the volume reached
    walked: int
    walked_bytes: int


def volume_name(volume: int) -> str:
    return f"{volume:06d}.vol"


def _pwrite_all(fd: int, buffers: list[bytes | memoryview], offset: int) -> int:
    """Write every buffer at ``offset`` onwards, retrying short writes; returns bytes written.
    Up to ``_IOV_MAX`` buffers go in one ``pwritev``."""
    written = 0
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    first = 0  # views[:first] are written
    while first < len(views):
        n = os.pwritev(fd, views[first:first + _IOV_MAX], offset + written)
        written += n
        # Usually whole buffers were written; a short write leaves the rest of one.
        while n and first < len(views):
            if n >= len(views[first]):
                n -= len(views[first])
                first += 1
            else:
                views[first] = views[first][n:]
                n = 0
    return written


def existing_volumes(root: Path) -> list[int]:
    """The volume numbers of the files under ``root`` (none when it does not exist)."""
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for entry in root.iterdir()
                  if (m := _NAME.match(entry.name)))


class VolumeSet:
    """The volume files under ``root`` and the write position in the active one."""

    def __init__(self, root: Path, max_bytes: int, *, fsync: bool = True,
                 max_age: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 scan_chunk: int = SCAN_CHUNK, first_volume: int = 1,
                 start_delay: Callable[[int], float] | None = None) -> None:
        if scan_chunk < _HEAD_WINDOW:
            raise ValueError(f"scan_chunk must hold a whole record header ({_HEAD_WINDOW} "
                             f"bytes), got {scan_chunk}")
        self.root = root
        self.max_bytes = max_bytes
        self.fsync = fsync
        # An active volume older than this is sealed before the next append (0: never), so
        # garbage in it starts to age: the GC grace period counts from a volume's last append.
        self.max_age = max_age
        self._clock = clock
        self.scan_chunk = scan_chunk
        # The number of an empty root's first volume, and the seconds until a number may be
        # started (> 0: not yet); see the module docstring.
        self.first_volume = first_volume
        self._start_delay = start_delay
        self._active_since = clock()
        self._sizes: dict[int, int] = {}
        self._read_fds: dict[int, int] = {}
        # A read fd is held while a pread on it may run (``_hold_fd``/``_let_go``): deleting
        # its volume meanwhile must not close it under that read (which would fail with
        # EBADF, or read whatever file got the number next), so it is closed by the last
        # holder instead.
        self._fd_holds: dict[int, int] = {}
        self._fds_of_deleted: set[int] = set()
        self._fd_lock = threading.Lock()
        self._active = 0
        self._active_fd = -1

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Find existing volumes, recover the active one's tail, open it for appends."""
        self.root.mkdir(parents=True, exist_ok=True)
        for volume in existing_volumes(self.root):
            self._sizes[volume] = (self.root / volume_name(volume)).stat().st_size
        if not self._sizes:
            self._create(self.first_volume)
            return
        self._active = max(self._sizes)
        path = self.root / volume_name(self._active)
        self._active_fd = os.open(path, os.O_WRONLY)
        self._sizes[self._active] = self._recover_tail(path)

    def close(self) -> None:
        with self._fd_lock:
            for fd in [*self._read_fds.values(), *self._fds_of_deleted]:
                os.close(fd)
            self._read_fds.clear()
            self._fds_of_deleted.clear()
            self._fd_holds.clear()
        if self._active_fd >= 0:
            os.close(self._active_fd)
            self._active_fd = -1

    def _create(self, volume: int) -> None:
        path = self.root / volume_name(volume)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if self.fsync:
            self._fsync_dir()
        if self._active_fd >= 0:
            os.close(self._active_fd)
        self._active, self._active_fd = volume, fd
        self._sizes[volume] = 0
        self._active_since = self._clock()

    def _fsync_dir(self) -> None:
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _recover_tail(self, path: Path) -> int:
        """Length of the valid prefix of the active volume, truncating a torn last record.

        A crash between write and fsync can leave a partial record that was never
        acknowledged; nothing references it, but a scrubber walking the volume must not trip
        over it, so it is cut off here.
        """
        file_size = path.stat().st_size
        offset = 0
        with open(path, "rb") as fh:
            while offset < file_size:
                fh.seek(offset)
                try:
                    header = record.parse_header(
                        fh.read(record.HEADER_SIZE + record.MAX_FRAGMENT_ID))
                except record.CorruptRecord:
                    break
                if offset + header.size > file_size:
                    break
                offset += header.size
        if offset < file_size:
            log.warning("%s: truncating %d bytes of torn records at offset %d",
                        path, file_size - offset, offset)
            os.truncate(path, offset)
        return offset

    # -- writes (one writer thread) ---------------------------------------------------------

    def append_batch(self, items: Sequence[Record]) -> list[Address]:
        """Append ``(fragment_id, payload)`` records (or ``(fragment_id, payload, crc)`` with
        the payload's CRC-32 already verified) and make them durable with one fsync per
        volume touched (group commit). All-or-nothing: on error the tail written by this
        batch is truncated away and ``VolumeError`` raised."""
        addresses: list[Address] = []
        dirty: list[tuple[int, int, int]] = []  # (volume, fd, size before the batch)
        # Headers and payloads of consecutive records, written with as few syscalls as the
        # kernel allows (pwritev) instead of two pwrites per record. ``_sizes`` moves only
        # once they are written, so a scan never walks into bytes not yet there.
        pending: list[bytes | memoryview] = []
        pending_at = 0
        end = self._sizes[self._active]
        try:
            for item in items:
                fragment_id, payload = item[0], item[1]
                size = record.record_size(fragment_id, len(payload))
                too_old = self.max_age > 0 and self._clock() - self._active_since > self.max_age
                # A number not yet due (start_delay) is not started: the active volume takes
                # this record past max_bytes instead.
                if (end > 0 and (end + size > self.max_bytes or too_old)
                        and self.next_volume_delay() <= 0):
                    if pending:  # what belongs to the volume being sealed goes out first
                        _pwrite_all(self._active_fd, pending, pending_at)
                        self._sizes[self._active] = end
                        pending = []
                    self._seal_active(dirty)
                    end = 0
                if not dirty or dirty[-1][0] != self._active:
                    dirty.append((self._active, self._active_fd, end))
                if not pending:
                    pending_at = end
                crc = item[2] if len(item) == 3 else None
                pending += (record.encode_header(fragment_id, payload, crc), payload)
                addresses.append(Address(self._active, end, len(payload)))
                end += size
            if pending:
                _pwrite_all(self._active_fd, pending, pending_at)
                self._sizes[self._active] = end
            if self.fsync:
                os.fdatasync(self._active_fd)
        except OSError as exc:
            self._undo(dirty)
            raise VolumeError(f"append failed: {exc}") from exc
        return addresses

    def _seal_active(self, dirty: list[tuple[int, int, int]]) -> None:
        if self.fsync and dirty and dirty[-1][0] == self._active:
            os.fdatasync(self._active_fd)
        # The sealed volume's fd is closed by _create; keep its id in ``dirty`` only for undo.
        self._create(self._active + 1)

    def _undo(self, dirty: list[tuple[int, int, int]]) -> None:
        for volume, _fd, size in dirty:
            try:
                os.truncate(self.root / volume_name(volume), size)
                self._sizes[volume] = size
            except OSError:
                log.exception("could not truncate volume %d back to %d bytes", volume, size)

    # -- reads (any thread) -----------------------------------------------------------------

    def _hold_fd(self, volume: int) -> int:
        """The volume's read fd, open until the caller's ``_let_go`` even if the volume is
        deleted meanwhile."""
        with self._fd_lock:
            fd = self._read_fds.get(volume)
            if fd is None:
                if volume not in self._sizes:
                    raise RecordNotFound(f"no volume {volume}")
                fd = os.open(self.root / volume_name(volume), os.O_RDONLY)
                self._read_fds[volume] = fd
            self._fd_holds[fd] = self._fd_holds.get(fd, 0) + 1
            return fd

    def _let_go(self, fd: int) -> None:
        with self._fd_lock:
            holds = self._fd_holds.pop(fd, 1) - 1
            if holds:
                self._fd_holds[fd] = holds
            elif fd in self._fds_of_deleted:
                self._fds_of_deleted.discard(fd)
                os.close(fd)

    def read(self, address: Address, expected_id: bytes | None = None) -> tuple[bytes, bytes]:
        """``(fragment_id, payload)`` at ``address`` after verifying both checksums.

        Raises ``RecordNotFound`` or a ``record.RecordError`` (corrupt header, checksum
        mismatch, different fragment id).
        """
        size = self._sizes.get(address.volume)
        if size is None:
            raise RecordNotFound(f"no volume {address.volume}")
        if address.offset < 0 or address.length < 0 or address.offset >= size:
            raise RecordNotFound(f"offset {address.offset} outside volume {address.volume} "
                                 f"of {size} bytes")
        want = record.HEADER_SIZE + record.MAX_FRAGMENT_ID + address.length
        try:
            fd = self._hold_fd(address.volume)
            try:
                buf = os.pread(fd, want, address.offset)
            finally:
                self._let_go(fd)
        except OSError as exc:
            raise VolumeError(f"read of volume {address.volume} failed: {exc}") from exc
        header, payload = record.parse_record(buf, address.length, expected_id)
        return header.fragment_id, bytes(payload)

    def read_if_cached(self, address: Address,
                       expected_id: bytes | None = None) -> tuple[bytes, bytes] | None:
        """``read`` when the whole record is in the page cache, else ``None`` (without
        waiting for the disk: ``RWF_NOWAIT``), so the event loop can serve a small hot
        fragment itself and hand only real disk reads to a thread."""
        size = self._sizes.get(address.volume)
        if (_RWF_NOWAIT is None or size is None or address.offset < 0 or address.length < 0
                or address.offset >= size):
            return None
        want = min(record.HEADER_SIZE + record.MAX_FRAGMENT_ID + address.length,
                   size - address.offset)
        buf = bytearray(want)
        try:
            fd = self._hold_fd(address.volume)
        except (OSError, RecordNotFound):
            return None
        try:
            got = os.preadv(fd, [buf], address.offset, _RWF_NOWAIT)
        except OSError:
            return None  # EAGAIN (not cached), EOPNOTSUPP, ...: the thread path decides
        finally:
            self._let_go(fd)
        if got != want:
            return None
        header, payload = record.parse_record(memoryview(buf), address.length, expected_id)
        return header.fragment_id, bytes(payload)

    def volumes(self) -> list[VolumeInfo]:
        infos = []
        for v, size in sorted(self._sizes.items()):
            try:
                modified = (self.root / volume_name(v)).stat().st_mtime
            except OSError:
                continue  # deleted meanwhile
            infos.append(VolumeInfo(v, size, v == self._active, modified))
        return infos

    # -- maintenance: scrub/GC walk, sealing, deletion (see the server for the contract) ----

    def scan(self, volume: int, offset: int, max_bytes: int, *, verify: bool,
             errors_only: bool = False) -> ScanPage:
        """Walk records of ``volume`` from ``offset`` (a record start) until about
        ``max_bytes`` were covered. With ``verify`` every payload's CRC-32 is checked (the
        scrubber); without, only headers are parsed (the garbage collector). With
        ``errors_only`` the page lists only records whose header or payload failed (an
        operator's check; the scrubber lists every record, to match the metadata's rows
        against them); its counts still cover every record walked.

        The file is read forwards in chunks of ``scan_chunk`` bytes (``ReadAhead``) and the
        records parsed from memory, not with a ``pread`` per header and per payload."""
        size = self._sizes.get(volume)
        if size is None:
            raise RecordNotFound(f"no volume {volume}")
        found: list[ScannedRecord] = []
        covered = walked = walked_bytes = 0
        # A walk that skips payloads reads ahead less far, and not at all past a large one.
        ahead = None if verify else _SKIP_READ_AHEAD
        fd = self._hold_fd(volume)
        try:
            chunks = ReadAhead(fd, self.scan_chunk, min(size, offset + max_bytes))
            while offset < size and covered < max_bytes:
                head = chunks.read(offset, _HEAD_WINDOW, ahead=ahead)
                walked += 1
                try:
                    header = record.parse_header(head)
                except record.CorruptRecord:
                    resume = self._resync(fd, offset + 1, size)
                    found.append(ScannedRecord(offset, b"", resume - offset, "corrupt-record"))
                    walked_bytes += resume - offset
                    covered += resume - offset
                    offset = resume
                    continue
                step = header.size
                error = None
                if verify:
                    start = offset + record.HEADER_SIZE + len(header.fragment_id)
                    crc, got = chunks.crc32(start, header.payload_length)
                    if got != header.payload_length or crc != header.payload_crc:
                        error = "checksum-mismatch"
                else:
                    ahead = _SKIP_READ_AHEAD if step <= _SKIP_LARGE else 0
                if error is not None or not errors_only:
                    found.append(ScannedRecord(offset, header.fragment_id,
                                               header.payload_length, error))
                walked_bytes += header.payload_length
                covered += step
                offset += step
        except OSError as exc:
            raise VolumeError(f"scan of volume {volume} failed: {exc}") from exc
        finally:
            self._let_go(fd)
        return ScanPage(found, offset if offset < size else None, walked, walked_bytes)

    def _resync(self, fd: int, start: int, size: int) -> int:
        """The next offset at or after ``start`` holding a valid record header, else ``size``."""
        position = start
        while position < size:
            chunk = os.pread(fd, 1 << 20, position)
            if not chunk:
                break
            at = chunk.find(record.MAGIC)
            while at >= 0:
                head = os.pread(fd, record.HEADER_SIZE + record.MAX_FRAGMENT_ID, position + at)
                try:
                    record.parse_header(head)
                    return position + at
                except record.CorruptRecord:
                    at = chunk.find(record.MAGIC, at + 1)
            position += max(1, len(chunk) - len(record.MAGIC) + 1)
        return size

    @property
    def active_volume(self) -> int:
        return self._active

    def next_volume_delay(self) -> float:
        """Seconds until the next volume number may be started (0.0: now). Any thread."""
        if self._start_delay is None:
            return 0.0
        return self._start_delay(self._active + 1)

    def seal(self) -> int | None:
        """Start a new active volume if the current one holds anything (writer thread only);
        returns the active volume id afterwards, or ``None`` when the next number is not due
        yet (``next_volume_delay``) and nothing changed."""
        if self._sizes[self._active] > 0:
            if self.next_volume_delay() > 0:
                return None
            if self.fsync:
                os.fdatasync(self._active_fd)
            self._create(self._active + 1)
        return self._active

    def delete(self, volume: int) -> int:
        """Remove a sealed volume file; returns the bytes freed. The active one is refused
        (seal it first) so a delete never races an append."""
        if volume == self._active:
            raise VolumeError(f"volume {volume} is active; seal it before deleting")
        with self._fd_lock:
            size = self._sizes.pop(volume, None)
            if size is None:
                raise RecordNotFound(f"no volume {volume}")
            fd = self._read_fds.pop(volume, None)
            if fd is not None:
                if fd in self._fd_holds:
                    self._fds_of_deleted.add(fd)  # its last holder closes it
                else:
                    os.close(fd)
        try:
            (self.root / volume_name(volume)).unlink()
            if self.fsync:
                self._fsync_dir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise VolumeError(f"could not delete volume {volume}: {exc}") from exc
        return size

    def read_record(self, volume: int, offset: int, length: int,
                    expected_id: bytes) -> bytes:
        """The verified payload of one record (for relocation by the compactor)."""
        return self.read(Address(volume, offset, length), expected_id)[1]
