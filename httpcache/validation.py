"""Validation: the conditional request a cache sends and what a 304 updates (RFC 9111 §4.3),
pure."""

from __future__ import annotations

import dataclasses

from httpcache.conditional import entity_tag_matches, parse_entity_tag
from httpcache.dates import parse_http_date
from httpcache.headers import Fields
from httpcache.messages import StoredResponse
from httpcache.policy_config import DEFAULT_POLICY, PolicyConfig
from httpcache.storability import fields_to_store, surrogate_keys

# §3.2: "Caches MUST NOT update ... the Content-Length header field" (it describes the stored
# body, not the 304), nor fields the stored response depends upon (its framing and range).
NOT_UPDATED_BY_304 = frozenset({"content-length", "content-range", "content-encoding",
                                "transfer-encoding"})


def validators_for(stored: StoredResponse) -> Fields:
    """§4.3.1: "When generating a conditional request for validation, a cache ... MUST send the
    relevant entity tags (using If-Match, If-None-Match, or If-Range) if the entity tags were
    provided in the stored response(s) being validated" and "SHOULD send the Last-Modified
    value (using If-Modified-Since) if the request is not for a subrange, a single stored
    response is being validated, and that response contains a Last-Modified value"."""
    validators: list[tuple[str, str]] = []
    etag = stored.headers.first("etag")
    if etag is not None:
        validators.append(("If-None-Match", etag))
    last_modified = stored.headers.first("last-modified")
    if last_modified is not None:
        validators.append(("If-Modified-Since", last_modified))
    return Fields(validators)


def response_304_matches(stored: StoredResponse, headers_304: Fields) -> bool:
    """§4.3.4 selects the stored response a 304 updates: "If the new response contains a
    strong validator ..., then that strong validator identifies the selected representation
    for update. All the stored responses with the same strong validator are identified for
    update. If none of the stored responses contain the same strong validator, then the cache
    MUST NOT use the new response to update any stored responses." A weak validator must
    correspond too. "If the new response does not include any form of validator ... and
    there is only one stored response, and that stored response also lacks a validator, then
    that stored response is identified for update" — we also accept a validator-less 304 for
    the response we asked about, since our request carried its validators."""
    if headers_304.first("etag") is not None:
        return _etag_matches(stored, headers_304)
    if headers_304.first("last-modified") is not None:
        return _last_modified_matches(stored, headers_304)
    return True


def head_response_matches(stored: StoredResponse, head_fields: Fields) -> bool:
    """§4.3.5: a 200 answering a HEAD updates a stored GET response "if the stored response
    and HEAD response have matching values for any received validator fields (ETag and
    Last-Modified) and, if the HEAD response has a Content-Length header field, the value of
    Content-Length matches that of the stored response"; "otherwise, the cache SHOULD consider
    the stored response to be stale". Each validator the HEAD response carries must match
    (one the stored response lacks does not); one carrying none matches on its length alone,
    since the section is meant for stored responses without validators ("if the more
    efficient conditional GET request mechanism is not available"). A HEAD response with
    neither validators nor a length says nothing about which body it describes: it does not
    match (the stored response is made stale, never freshened on no evidence)."""
    etag = head_fields.first("etag")
    last_modified = head_fields.first("last-modified")
    length = head_fields.first("content-length")
    if etag is None and last_modified is None and length is None:
        return False
    if etag is not None and not _etag_matches(stored, head_fields):
        return False
    if last_modified is not None and not _last_modified_matches(stored, head_fields):
        return False
    return length is None or length.strip() == str(stored.body_length)


def _etag_matches(stored: StoredResponse, fields: Fields) -> bool:
    """The new ``ETag`` names the stored one (weakly when the new one is weak, §4.3.4)."""
    new = parse_entity_tag(fields.first("etag") or "")
    old = parse_entity_tag(stored.headers.first("etag") or "")
    if new is None or old is None:
        return False
    return entity_tag_matches(new, old, weak=new.weak)


def _last_modified_matches(stored: StoredResponse, fields: Fields) -> bool:
    new = parse_http_date(fields.first("last-modified"))
    return new is not None and new == parse_http_date(stored.headers.first("last-modified"))


def update_from_304(stored: StoredResponse, headers_304: Fields, request_time: float,
                    response_time: float, config: PolicyConfig = DEFAULT_POLICY
                    ) -> StoredResponse:
    """§4.3.4: the cache "MUST ... use other header fields provided in the 304 (Not Modified)
    response to replace all instances of the corresponding header fields in the stored
    response", with §3.2's exceptions: "Header fields excepted from storage in Section 3.1",
    "Header fields that the cache's stored response depends upon" and "The Content-Length
    header field".

    Returns a new ``StoredResponse``; ``stored`` is not changed. The age calculation restarts
    from this exchange, so a stored ``Age``/``Date`` the 304 does not repeat is dropped. A
    soft purge mark is cleared: the response has just been validated.
    """
    incoming = fields_to_store(headers_304, config).without(NOT_UPDATED_BY_304)
    replaced = incoming.names() | {"age", "date"}
    merged = Fields([*stored.headers.without(replaced), *incoming])
    return dataclasses.replace(stored, headers=merged, request_time=request_time,
                               response_time=response_time,
                               surrogate_keys=surrogate_keys(merged), invalidated=False)


def update_from_head(stored: StoredResponse, head_fields: Fields, request_time: float,
                     response_time: float, config: PolicyConfig = DEFAULT_POLICY
                     ) -> StoredResponse:
    """§4.3.5: the stored GET response a HEAD's 200 describes (``head_response_matches``) is
    updated with the HEAD response's header fields as a 304's are (§3.2, ``update_from_304``:
    "the cache MUST use the header fields provided in the HEAD response to update the stored
    response"); any other is marked stale, to be revalidated before it is used again."""
    if head_response_matches(stored, head_fields):
        return update_from_304(stored, head_fields, request_time, response_time, config)
    return dataclasses.replace(stored, invalidated=True)
