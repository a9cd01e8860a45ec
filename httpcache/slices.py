"""Large objects cached in fixed slices (RFC 9111 §3.3–3.4, RFC 9110 §14, §15.3.7), pure.

A *sliced* object is stored as:

* a **representation record**: a ``StoredResponse`` with status 200, the representation's
  header fields (``Content-Length`` = the complete length, no ``Content-Range``), an empty
  body and ``slot=RECORD_SLOT``. Its freshness is the object's freshness (``policy.decide``
  runs on it unchanged);
* **slice entries**: ``StoredResponse``s with status 206 holding the bytes
  ``index * size .. min((index + 1) * size, total) - 1``, in slot ``slice_slot(rep, size,
  index)``. The slot names the representation (strong validator and complete length), so a
  slice of another representation can never be taken for one of this one, and a record that
  is refetched unchanged finds its slices again.

Both share the cache key, path and surrogate keys of the object, so purges by tag, URL or
prefix and invalidations remove them with the rest (``httpcache.store``).

When slicing applies (``httpcache.slice_driver``): a GET carrying ``Range`` whose cache key
has no stored complete response, or any GET/HEAD of a key that has a representation record.
A full GET of an object never seen is fetched whole, as before (a full read is the common
case for small objects and one request is cheapest); its ranges are then served from that.

Combining (§3.4): "A cache MAY combine these ranges into a single stored response ... if they
all share the same strong validator"; "When combining the new response with one or more
stored responses, a cache MUST use the header fields provided in the new response, aside
from Content-Range, to replace all instances of the corresponding header fields in the
stored response" (``combined_fields``). A 206 is only stored as a slice if it names a strong
validator (a strong ETag, or a Last-Modified at least 60 seconds before its Date: RFC 9110
§8.8.2.2), a complete length and exactly the slice's span; otherwise it is relayed, not
stored (§3.3: "a cache MUST NOT store incomplete or partial-content responses if it does not
support the Range and Content-Range header fields").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from httpcache.conditional import parse_entity_tag
from httpcache.dates import parse_http_date
from httpcache.headers import Fields
from httpcache.ranges import ByteRange

RECORD_SLOT = "#slices"
MiB = 1024 * 1024
DEFAULT_SLICE_SIZE = MiB  # the origin's default EC segment size
MIN_SLICE_SIZE = 16 * 1024

_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.IGNORECASE)
_RANGE_START = re.compile(r"\s*(\d+)\s*-\s*\d*\s*")


@dataclass(frozen=True, slots=True)
class ContentRange:
    """A parsed ``Content-Range: bytes first-last/length`` (RFC 9110 §14.4); ``length`` is
    ``None`` for ``*`` (unknown)."""

    first: int
    last: int
    length: int | None

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def parse_content_range(value: str | None) -> ContentRange | None:
    """§14.4: "a byte-range-resp ... is invalid if the last-pos value is less than the
    first-pos value, or a complete-length value is less than or equal to the last-pos"."""
    if not value:
        return None
    match = _CONTENT_RANGE.fullmatch(value)
    if not match:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    length = None if match.group(3) == "*" else int(match.group(3))
    if last < first or (length is not None and length <= last):
        return None
    return ContentRange(first, last, length)


@dataclass(frozen=True, slots=True)
class Representation:
    """What identifies one representation for combining: its strong validator and length."""

    validator: str  # 'etag:"…"' or 'lm:<epoch seconds>'
    total: int

    @property
    def token(self) -> str:
        return f"{self.validator}/{self.total}"


# RFC 9110 §8.8.2.2: a cache may treat Last-Modified as strong when "the presented
# Last-Modified time is at least 60 seconds before the Date value".
LAST_MODIFIED_STRONG_AFTER = 60


