"""Whether and what to store (RFC 9111 §3, §3.1, §3.5, §5.2.2), pure."""

from __future__ import annotations

from httpcache.cache_control import CacheControl, parse_cache_control, response_directives
from httpcache.freshness import HEURISTICALLY_CACHEABLE, freshness_lifetime
from httpcache.headers import Fields, end_to_end
from httpcache.messages import CacheRequest
from httpcache.policy_config import DEFAULT_POLICY, PolicyConfig
from httpcache.vary import vary_is_star

# The methods whose responses are stored; HEAD shares the key and is served from a stored GET.
CACHEABLE_METHODS = frozenset({"GET", "HEAD"})

# Status codes whose semantics this cache implements (§3: "if the response status code is
# 206 or 304, or the must-understand cache directive is present: the cache understands the
# response status code").
UNDERSTOOD_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 302, 303, 307, 308, 400, 403,
                                 404, 405, 410, 414, 500, 501, 502, 503, 504})

# Complete responses are stored for any final status; a 206 is stored only as a slice of a
# representation (see ``httpcache.slices``) and a 304 only ever updates a stored response.
STORABLE_STATUSES = frozenset(range(200, 600)) - {206, 304}


def request_directives(request: CacheRequest) -> CacheControl:
    return parse_cache_control(request.headers.get("cache-control"))


def has_authorization(request: CacheRequest) -> bool:
    return request.headers.first("authorization") is not None


def surrogate_keys(headers: Fields) -> frozenset[str]:
    """Tags for purge by surrogate key: ``Surrogate-Key`` is a space separated list."""
    return frozenset(" ".join(headers.get_all("surrogate-key")).split())


def allows_authorized_reuse(cc: CacheControl) -> bool:
    """§3.5: "A shared cache MUST NOT use a cached response to a request with an Authorization
    header field ... unless the response contains a Cache-Control field with a response
    directive that allows it to be stored by a shared cache" — must-revalidate, public or
    s-maxage (§5.2.2.2, §5.2.2.9, §5.2.2.10)."""
    return cc.must_revalidate or cc.public or cc.s_maxage is not None


def set_cookie_allowed(cc: CacheControl, config: PolicyConfig) -> bool:
    """A response that sets a cookie is stored only if the tier is configured to (the cookie
    itself is never stored: see ``fields_to_store``) or the origin says the rest of the
    response is shareable by naming the cookie in a qualified ``private``/``no-cache``
    (§5.2.2.7, §5.2.2.4)."""
    if config.cache_set_cookie:
        return True
    return "set-cookie" in (cc.fields_of("private") | cc.fields_of("no-cache"))


def understands_must_understand(status: int, cc: CacheControl) -> bool | None:
    """§5.2.2.3 must-understand: "limits caching of the response to a cache that understands
    and conforms to the requirements for that response's status code" and "a cache that
    understands must-understand ... ignores no-store" (§5.2.2.5). Returns ``None`` when the
    directive is absent, else whether we may store (understood status)."""
    if not cc.must_understand:
        return None
    return status in UNDERSTOOD_STATUSES


def has_explicit_or_heuristic_freshness(status: int, headers: Fields, cc: CacheControl,
                                        targeted: bool, shared: bool) -> bool:
    """§3: the response "contains ... a public response directive; ... an Expires header
    field; a max-age response directive; if the cache is shared: an s-maxage response
    directive; ... a status code that is defined as heuristically cacheable"."""
    return (cc.public
            or (not targeted and headers.first("expires") is not None)
            or cc.max_age is not None
            or (shared and cc.s_maxage is not None)
            or status in HEURISTICALLY_CACHEABLE)


def no_store_applies(status: int, cc: CacheControl) -> bool:
    """no-store (§5.2.2.5) unless must-understand with an understood status overrides it."""
    understood = understands_must_understand(status, cc)
    if understood is True:
        return False
    return cc.no_store


def is_storable(request: CacheRequest, status: int, headers: Fields,
                config: PolicyConfig = DEFAULT_POLICY, *, partial: bool = False) -> bool:
    """§3: "A cache MUST NOT store a response to a request unless: the request method is
    understood by the cache; the response status code is final; if the response status code
    is 206 or 304, or the must-understand cache directive is present: the cache understands
    the response status code; the no-store cache directive is not present in the response;
    if the cache is shared: the private response directive is either not present or allows a
    shared cache to store a modified response; if the cache is shared: the Authorization
    header field is not present in the request or a response directive is present that
    explicitly allows shared caching; and the response contains at least one of" the
    freshness sources. §5.2.1.5 (request no-store): "a cache MUST NOT store any part of either
    this request or any response to it". ``Vary: *`` can never be reused (§4.1), so it is not
    stored; Set-Cookie needs ``set_cookie_allowed``. ``partial``: a 206 stored as a slice."""
    if request.method != "GET":
        return False
    if partial:
        if status != 206:
            return False
    elif status not in STORABLE_STATUSES:
        return False
    directives = response_directives(headers, config.targeted_fields)
    cc = directives.cc
    if understands_must_understand(status, cc) is False:
        return False
    if no_store_applies(status, cc) or request_directives(request).no_store:
        return False
    if config.shared and cc.private:
        return False
    if config.shared and has_authorization(request) and not allows_authorized_reuse(cc):
        return False
    if vary_is_star(headers):
        return False
    if headers.first("set-cookie") is not None and not set_cookie_allowed(cc, config):
        return False
    return has_explicit_or_heuristic_freshness(status, headers, cc, directives.targeted,
                                               config.shared)


def is_worth_storing(status: int, headers: Fields, response_time: float,
                     config: PolicyConfig = DEFAULT_POLICY) -> bool:
    """Not an RFC rule, a memory rule: a response that is stale on arrival and has no
    validator could only ever be refetched in full (or served stale on error, which a
    response that was never fresh does not deserve)."""
    if headers.first("etag") is not None or headers.first("last-modified") is not None:
        return True
    return freshness_lifetime(status, headers, response_time, config) > 0


def should_store(request: CacheRequest, status: int, headers: Fields, response_time: float,
                 config: PolicyConfig = DEFAULT_POLICY) -> bool:
    return (is_storable(request, status, headers, config)
            and is_worth_storing(status, headers, response_time, config))


def fields_to_store(headers: Fields, config: PolicyConfig = DEFAULT_POLICY) -> Fields:
    """The header fields kept with a stored response.

    §3.1: "the cache MUST NOT store ... header fields that are hop-by-hop" (incl. those
    listed in Connection); §5.2.2.7 (qualified private): "a shared cache MUST NOT store the
    listed header fields"; §5.2.2.4 (qualified no-cache): the listed fields "MUST NOT" be
    sent in a response to a subsequent request without validation, so they are not stored.
    Set-Cookie is never stored: it belongs to the one client whose request fetched it.
    """
    cc = response_directives(headers, config.targeted_fields).cc
    listed = cc.fields_of("no-cache")
    if config.shared:
        listed |= cc.fields_of("private")
    # the constant is lowered once and memoised by ``without``; listed names (lower-case
    # already, and the origin's to choose) go as strings so they never enter that memo
    return end_to_end(headers).without(_NEVER_STORED, *listed)


_NEVER_STORED = frozenset({"set-cookie", "set-cookie2"})
