"""RFC 9111 caching rules for a shared cache, as pure functions.

Nothing here does I/O or reads a clock: time arrives as ``now`` (seconds since the epoch) and
every function returns a value without changing its inputs. The aiohttp driver
(``httpcache.engine``) asks ``decide`` what to do with a request, does exactly one I/O step for
the answer, and comes back here (``should_store``, ``update_from_304``) with the result.

Each rule is one small function named after the RFC concept, citing the section it implements.
CDN-Cache-Control (RFC 9213) is honoured through ``cache_control.response_directives``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from httpcache.cache_control import (
    DEFAULT_TARGETED_FIELDS,
    CacheControl,
    parse_cache_control,
    response_directives,
)
from httpcache.conditional import entity_tag_matches, parse_entity_tag
from httpcache.dates import parse_http_date
from httpcache.headers import Fields, end_to_end, split_list
from httpcache.messages import CacheRequest, StoredResponse

# RFC 9110 §15.1: "Responses with status codes that are defined as heuristically cacheable".
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})

# Status codes this cache stores. 206 and 304 are partial/validation answers, not complete
# representations (§3.3, §3.4 — combining partial content is not implemented yet).
STORABLE_STATUSES = frozenset(range(200, 600)) - {206, 304}

# The method whose responses are stored; HEAD shares the key and is served from a stored GET.
CACHEABLE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """How this tier applies the RFC where the RFC leaves a choice."""

    shared: bool = True
    targeted_fields: tuple[str, ...] = DEFAULT_TARGETED_FIELDS
    heuristic_fraction: float = 0.1  # §4.2.2 "A typical setting of this fraction might be 10%"
    heuristic_max: float = 86400.0  # cap on heuristic freshness (a day)
    cache_set_cookie: bool = False  # store (without the cookie) responses that set one
    honor_request_no_cache: bool = True  # clients' no-cache/max-age force validation


DEFAULT_POLICY = PolicyConfig()


# ---------------------------------------------------------------------------------------------
# Decisions


@dataclass(frozen=True, slots=True)
class FreshHit:
    """Serve the stored response as is."""

    stored: StoredResponse
    age: float
    ttl: float


@dataclass(frozen=True, slots=True)
class Revalidate:
    """Send a conditional request with ``validators``; a 304 refreshes the stored response."""

    stored: StoredResponse
    validators: Fields
    reason: Literal["stale", "request"]
    collapse: bool = True


@dataclass(frozen=True, slots=True)
class Miss:
    """Fetch from upstream; store the answer if ``store`` and ``should_store`` agree."""

    reason: Literal["uri-miss", "vary-miss", "stale", "request"]
    collapse: bool = True
    store: bool = True


@dataclass(frozen=True, slots=True)
class Pass:
    """Forward to upstream unchanged and store nothing (fwd=method/bypass/request)."""

    reason: Literal["method", "bypass", "request"]


@dataclass(frozen=True, slots=True)
class GatewayTimeout:
    """``only-if-cached`` with nothing usable stored: §5.2.1.7 "respond with a status code of
    504 (Gateway Timeout)"."""


Decision = FreshHit | Revalidate | Miss | Pass | GatewayTimeout


# ---------------------------------------------------------------------------------------------
# Small helpers


def request_directives(request: CacheRequest) -> CacheControl:
    return parse_cache_control(request.headers.get("cache-control"))


def has_authorization(request: CacheRequest) -> bool:
    return request.headers.first("authorization") is not None


def surrogate_keys(headers: Fields) -> frozenset[str]:
    """Tags for purge by surrogate key: ``Surrogate-Key`` is a space separated list."""
    return frozenset(" ".join(headers.get_all("surrogate-key")).split())


def vary_field_names(headers: Fields) -> list[str]:
    return [n.lower() for n in split_list(headers.get("vary"))]


# ---------------------------------------------------------------------------------------------
# Storing responses (RFC 9111 §3)