def strong_validator(headers: Fields) -> str | None:
    """The strong validator of a response, if any (RFC 9110 §8.8.1, §8.8.2.2, §8.8.3)."""
    etag = headers.first("etag")
    if etag is not None:
        parsed = parse_entity_tag(etag)
        if parsed is not None and not parsed.weak:
            return f'etag:"{parsed.opaque}"'
        return None  # a weak or malformed ETag: Last-Modified cannot make it strong
    modified = parse_http_date(headers.first("last-modified"))
    date = parse_http_date(headers.first("date"))
    if modified is not None and date is not None \
            and date - modified >= LAST_MODIFIED_STRONG_AFTER:
        return f"lm:{int(modified)}"
    return None


def representation_of(headers: Fields, total: int | None) -> Representation | None:
    """The representation a response (a 206 with its complete length, or a record whose
    Content-Length is the complete length) belongs to; ``None`` if it cannot be combined."""
    validator = strong_validator(headers)
    if validator is None or total is None:
        return None
    return Representation(validator, total)


def record_representation(record_headers: Fields) -> Representation | None:
    raw = record_headers.first("content-length")
    total = int(raw) if raw is not None and raw.isdigit() else None
    return representation_of(record_headers, total)


@dataclass(frozen=True, slots=True)
class SliceLayout:
    """Fixed slices of ``size`` bytes over a representation of ``total`` bytes."""

    size: int
    total: int

    @property
    def count(self) -> int:
        return -(-self.total // self.size)

    def span(self, index: int) -> tuple[int, int]:
        """Inclusive first and last byte of slice ``index``."""
        first = index * self.size
        return first, min(first + self.size, self.total) - 1

    def indexes(self, first: int, last: int) -> range:
        """The slices bytes ``first..last`` touch."""
        return range(first // self.size, last // self.size + 1)

    def needed(self, parts: list[ByteRange] | None) -> list[int]:
        """Slices to read, in the order they are sent: every slice for the whole
        representation (``parts`` is ``None``), else those the parts touch (each once)."""
        if parts is None:
            return list(range(self.count))
        seen: dict[int, None] = {}
        for part in parts:
            for index in self.indexes(part.first, part.last):
                seen.setdefault(index, None)
        return list(seen)

    def within(self, first: int, last: int) -> range:
        """The slices wholly inside bytes ``first..last``."""
        start = -(-first // self.size)
        stop = (last + 1) // self.size if last + 1 < self.total else self.count
        return range(start, max(start, stop))

    def pieces(self, first: int, last: int) -> list[tuple[int, int, int]]:
        """``(index, offset, end)``: bytes ``offset..end-1`` of each slice, covering the
        representation's bytes ``first..last`` in order."""
        out = []
        for index in self.indexes(first, last):
            start, stop = self.span(index)
            out.append((index, max(first, start) - start, min(last, stop) - start + 1))
        return out


def slice_request_range(size: int, index: int) -> str:
    """The ``Range`` sent upstream for slice ``index`` (the server clamps the last one)."""
    return f"bytes={index * size}-{(index + 1) * size - 1}"


def slice_slot(rep: Representation, size: int, index: int) -> str:
    return f"#slice:{rep.token}:{size}:{index}"


def is_slice_of(content_range: ContentRange | None, layout: SliceLayout, index: int) -> bool:
    """Whether a 206's Content-Range is exactly slice ``index`` of ``layout``."""
    if content_range is None or content_range.length != layout.total:
        return False
    return (content_range.first, content_range.last) == layout.span(index)


def suffix_length(range_value: str | None) -> int | None:
    """``N`` when the Range is one suffix range ``bytes=-N`` (RFC 9110 §14.1.1), N > 0."""
    if not range_value:
        return None
    unit, _, spec = range_value.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    spec = spec.strip()
    if not spec.startswith("-") or not spec[1:].strip().isdigit() or "," in spec:
        return None
    length = int(spec[1:].strip())
    return length or None


def suffix_request_range(size: int, length: int) -> str:
    """The ``Range`` sent upstream for a cold suffix request of ``length`` bytes: a suffix
    too, since the complete length is not known yet, of at least one slice, so it always
    holds the whole last slice (no longer than ``size``) and can be stored as it."""
    return f"bytes=-{max(length, size)}"


def is_suffix_of(content_range: ContentRange | None, total: int) -> bool:
    """Whether a 206 to a suffix request ends at the last byte of a representation of
    ``total`` bytes (then it holds the whole last slice: it was asked for at least one
    slice's worth)."""
    return (content_range is not None and content_range.length == total
            and content_range.last == total - 1)


def first_slice_guess(range_value: str | None, size: int) -> int:
    """Before the complete length is known: the slice holding the first byte the Range
    asks for. (A single suffix range ``-N`` is asked upstream as a suffix instead:
    ``suffix_request_range``; in a list of ranges it counts as slice 0.)"""
    if not range_value:
        return 0
    unit, _, spec = range_value.partition("=")
    if unit.strip().lower() != "bytes":
        return 0
    starts = [int(m.group(1)) for m in (_RANGE_START.fullmatch(s) for s in spec.split(","))
              if m is not None]
    return min(starts) // size if starts else 0


# §3.4 says Content-Range is not carried over; the framing describes one message only.
NOT_COMBINED = frozenset({"content-range", "content-length", "transfer-encoding"})


def combined_fields(stored: Fields | None, new: Fields, total: int) -> Fields:
    """The record's fields after combining a new partial response (§3.4): the new fields,
    "aside from Content-Range", replace the stored ones; Content-Length is the complete
    length (RFC 9110 §15.3.7.3: a complete combined response carries "a Content-Length
    header field that reflects the complete length"); ``Accept-Ranges: bytes`` is added."""
    incoming = new.without(NOT_COMBINED)
    kept = stored.without(incoming.names(), NOT_COMBINED, "age", "date") if stored else Fields()
    merged = Fields([*kept, *incoming]).with_field("Content-Length", str(total))
    if "accept-ranges" not in merged.names():
        merged = merged.appended("Accept-Ranges", "bytes")
    return merged


@dataclass(frozen=True, slots=True)
class SliceCoverage:
    """How much of a request the stored slices cover."""

    needed: int
    cached: int

    @property
    def complete(self) -> bool:
        return self.cached == self.needed

    def forward_reason(self, had_record: bool) -> str | None:
        """RFC 9211 §2.2 ``fwd``: ``partial`` — "The cache was able to select a partial
        response for the request, but it did not contain all of the requested ranges (or
        the request was for the complete response)"; ``uri-miss`` when nothing was stored;
        ``None`` for a hit."""
        if self.complete:
            return None
        return "partial" if had_record else "uri-miss"


# How long a key whose partial responses cannot be stored as slices is remembered as such,
# and how many such keys are remembered (oldest forgotten first).
UNSLICEABLE_TTL = 300.0
UNSLICEABLE_MAX = 4096


class UnsliceableKeys:
    """Keys whose upstream answered a slice request with a 206 that cannot be stored as a
    slice (weak or no validator, no complete length, ``Vary``, ``private``…), so a later
    ranged miss does not ask for a slice again only to throw it away. Each verdict says how
    such a miss is then made: ``whole`` (fetch and store the complete response, the way
    ranged misses went before slicing) or not (forward the client's ``Range``: a complete
    response would not be stored either). Bounded and expiring: an origin may change."""

    def __init__(self, ttl: float = UNSLICEABLE_TTL, max_keys: int = UNSLICEABLE_MAX) -> None:
        self.ttl = ttl
        self.max_keys = max_keys
        self._keys: dict[str, tuple[float, bool]] = {}  # key -> (expires, whole); by age

    def add(self, key: str, now: float, *, whole: bool) -> None:
        self._keys.pop(key, None)
        self._keys[key] = (now + self.ttl, whole)
        while len(self._keys) > self.max_keys:
            del self._keys[next(iter(self._keys))]

    def verdict(self, key: str, now: float) -> bool | None:
        """``None``: not known to be unsliceable; else whether to fetch it whole."""
        found = self._keys.get(key)
        if found is None:
            return None
        if found[0] <= now:
            del self._keys[key]
            return None
        return found[1]

    def discard(self, key: str) -> None:
        self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)
