"""Entity-tag comparison and clients' conditional requests answered from cache (pure).

RFC 9110 §13.1 defines the preconditions; RFC 9111 §4.3.2 says which a cache evaluates: "the
cache MUST use If-None-Match ... if present, otherwise If-Modified-Since" against the stored
response it would otherwise send.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from httpcache.dates import parse_http_date
from httpcache.headers import Fields
from httpcache.messages import CacheRequest
from httpcache.ranges import ByteRange, Unsatisfiable, parse_ranges

_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')


@dataclass(frozen=True, slots=True)
class EntityTag:
    opaque: str
    weak: bool = False


def parse_entity_tag(value: str) -> EntityTag | None:
    match = _ENTITY_TAG.fullmatch(value)
    if not match:
        return None
    return EntityTag(match.group(2), weak=bool(match.group(1)))


def parse_entity_tag_list(value: str) -> list[EntityTag] | None:
    """Members of ``If-None-Match``/``If-Match``; ``None`` stands for ``*``."""
    if value.strip() == "*":
        return None
    return [tag for tag in (parse_entity_tag(m.group(0)) for m in
                            re.finditer(r'\s*(?:W/)?"[^"]*"\s*', value)) if tag]


def strong_compare(a: EntityTag, b: EntityTag) -> bool:
    """RFC 9110 §8.8.3.2: "two entity tags are equivalent if both are not weak and their
    opaque-tags match character-by-character"."""
    return not a.weak and not b.weak and a.opaque == b.opaque


def weak_compare(a: EntityTag, b: EntityTag) -> bool:
    """RFC 9110 §8.8.3.2: "two entity tags are equivalent if their opaque-tags match
    character-by-character, regardless of either or both being tagged as 'weak'"."""
    return a.opaque == b.opaque


def entity_tag_matches(a: EntityTag, b: EntityTag, *, weak: bool) -> bool:
    return weak_compare(a, b) if weak else strong_compare(a, b)


def if_none_match_passes(condition: str, etag: str | None) -> bool:
    """RFC 9110 §13.1.2: "the condition is false if the field value is "*" and the target
    resource has a current representation ... or if one of the listed tags matches the entity
    tag of the selected representation" using "the weak comparison function"."""
    tags = parse_entity_tag_list(condition)
    if tags is None:
        return False
    current = parse_entity_tag(etag) if etag else None
    if current is None:
        return True
    return not any(weak_compare(tag, current) for tag in tags)


def if_modified_since_passes(condition: str, last_modified: str | None) -> bool:
    """RFC 9110 §13.1.3: "the condition is false if the selected representation's last
    modification date is earlier or equal to the date provided in the field value". An
    invalid date or a missing Last-Modified makes the condition true (send the content)."""
    since = parse_http_date(condition)
    modified = parse_http_date(last_modified)
    if since is None or modified is None:
        return True
    return modified > since


def not_modified(method: str, request_headers: Fields, status: int, headers: Fields) -> bool:
    """Whether a stored ``status``/``headers`` answer to this request should be 304.

    Only for GET/HEAD and a stored 200 (RFC 9110 §13.2.1: preconditions apply when the
    response would otherwise be 2xx). If-None-Match wins over If-Modified-Since (§13.1.3: "A
    recipient MUST ignore If-Modified-Since if the request contains an If-None-Match header
    field")."""
    if method not in ("GET", "HEAD") or status != 200:
        return False
    inm = request_headers.get("if-none-match")
    if inm is not None:
        return not if_none_match_passes(inm, headers.first("etag"))
    ims = request_headers.first("if-modified-since")
    if ims is not None:
        return not if_modified_since_passes(ims, headers.first("last-modified"))
    return False


def if_range_matches(condition: str, headers: Fields) -> bool:
    """RFC 9110 §13.1.5: an entity-tag If-Range needs a strong match ("A recipient MUST use
    the strong comparison function"); a date must equal Last-Modified exactly."""
    condition = condition.strip()
    if condition.startswith(('"', "W/")):
        given = parse_entity_tag(condition)
        current = parse_entity_tag(headers.first("etag") or "")
        return bool(given and current and strong_compare(given, current))
    since = parse_http_date(condition)
    modified = parse_http_date(headers.first("last-modified"))
    return since is not None and since == modified


# Fields a 304 carries. RFC 9110 §15.4.5: "the server generating a 304 response MUST generate
# any of the following header fields that would have been sent in a 200 (OK) response:
# Content-Location, Date, ETag, and Vary; Cache-Control and Expires" and "SHOULD NOT generate
# representation metadata other than the above listed fields unless said metadata exists for
# the purpose of guiding cache updates". Our 304s do guide cache updates: the next tier (an
# edge behind a shield, a browser) refreshes its stored headers from them (RFC 9111 §4.3.4),
# so every stored field is sent except the framing of the body this 304 does not have.
NOT_IN_304 = frozenset({"content-length", "content-range", "transfer-encoding"})


def not_modified_fields(headers: Fields) -> Fields:
    return headers.without(NOT_IN_304)


def requested_ranges(creq: CacheRequest, status: int, headers: Fields,
                     length: int) -> list[ByteRange] | Unsatisfiable | None:
    """The ranges to serve from a complete 200, if the client asked for some and its
    If-Range (RFC 9110 §13.1.5) still holds."""
    requested = creq.headers.first("range")
    if status != 200 or requested is None or creq.method != "GET":
        return None
    if_range = creq.headers.first("if-range")
    if if_range is not None and not if_range_matches(if_range, headers):
        return None
    return parse_ranges(requested, length)