def allows_authorized_reuse(cc: CacheControl) -> bool:
    """§3.5: "A shared cache MUST NOT use a cached response to a request with an Authorization
    header field ... unless the response contains a Cache-Control field with a response
    directive that allows it to be stored by a shared cache" — must-revalidate, public or
    s-maxage."""
    return cc.must_revalidate or cc.public or cc.s_maxage is not None


def set_cookie_allowed(cc: CacheControl, config: PolicyConfig) -> bool:
    """A response that sets a cookie is per-user. We store it only if the tier is configured
    to, or if the origin says so explicitly by naming the cookie in a qualified ``private`` or
    ``no-cache`` (§5.2.2.7/§5.2.2.4: the rest of the response is then shareable). The cookie
    itself is never stored (see ``fields_to_store``), so it is never served to others."""
    if config.cache_set_cookie:
        return True
    return "set-cookie" in (cc.fields_of("private") | cc.fields_of("no-cache"))


def has_explicit_or_heuristic_freshness(
    status: int, headers: Fields, cc: CacheControl, targeted: bool, shared: bool
) -> bool:
    """§3: the response "contains ... a public response directive; ... an Expires header
    field; a max-age response directive; if the cache is shared: an s-maxage response
    directive; ... a status code that is defined as heuristically cacheable"."""
    return (
        cc.public
        or (not targeted and headers.first("expires") is not None)
        or cc.max_age is not None
        or (shared and cc.s_maxage is not None)
        or status in HEURISTICALLY_CACHEABLE
    )


def is_storable(
    request: CacheRequest, status: int, headers: Fields, config: PolicyConfig = DEFAULT_POLICY
) -> bool:
    """§3: "A cache MUST NOT store a response to a request unless" the method is understood
    and cacheable, the status is final, ``no-store`` is absent from request and response,
    ``private`` is absent for a shared cache, Authorization is allowed (§3.5), and the
    response has explicit or heuristic freshness. We add: ``Vary: *`` never matches (§4.1)
    so storing it is useless, and Set-Cookie needs explicit permission."""
    if request.method != "GET" or status not in STORABLE_STATUSES:
        return False
    directives = response_directives(headers, config.targeted_fields)
    cc = directives.cc
    if cc.no_store or request_directives(request).no_store:
        return False
    if config.shared and cc.private:
        return False
    if config.shared and has_authorization(request) and not allows_authorized_reuse(cc):
        return False
    if "*" in vary_field_names(headers):
        return False
    if headers.first("set-cookie") is not None and not set_cookie_allowed(cc, config):
        return False
    return has_explicit_or_heuristic_freshness(
        status, headers, cc, directives.targeted, config.shared)


def is_worth_storing(status: int, headers: Fields, response_time: float,
                     config: PolicyConfig = DEFAULT_POLICY) -> bool:
    """Not an RFC rule, a memory rule: a response that is stale on arrival and has no
    validator could only ever be refetched in full, so keeping it costs memory for nothing."""
    if headers.first("etag") is not None or headers.first("last-modified") is not None:
        return True
    return freshness_lifetime(status, headers, response_time, config) > 0


def should_store(request: CacheRequest, status: int, headers: Fields, response_time: float,
                 config: PolicyConfig = DEFAULT_POLICY) -> bool:
    return (is_storable(request, status, headers, config)
            and is_worth_storing(status, headers, response_time, config))


def fields_to_store(headers: Fields, config: PolicyConfig = DEFAULT_POLICY) -> Fields:
    """The header fields kept with a stored response.

    §3.1: "the cache MUST NOT store ... header fields that are hop-by-hop"; §5.2.2.7 (qualified
    private): "a shared cache MUST NOT store the listed header fields"; §5.2.2.4 (qualified
    no-cache): the listed fields must not be reused without validation, so we drop them too.
    Set-Cookie is never stored: it belongs to the one client whose request fetched it.
    """
    cc = response_directives(headers, config.targeted_fields).cc
    drop = {"set-cookie", "set-cookie2"} | cc.fields_of("no-cache")
    if config.shared:
        drop |= cc.fields_of("private")
    return end_to_end(headers).without(drop)


