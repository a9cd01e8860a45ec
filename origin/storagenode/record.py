"""The on-disk record format of a volume file (pure: bytes in, bytes or errors out).

A volume is a sequence of records, each written once and never modified::

    offset  size  field
    0       4     magic  b"CDNF"
    4       1     format version (1)
    5       1     flags (0; reserved for tombstones)
    6       2     fragment id length N (big-endian)
    8       8     payload length L
    16      4     CRC-32 of the payload
    20      4     CRC-32 of bytes 0..19 followed by the fragment id
    24      N     fragment id (opaque UTF-8 chosen by the origin, e.g. "objid/segment/index")
    24+N    L     payload (one erasure-coded fragment)

A fragment's address is ``(volume, offset of the record's first byte, payload length)``. The
header checksum makes a flipped bit anywhere in the header or id detectable, the payload checksum
covers the data, and the lengths let a scrubber or compactor walk a volume record by record
without any index. The fragment id lets a garbage collector ask the metadata "is this still
referenced?" for a record it finds on disk.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

MAGIC = b"CDNF"
VERSION = 1
_HEADER = struct.Struct(">4sBBHQII")
HEADER_SIZE = _HEADER.size  # 24
MAX_FRAGMENT_ID = 256
# _HEADER minus the trailing header checksum.
_CHECKED_PREFIX = HEADER_SIZE - 4


class RecordError(Exception):
    """A record could not be read back as written."""


class CorruptRecord(RecordError):
    """The header is not a valid record header (bad magic/version/header checksum/lengths)."""


class ChecksumMismatch(RecordError):
    """The header is intact but the payload's CRC-32 differs: the data rotted or was torn."""


class FragmentIdMismatch(RecordError):
    """The record is intact but belongs to another fragment than the caller expected."""


class RecordHeader(NamedTuple):
    """A decoded record header (a named tuple: one is made per fragment read)."""

    fragment_id: bytes
    payload_length: int
    payload_crc: int

    @property
    def size(self) -> int:
        """Bytes of the whole record (header + id + payload) on disk."""
        return HEADER_SIZE + len(self.fragment_id) + self.payload_length


def record_size(fragment_id: bytes, payload_length: int) -> int:
    return HEADER_SIZE + len(fragment_id) + payload_length


def encode_header(fragment_id: bytes, payload: bytes | memoryview,
                  payload_crc: int | None = None) -> bytes:
    """Header + fragment id for ``payload``; the payload itself is written right after it.
    ``payload_crc``: the payload's CRC-32 when the caller has just verified it (a batch
    checks each payload against the origin's CRC on arrival), so it is not computed twice."""
    if not 0 < len(fragment_id) <= MAX_FRAGMENT_ID:
        raise ValueError(f"fragment id must be 1..{MAX_FRAGMENT_ID} bytes, "
                         f"got {len(fragment_id)}")
    prefix = struct.pack(">4sBBHQI", MAGIC, VERSION, 0, len(fragment_id), len(payload),
                         zlib.crc32(payload) if payload_crc is None else payload_crc)
    header_crc = zlib.crc32(fragment_id, zlib.crc32(prefix))
    return prefix + struct.pack(">I", header_crc) + fragment_id


def parse_header(buf: bytes | memoryview) -> RecordHeader:
    """Decode and verify the header at the start of ``buf`` (which must include the id)."""
    if len(buf) < HEADER_SIZE:
        raise CorruptRecord(f"{len(buf)} bytes is shorter than a record header")
    magic, version, _flags, id_len, length, payload_crc, header_crc = _HEADER.unpack_from(buf)
    if magic != MAGIC or version != VERSION:
        raise CorruptRecord(f"bad magic/version {bytes(magic)!r}/{version}")
    if len(buf) < HEADER_SIZE + id_len:
        raise CorruptRecord("record truncated inside its fragment id")
    fragment_id = bytes(buf[HEADER_SIZE: HEADER_SIZE + id_len])
    expected = zlib.crc32(fragment_id, zlib.crc32(buf[:_CHECKED_PREFIX]))
    if expected != header_crc:
        raise CorruptRecord("header checksum mismatch")
    return RecordHeader(fragment_id, length, payload_crc)


def parse_record(
    buf: bytes | memoryview, length: int, expected_id: bytes | None = None
) -> tuple[RecordHeader, memoryview]:
    """Verify the record at the start of ``buf`` and return its header and payload.

    ``length`` is the payload length the caller was told at write time; a record that
    disagrees is not the one the caller is looking for.
    """
    header = parse_header(buf)
    if header.payload_length != length:
        raise CorruptRecord(f"record holds {header.payload_length} payload bytes, "
                            f"caller expects {length}")
    start = HEADER_SIZE + len(header.fragment_id)
    payload = memoryview(buf)[start: start + length]
    if len(payload) != length:
        raise CorruptRecord(f"record truncated: {len(payload)} of {length} payload bytes")
    if zlib.crc32(payload) != header.payload_crc:
        raise ChecksumMismatch("payload checksum mismatch")
    if expected_id is not None and header.fragment_id != expected_id:
        raise FragmentIdMismatch(f"record holds fragment {header.fragment_id!r}, "
                                 f"expected {expected_id!r}")
    return header, payload
