"""Conditional requests and byte ranges for GET/HEAD of an object (pure: no clock, no I/O).

RFC 9110 §13 (conditional requests) and §14 (range requests), reduced to what an object store
with strong ETags needs.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from origin.errors import InvalidRange


class Outcome(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "304"
    PRECONDITION_FAILED = "412"


@functools.lru_cache(maxsize=4096)
def http_date(moment: datetime) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7), e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``. Memoised:
    every GET of an object formats its ``Last-Modified`` again (a pure function of an
    immutable value, so the memo cannot go stale)."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def parse_http_date(value: str) -> datetime | None:
    """A date header as an aware UTC datetime, or ``None`` if it is not a valid date
    (RFC 9110 §13.1.3: an invalid date makes the condition be ignored)."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _entity_tags(value: str) -> list[str]:
    """The opaque tags of a list like ``"a", W/"b"`` (``*`` is returned as ``["*"]``)."""
    if value.strip() == "*":
        return ["*"]
    return re.findall(r'(?:W/)?"([^"]*)"', value)


def _weak_match(header: str, etag: str) -> bool:
    """§8.8.3.2 weak comparison: opaque tags equal, W/ ignored (used by If-None-Match)."""
    tags = _entity_tags(header)
    return "*" in tags or etag in tags


def _strong_match(header: str, etag: str) -> bool:
    """§8.8.3.2 strong comparison (used by If-Match): weak tags in the header never match.
    Our ETags are always strong."""
    if header.strip() == "*":
        return True
    strong = re.findall(r'(?<!W/)"([^"]*)"', header)
    return etag in strong


def _seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def evaluate_preconditions(
    method: str, headers: Mapping[str, str], etag: str, last_modified: datetime
) -> Outcome:
    """RFC 9110 §13.2.2 order of evaluation, for an existing object.

    1. If-Match false → 412 ("the origin server MUST NOT perform the requested method").
    2. else If-Unmodified-Since (only without If-Match) false → 412.
    3. If-None-Match false → 304 for GET/HEAD, else 412.
    4. else If-Modified-Since (GET/HEAD, only without If-None-Match) false → 304.

    ``etag`` is the opaque tag without quotes; dates compare at one-second resolution,
    the resolution of ``Last-Modified``.
    """
    modified = _seconds(last_modified)
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not _strong_match(if_match, etag):
            return Outcome.PRECONDITION_FAILED
    else:
        since = headers.get("If-Unmodified-Since")
        date = parse_http_date(since) if since else None
        if date is not None and modified > date:
            return Outcome.PRECONDITION_FAILED
    safe = method in ("GET", "HEAD")
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if _weak_match(if_none_match, etag):
            return Outcome.NOT_MODIFIED if safe else Outcome.PRECONDITION_FAILED
    elif safe:
        since = headers.get("If-Modified-Since")
        date = parse_http_date(since) if since else None
        if date is not None and modified <= date:
            return Outcome.NOT_MODIFIED
    return Outcome.PROCEED


@dataclass(frozen=True)
class ByteRange:
    """Inclusive ``first``..``last`` byte positions, both within the object."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range of a ``Range`` header, or ``None`` to serve the whole object.

    RFC 9110 §14.2: a server MAY ignore the Range header, and a syntactically invalid one
    is ignored (so are multiple ranges, as S3 does). A valid range with no satisfiable part
    (first position at or past the end, or a zero-length suffix) raises ``InvalidRange``
    (416, §15.5.17).
    """
    if header is None:
        return None
    match = _RANGE.match(header)
    if not match or (not match[1] and not match[2]):
        return None
    if match[1]:
        first = int(match[1])
        last = int(match[2]) if match[2] else size - 1
        if match[2] and last < first:
            return None  # "bytes=5-1" is invalid syntax (§14.1.2), not unsatisfiable
        if first >= size:
            raise InvalidRange(object_size=size)
        return ByteRange(first, min(last, size - 1))
    suffix = int(match[2])
    if suffix == 0 or size == 0:
        raise InvalidRange(object_size=size)
    return ByteRange(max(0, size - suffix), size - 1)


def range_applies(if_range: str | None, etag: str, last_modified: datetime) -> bool:
    """RFC 9110 §13.1.5 If-Range: honour Range only if the validator still matches (a strong
    ETag compare, or a date exactly equal to Last-Modified)."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return not value.startswith("W/") and value == f'"{etag}"'
    date = parse_http_date(value)
    return date is not None and date == _seconds(last_modified)