def selecting_fields(request: CacheRequest, headers: Fields) -> tuple[tuple[str, str | None], ...]:
    """The request's values for the fields the response's ``Vary`` names (§4.1)."""
    return tuple((name, request.headers.get(name)) for name in vary_field_names(headers))


def selecting_fields_match(stored: StoredResponse, request: CacheRequest) -> bool:
    """§4.1: "A cache MUST NOT use a stored response ... unless all the presented request
    header fields nominated by that Vary field value match in both the original request
    (i.e., that associated with the stored response) and the presented request." We compare
    after whitespace normalisation, the conservative reading."""
    return vary_matches(stored.vary, request)


def vary_matches(vary: tuple[tuple[str, str | None], ...], request: CacheRequest) -> bool:
    """``selecting_fields_match`` for a response not stored yet (a collapsed fetch)."""
    return all(_normalise(request.headers.get(name)) == _normalise(value)
               for name, value in vary)


def _normalise(value: str | None) -> str | None:
    return None if value is None else ",".join(split_list(value)).lower()


def make_stored_response(
    cache_key: str,
    request: CacheRequest,
    status: int,
    headers: Fields,
    body: bytes,
    request_time: float,
    response_time: float,
    config: PolicyConfig = DEFAULT_POLICY,
) -> StoredResponse:
    """The stored form of a response that ``should_store`` accepted."""
    kept = fields_to_store(headers, config)
    return StoredResponse(
        cache_key=cache_key,
        status=status,
        headers=kept,
        body=body,
        request_time=request_time,
        response_time=response_time,
        surrogate_keys=surrogate_keys(kept),
        vary=selecting_fields(request, headers),
    )


# ---------------------------------------------------------------------------------------------
# Freshness (RFC 9111 §4.2)


def freshness_lifetime(status: int, headers: Fields, response_time: float,
                       config: PolicyConfig = DEFAULT_POLICY) -> float:
    """§4.2.1: the first of: s-maxage (shared caches), max-age, Expires minus Date, then a
    heuristic (§4.2.2). "When there is more than one value present for a given directive ...
    the directive's value is considered invalid" — the parser keeps the first instead.

    With CDN-Cache-Control in use, RFC 9213 §2.1 says the cache "MUST ignore the
    Cache-Control and Expires header fields", so Expires is skipped then.
    """
    directives = response_directives(headers, config.targeted_fields)
    cc = directives.cc
    if config.shared and cc.s_maxage is not None:
        return float(cc.s_maxage)
    if cc.max_age is not None:
        return float(cc.max_age)
    if not directives.targeted and headers.first("expires") is not None:
        return expires_lifetime(headers, response_time)
    if status in HEURISTICALLY_CACHEABLE or cc.public:
        return heuristic_freshness(headers, response_time, config)
    return 0.0


def expires_lifetime(headers: Fields, response_time: float) -> float:
    """§4.2.1: "use its value minus the value of the Date response header field (using the
    time the message was received if it is not present)". §5.3: "A cache recipient MUST
    interpret invalid date formats, especially the value "0", as representing a time in the
    past (i.e., "already expired")."""
    expires = parse_http_date(headers.first("expires"))
    if expires is None:
        return 0.0
    date = parse_http_date(headers.first("date"))
    return max(0.0, expires - (date if date is not None else response_time))


def heuristic_freshness(headers: Fields, response_time: float,
                        config: PolicyConfig = DEFAULT_POLICY) -> float:
    """§4.2.2: "If the response has a Last-Modified header field, caches are encouraged to use
    a heuristic expiration value that is no more than some fraction of the interval since
    that time. A typical setting of this fraction might be 10%." Capped at
    ``config.heuristic_max``; no Last-Modified means no heuristic freshness."""
    last_modified = parse_http_date(headers.first("last-modified"))
    if last_modified is None:
        return 0.0
    date = parse_http_date(headers.first("date"))
    base = date if date is not None else response_time
    return min(max(0.0, (base - last_modified) * config.heuristic_fraction), config.heuristic_max)


