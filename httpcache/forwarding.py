"""Which header fields go upstream and which go back to the client (pure).

Requests: RFC 9110 §7.6 — hop-by-hop fields are dropped, ``Via`` is appended ("A proxy MUST
send an appropriate Via header field ... in each message that it forwards"), and the client's
address is appended to ``X-Forwarded-For``. ``Host`` is the upstream's own (aiohttp sets it
from the URL). When the cache fills itself it asks for the complete representation, so the
client's own conditionals and ranges are removed (they are answered from the stored
response instead); a revalidation adds the stored validators.

Responses: the upstream's members of ``Cache-Status`` come first and ours is appended;
``Age`` is replaced by our calculation; tier-private fields (e.g. ``Surrogate-Key`` at the
edge, and always an upstream's ``CDN-Purge-Seq``: ``httpcache.purge_watermark``) are removed.
An answer made from a complete stored response then gets the fields of its kind
(``whole_fields``, ``partial_base`` + ``part_fields``, ``multipart_fields``,
``unsatisfiable_fields``): the engine, the sliced path and the hit path's pre-serialised heads
all build them here.
"""

from __future__ import annotations

from httpcache import purge_watermark
from httpcache.cache_status import CacheStatus, append_cache_status
from httpcache.headers import HOP_BY_HOP, Fields, connection_options
from httpcache.ranges import ByteRange, Unsatisfiable

CLIENT_PRECONDITIONS = frozenset({"if-none-match", "if-modified-since", "if-range", "range",
                                  "if-match", "if-unmodified-since"})

# Never forwarded: framing is redone per hop, Expect is answered by this hop's server.
# ``CDN-Purge-Seq`` is between two tiers: each asks its upstream for itself
_NOT_FORWARDED = frozenset({"host", "expect", purge_watermark.LOWER})


def forward_request_fields(client: Fields, *, via: str, peer: str | None,
                           drop: frozenset[str] = frozenset()) -> Fields:
    """Fields for forwarding a request as is (any method, body framing kept)."""
    return _forwarded(client, via, peer, drop, fill=False)


def fill_request_fields(client: Fields, *, via: str, peer: str | None,
                        drop: frozenset[str] = frozenset(),
                        validators: Fields | None = None) -> Fields:
    """Fields for a GET that fills the cache: no client preconditions, no body framing,
    plus our validators when revalidating (RFC 9111 §4.3.1)."""
    fields = _forwarded(client, via, peer, drop, fill=True)
    if validators:
        fields = Fields([*fields, *validators])
    return fields


def _forwarded(client: Fields, via: str, peer: str | None, drop: frozenset[str], *,
               fill: bool) -> Fields:
    """The client's end-to-end fields (``headers.end_to_end``) without ``_NOT_FORWARDED``,
    ``drop`` and, to ``fill``, the preconditions and body framing; ``Via`` and
    ``X-Forwarded-For`` (with ``peer``) replaced by ours: in one pass over the fields."""
    remove = _request_removals(drop, bool(peer), fill)
    options = connection_options(client)
    if options:
        remove = remove | options
    add = [("Via", _append(client.get("via"), f"1.1 {via}"))]
    if peer:
        add.append(("X-Forwarded-For", _append(client.get("x-forwarded-for"), peer)))
    return client.replaced(remove, add)


def client_response_fields(upstream: Fields, status: CacheStatus, *, via: str,
                           age: int | None = None,
                           strip: frozenset[str] = frozenset()) -> Fields:
    """Fields sent to our client for a response that came from ``upstream`` or the store:
    without ``strip``, with ``Age`` (when given) and ``Via`` replaced by ours and our
    ``Cache-Status`` member after the upstream's."""
    add = []
    if age is not None:
        add.append(("Age", str(age)))
    add.append(("Via", _append(upstream.get("via"), f"1.1 {via}")))
    add.append(("Cache-Status", append_cache_status(upstream.get("cache-status"), status)))
    if status.purge_seq is not None:
        add.append((purge_watermark.FIELD, str(status.purge_seq)))
    return upstream.replaced(_response_removals(strip, age is not None), add)


_FILL_REMOVES = CLIENT_PRECONDITIONS | {"content-length", "content-type"}
_REMOVALS: dict[tuple[frozenset[str], bool, bool], frozenset[str]] = {}
_RESPONSE_REMOVALS: dict[tuple[frozenset[str], bool], frozenset[str]] = {}


def _request_removals(drop: frozenset[str], peer: bool, fill: bool) -> frozenset[str]:
    key = (drop, peer, fill)
    found = _REMOVALS.get(key)
    if found is None:
        if len(_REMOVALS) > 256:  # config sets only: stay bounded all the same
            _REMOVALS.clear()
        found = _REMOVALS[key] = frozenset(
            {n.lower() for n in drop} | HOP_BY_HOP | _NOT_FORWARDED | {"via"}
            | ({"x-forwarded-for"} if peer else set()) | (_FILL_REMOVES if fill else set()))
    return found


def _response_removals(strip: frozenset[str], age: bool) -> frozenset[str]:
    found = _RESPONSE_REMOVALS.get((strip, age))
    if found is None:
        if len(_RESPONSE_REMOVALS) > 256:
            _RESPONSE_REMOVALS.clear()
        found = _RESPONSE_REMOVALS[strip, age] = frozenset(
            {n.lower() for n in strip} | {"cache-status", "via", purge_watermark.LOWER}
            | ({"age"} if age else set()))
    return found


def whole_fields(fields: Fields, status: int, length: int) -> Fields:
    """A complete response of ``length`` bytes (a 204 has no Content-Length: RFC 9110
    §8.6 "MUST NOT"); a 200 says ranges of it are served (``Accept-Ranges: bytes``, RFC 9110
    §14.3) unless the upstream said otherwise."""
    if status == 204:
        return fields.without("content-length")
    fields = fields.with_field("Content-Length", str(length))
    if status == 200 and "accept-ranges" not in fields:
        fields = fields.appended("Accept-Ranges", "bytes")
    return fields


def partial_base(fields: Fields) -> Fields:
    """The fields every single-part 206 of a response shares (``part_fields`` adds the rest);
    the hit path makes it once per stored response."""
    return fields.without("content-range", "content-length")


def part_fields(base: Fields, part: ByteRange) -> Fields:
    """A 206 with one part (RFC 9110 §14.4), from ``partial_base(fields)``."""
    return base.appended("Content-Range", part.content_range()).appended(
        "Content-Length", str(part.size))


def multipart_fields(fields: Fields, content_type: str) -> Fields:
    """A 206 with several parts: ``multipart/byteranges`` (RFC 9110 §14.6), length unknown
    up front."""
    return fields.without("content-range", "content-length").with_field("Content-Type",
                                                                         content_type)


def unsatisfiable_fields(fields: Fields, bad: Unsatisfiable) -> Fields:
    """A 416: no body, so no representation metadata; ``Content-Range: bytes */length``."""
    return fields.without("content-type", "content-encoding").with_field(
        "Content-Range", bad.content_range()).with_field("Content-Length", "0")


def _append(existing: str | None, member: str) -> str:
    return f"{existing}, {member}" if existing else member

