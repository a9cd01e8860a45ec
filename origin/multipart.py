"""Multipart upload rules and arithmetic (pure: no I/O, no clock).

A completed multipart object is the concatenation of its parts' data; each part stays the
erasure-coded blob it was uploaded as. ``part_ranges`` maps a byte range of the object onto
the parts it touches, ``check_completion`` is S3's validation of CompleteMultipartUpload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from origin.errors import EntityTooSmall, InvalidArgument, InvalidPart, InvalidPartOrder

MIN_PART_SIZE = 5 << 20  # S3: every part but the last is at least 5 MiB
MAX_PART_NUMBER = 10_000


@dataclass(frozen=True)
class UploadedPart:
    number: int
    etag: str  # MD5 hex, no quotes
    size: int


@dataclass(frozen=True)
class PartSpan:
    """Bytes ``first..last`` (inclusive, part-local) of part ``index`` in the object's list."""

    index: int
    first: int
    last: int


def check_part_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PART_NUMBER:
        raise InvalidArgument(f"Part number must be an integer between 1 and "
                              f"{MAX_PART_NUMBER}, inclusive")
    return number


def multipart_etag(part_md5_hexes: Sequence[str]) -> str:
    """``<md5 of the concatenated binary part MD5s>-<number of parts>``."""
    digest = hashlib.md5(b"".join(bytes.fromhex(h) for h in part_md5_hexes)).hexdigest()
    return f"{digest}-{len(part_md5_hexes)}"


def check_completion(
    requested: Sequence[tuple[int, str]],
    uploaded: Mapping[int, UploadedPart],
    *,
    min_part_size: int = MIN_PART_SIZE,
) -> list[UploadedPart]:
    """The parts a CompleteMultipartUpload names, in order, after S3's checks: at least one
    part, part numbers strictly ascending, each uploaded with that ETag, every part but the
    last at least ``min_part_size`` bytes."""
    if not requested:
        raise InvalidArgument("You must specify at least one part")
    chosen: list[UploadedPart] = []
    previous = 0
    for number, etag in requested:
        if number <= previous:
            raise InvalidPartOrder()
        previous = number
        part = uploaded.get(number)
        if part is None or part.etag != etag.strip().strip('"').lower():
            raise InvalidPart(f"part {number} was not uploaded or its ETag is not {etag}")
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < min_part_size:
            raise EntityTooSmall(f"part {part.number} is {part.size} bytes; every part but "
                                 f"the last must be at least {min_part_size} bytes")
    return chosen


def part_offsets(sizes: Sequence[int]) -> list[int]:
    """Where each part starts in the object."""
    offsets, position = [], 0
    for size in sizes:
        offsets.append(position)
        position += size
    return offsets


def part_ranges(sizes: Sequence[int], first: int, last: int) -> list[PartSpan]:
    """The part-local byte spans covering object bytes ``first..last`` (inclusive)."""
    spans = []
    for index, (start, size) in enumerate(zip(part_offsets(sizes), sizes, strict=True)):
        end = start + size - 1
        if size == 0 or end < first or start > last:
            continue
        spans.append(PartSpan(index, max(first, start) - start, min(last, end) - start))
    return spans