def age_value(headers: Fields) -> float:
    """The ``Age`` field as delta-seconds (§5.1); invalid or absent is 0."""
    raw = headers.first("age")
    try:
        return float(max(0, int(raw))) if raw is not None else 0.0
    except ValueError:
        return 0.0


def apparent_age(headers: Fields, response_time: float) -> float:
    """§4.2.3: ``apparent_age = max(0, response_time - date_value)``; without a Date the
    response was generated when received (RFC 9110 §6.6.1)."""
    date = parse_http_date(headers.first("date"))
    return max(0.0, response_time - (date if date is not None else response_time))


def corrected_age_value(headers: Fields, request_time: float, response_time: float) -> float:
    """§4.2.3: ``response_delay = response_time - request_time``;
    ``corrected_age_value = age_value + response_delay``."""
    return age_value(headers) + max(0.0, response_time - request_time)


def resident_time(response_time: float, now: float) -> float:
    """§4.2.3: ``resident_time = now - response_time``."""
    return max(0.0, now - response_time)


def current_age(headers: Fields, request_time: float, response_time: float, now: float) -> float:
    """§4.2.3: ``corrected_initial_age = max(apparent_age, corrected_age_value)``;
    ``current_age = corrected_initial_age + resident_time``."""
    corrected_initial_age = max(apparent_age(headers, response_time),
                                corrected_age_value(headers, request_time, response_time))
    return corrected_initial_age + resident_time(response_time, now)


def stored_age(stored: StoredResponse, now: float) -> float:
    return current_age(stored.headers, stored.request_time, stored.response_time, now)


def stored_lifetime(stored: StoredResponse, config: PolicyConfig = DEFAULT_POLICY) -> float:
    return freshness_lifetime(stored.status, stored.headers, stored.response_time, config)


def is_fresh(lifetime: float, age: float) -> bool:
    """§4.2: "response_is_fresh = (freshness_lifetime > current_age)"."""
    return lifetime > age


# ---------------------------------------------------------------------------------------------
# Validation (RFC 9111 §4.3)


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
    strong validator ... If none of the stored responses contain the same strong validator,
    then the cache MUST NOT use the new response to update any stored responses"; a weak
    validator must correspond (weak comparison). A 304 without validators updates the
    response we asked about — the request carried its validators, so it can only refer to it
    (the RFC limits this to stored responses without validators; we follow common practice)."""
    new_etag = headers_304.first("etag")
    if new_etag is not None:
        new = parse_entity_tag(new_etag)
        old = parse_entity_tag(stored.headers.first("etag") or "")
        if new is None or old is None:
            return False
        return entity_tag_matches(new, old, weak=new.weak)
    new_lm = headers_304.first("last-modified")
    if new_lm is not None:
        return parse_http_date(new_lm) == parse_http_date(stored.headers.first("last-modified"))
    return True


# §3.2: fields a 304 must not overwrite. Content-Length describes the stored body, not the 304.
_NOT_UPDATED_BY_304 = frozenset({"content-length"})


def update_from_304(
    stored: StoredResponse,
    headers_304: Fields,
    request_time: float,
    response_time: float,
    config: PolicyConfig = DEFAULT_POLICY,
) -> StoredResponse:
    """§4.3.4: the cache "MUST ... use other header fields provided in the 304 (Not Modified)
    response to replace all instances of the corresponding header fields in the stored
    response" (with §3.2's exceptions: fields not stored per §3.1 and Content-Length).

    Returns a new ``StoredResponse``; ``stored`` is not changed. The age calculation restarts
    from this exchange, so a stored ``Age``/``Date`` the 304 does not repeat is dropped rather
    than left to make the refreshed response look as old as the first one. A soft purge mark
    is cleared: the response has just been validated.
    """
    incoming = fields_to_store(headers_304, config).without(_NOT_UPDATED_BY_304)
    replaced = incoming.names() | {"age", "date"}
    merged = Fields([*stored.headers.without(replaced), *incoming])
    return dataclasses.replace(
        stored,
        headers=merged,
        request_time=request_time,
        response_time=response_time,
        surrogate_keys=surrogate_keys(merged),
        invalidated=False,
    )


# ---------------------------------------------------------------------------------------------
# Invalidation (RFC 9111 §4.4)


def invalidates(method: str, status: int) -> bool:
    """§4.4: "A cache MUST invalidate the target URI ... when it receives a non-error status
    code in response to an unsafe request method"."""
    return method not in {"GET", "HEAD", "OPTIONS", "TRACE"} and 200 <= status < 400


def invalidated_paths(headers: Fields) -> list[str]:
    """§4.4: "A cache MAY invalidate other URIs" — the Location and Content-Location targets,
    when they are same-origin paths (absolute URLs might name another host: skipped)."""
    paths = []
    for name in ("location", "content-location"):
        value = headers.first(name)
        if value and value.startswith("/") and not value.startswith("//"):
            paths.append(value)
    return paths


# ---------------------------------------------------------------------------------------------
# The decision (RFC 9111 §4 "Constructing Responses from Caches")


def requires_validation(
    stored: StoredResponse, request: CacheRequest, age: float, lifetime: float,
    config: PolicyConfig,
) -> Literal["stale", "request"] | None:
    """Why ``stored`` cannot be reused without validation, or ``None`` if it can.

    §4: the stored response must be "fresh", or "allowed to be served stale" (not implemented
    yet: we never serve stale), and must not contain "the no-cache directive (Section
    5.2.2.4)" — "the cache MUST NOT use the response to satisfy a subsequent request without
    successful validation on the origin server". Request no-cache (§5.2.1.4) and max-age
    (§5.2.1.1) / min-fresh (§5.2.1.3) tighten this when the tier honours clients' directives.
    A soft purge marks the response invalid, which also forces validation.
    """
    if stored.invalidated:
        return "stale"
    cc = response_directives(stored.headers, config.targeted_fields).cc
    if cc.no_cache:
        return "stale"
    if config.honor_request_no_cache:
        req = request_directives(request)
        if req.has("no-cache") or (req.max_age is not None and age > req.max_age):
            return "request"
        if req.min_fresh is not None and lifetime - age < req.min_fresh:
            return "request"
        if "no-cache" in split_list((request.headers.get("pragma") or "").lower()):
            return "request"  # §5.4: Pragma: no-cache without Cache-Control
    if not is_fresh(lifetime, age):
        return "stale"
    return None


def decide(
    request: CacheRequest,
    stored: StoredResponse | None,
    now: float,
    config: PolicyConfig = DEFAULT_POLICY,
) -> Decision:
    """What to do with ``request`` given what is stored for its cache key."""
    if request.method not in CACHEABLE_METHODS:
        return Pass("method")
    if request.headers.first("if-match") or request.headers.first("if-unmodified-since"):
        # §4.3.2: such preconditions "are likely intended for some other (inbound) server".
        return Pass("request")
    req_cc = request_directives(request)
    authorized = has_authorization(request)
    reason: Literal["uri-miss", "vary-miss"] = "uri-miss"
    if stored is not None and not selecting_fields_match(stored, request):
        stored, reason = None, "vary-miss"
    if stored is not None and authorized and config.shared:
        cc = response_directives(stored.headers, config.targeted_fields).cc
        if not allows_authorized_reuse(cc):
            return Pass("bypass")
    if stored is None:
        if req_cc.only_if_cached:
            return GatewayTimeout()
        if req_cc.no_store:
            return Pass("request")
        cacheable = request.method == "GET"
        return Miss(reason, collapse=cacheable and not authorized, store=cacheable)

    age = stored_age(stored, now)
    lifetime = stored_lifetime(stored, config)
    why = requires_validation(stored, request, age, lifetime, config)
    if why is None:
        return FreshHit(stored, age=age, ttl=lifetime - age)
    if req_cc.only_if_cached:
        return GatewayTimeout()
    validators = validators_for(stored)
    if not validators:
        cacheable = request.method == "GET"
        return Miss(why, collapse=cacheable and not authorized,
                    store=cacheable and not req_cc.no_store)
    return Revalidate(stored, validators, why, collapse=not authorized)
