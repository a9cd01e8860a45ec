"""Freshness, age and serving stale (RFC 9111 §4.2, §4.2.4; RFC 5861), pure.

Every function takes the time it needs as an argument (``now``, ``response_time``); none
reads a clock or changes its inputs.
"""

from __future__ import annotations

from httpcache.cache_control import CacheControl, response_directives
from httpcache.dates import parse_http_date
from httpcache.headers import Fields
from httpcache.messages import StoredResponse
from httpcache.policy_config import DEFAULT_POLICY, PolicyConfig
from httpcache.records import record

# RFC 9110 §15.1: "Responses with status codes that are defined as heuristically cacheable
# (e.g., 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, and 501 in this
# specification) can be reused by a cache with heuristic expiration".
# Upstream statuses that count as an error for stale-if-error (RFC 5861 §4: "An error is any
# situation that would result in a 500, 502, 503, or 504 HTTP response status code").
ERROR_STATUSES = frozenset({500, 502, 503, 504})

HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414,
                                     501})


def freshness_lifetime(status: int, headers: Fields, response_time: float,
                       config: PolicyConfig = DEFAULT_POLICY) -> float:
    """§4.2.1: "the first match of: If the cache is shared and the s-maxage response
    directive is present, use its value, or If the max-age response directive is present, use
    its value, or If the Expires response header field is present, use its value minus the
    value of the Date response header field ..., or Otherwise, no explicit expiration time is
    present in the response. A heuristic freshness lifetime might be applicable".

    With a targeted field in use, RFC 9213 §2.1 says the cache "MUST ignore the
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
    """§4.2.1: Expires "minus the value of the Date response header field (using the time the
    message was received if it is not present)". §5.3: "A cache recipient MUST interpret
    invalid date formats, especially the value "0", as representing a time in the past" and
    "If a response includes a Cache-Control header field with the max-age directive ..., a
    recipient MUST ignore the Expires header field" (done by ``freshness_lifetime``'s order).
    Several Expires lines: §4.2.1 allows treating the response as stale; we do."""
    lines = headers.get_all("expires")
    if len(lines) != 1:
        return 0.0
    expires = parse_http_date(lines[0])
    if expires is None:
        return 0.0
    return max(0.0, expires - date_value(headers, response_time))


def date_value(headers: Fields, response_time: float) -> float:
    """RFC 9110 §6.6.1: a recipient with a clock "MUST" treat a message without a valid Date
    as if it was generated when received (we use the response time also for invalid dates)."""
    date = parse_http_date(headers.first("date"))
    return date if date is not None else response_time


def heuristic_freshness(headers: Fields, response_time: float,
                        config: PolicyConfig = DEFAULT_POLICY) -> float:
    """§4.2.2: "If the response has a Last-Modified header field, caches are encouraged to use
    a heuristic expiration value that is no more than some fraction of the interval since
    that time. A typical setting of this fraction might be 10%." Capped at
    ``config.heuristic_max``; no Last-Modified means no heuristic freshness."""
    last_modified = parse_http_date(headers.first("last-modified"))
    if last_modified is None:
        return 0.0
    base = date_value(headers, response_time)
    return min(max(0.0, (base - last_modified) * config.heuristic_fraction),
               config.heuristic_max)


def age_value(headers: Fields) -> float:
    """§5.1 ``Age = delta-seconds``; "If the field value is invalid the cache ... MUST NOT
    use" it: a list (``7200, 0``), several lines, a sign or a fraction make it invalid, and
    an invalid Age counts as absent (0)."""
    lines = headers.get_all("age")
    if len(lines) != 1:
        return 0.0
    raw = lines[0].strip()
    if not raw.isdigit() or not raw.isascii():
        return 0.0
    return float(min(int(raw), 2**31))


def apparent_age(headers: Fields, response_time: float) -> float:
    """§4.2.3: ``apparent_age = max(0, response_time - date_value)``."""
    return max(0.0, response_time - date_value(headers, response_time))


def corrected_age_value(headers: Fields, request_time: float, response_time: float) -> float:
    """§4.2.3: ``response_delay = response_time - request_time``;
    ``corrected_age_value = age_value + response_delay``."""
    return age_value(headers) + max(0.0, response_time - request_time)


def resident_time(response_time: float, now: float) -> float:
    """§4.2.3: ``resident_time = now - response_time``."""
    return max(0.0, now - response_time)


def current_age(headers: Fields, request_time: float, response_time: float, now: float) -> float:
    """§4.2.3: ``corrected_initial_age = max(apparent_age, corrected_age_value)``;
    ``current_age = corrected_initial_age + resident_time``. Clock skew between us and the
    origin can only make the age larger (apparent_age is clamped at 0, never negative)."""
    initial = corrected_initial_age(headers, request_time, response_time)
    return initial + resident_time(response_time, now)


def corrected_initial_age(headers: Fields, request_time: float, response_time: float) -> float:
    """§4.2.3: ``corrected_initial_age = max(apparent_age, corrected_age_value)``."""
    return max(apparent_age(headers, response_time),
               corrected_age_value(headers, request_time, response_time))


@record
class StoredView:
    """What the rules derive from a stored response alone, for one ``PolicyConfig``: its
    directives, freshness lifetime and corrected initial age. A stored response never
    changes (updates make a new one), so these are computed once per stored response and
    kept on it (``StoredResponse.memo_policy``); the current age is then
    ``initial_age + resident_time(response_time, now)``, exactly ``current_age``."""

    config: PolicyConfig
    cc: CacheControl
    lifetime: float
    initial_age: float


def stored_view(stored: StoredResponse, config: PolicyConfig = DEFAULT_POLICY) -> StoredView:
    view = stored.memo_policy
    if isinstance(view, StoredView) and (view.config is config or view.config == config):
        return view
    view = StoredView(
        config=config,
        cc=response_directives(stored.headers, config.targeted_fields).cc,
        lifetime=freshness_lifetime(stored.status, stored.headers, stored.response_time,
                                    config),
        initial_age=corrected_initial_age(stored.headers, stored.request_time,
                                          stored.response_time))
    stored.remember("memo_policy", view)
    return view


def stored_age(stored: StoredResponse, now: float) -> float:
    """``current_age`` of a stored response (§4.2.3)."""
    view = stored.memo_policy  # the initial age does not depend on the config
    if not isinstance(view, StoredView):
        view = stored_view(stored)
    return view.initial_age + resident_time(stored.response_time, now)


def stored_lifetime(stored: StoredResponse, config: PolicyConfig = DEFAULT_POLICY) -> float:
    return stored_view(stored, config).lifetime


def stored_directives(stored: StoredResponse, config: PolicyConfig = DEFAULT_POLICY
                      ) -> CacheControl:
    """The directives this tier obeys for a stored response (RFC 9213 §2.1)."""
    return stored_view(stored, config).cc


def is_fresh(lifetime: float, age: float) -> bool:
    """§4.2: "response_is_fresh = (freshness_lifetime > current_age)"."""
    return lifetime > age


# -- serving stale (§4.2.4, RFC 5861) ---------------------------------------------------------


def stale_prohibited(cc: CacheControl, config: PolicyConfig = DEFAULT_POLICY) -> bool:
    """§4.2.4: "A cache MUST NOT generate a stale response if it is prohibited by an explicit
    in-protocol directive (e.g., by a no-cache response directive, a must-revalidate response
    directive, or an applicable s-maxage or proxy-revalidate response directive)".
    §5.2.2.2 must-revalidate: "the cache MUST NOT use the response to satisfy subsequent
    requests without successful validation"; §5.2.2.8 proxy-revalidate and §5.2.2.10
    s-maxage ("it also implies the semantics of the proxy-revalidate") for shared caches."""
    if cc.no_cache or cc.must_revalidate:
        return True
    return config.shared and (cc.proxy_revalidate or cc.s_maxage is not None)


def staleness(lifetime: float, age: float) -> float:
    """How long a response has been stale (≤ 0 while fresh)."""
    return age - lifetime


def within_stale_while_revalidate(cc: CacheControl, lifetime: float, age: float) -> bool:
    """RFC 5861 §3: "When present in an HTTP response, the stale-while-revalidate
    Cache-Control extension indicates that caches MAY serve the response in which it appears
    after it becomes stale, up to the indicated number of seconds" while revalidating in the
    background."""
    window = cc.stale_while_revalidate
    return window is not None and 0 < staleness(lifetime, age) <= window


def stale_if_error_window(cc: CacheControl, request_cc: CacheControl,
                          config: PolicyConfig = DEFAULT_POLICY) -> float:
    """RFC 5861 §4: "The stale-if-error Cache-Control extension indicates that when an error
    is encountered, a cached stale response MAY be used to satisfy the request, regardless of
    other freshness information." "When used as a request Cache-Control extension, its scope
    of application is the request it appears in". The request's value wins when present;
    then the response's; then the tier's default (``config.stale_if_error_default``)."""
    if request_cc.stale_if_error is not None:
        return float(request_cc.stale_if_error)
    if cc.stale_if_error is not None:
        return float(cc.stale_if_error)
    return config.stale_if_error_default


def may_serve_stale_on_error(stored: StoredResponse, request_cc: CacheControl, now: float,
                             config: PolicyConfig = DEFAULT_POLICY) -> bool:
    """Whether ``stored`` may answer a request whose upstream fetch failed. RFC 5861 §4
    lets stale-if-error apply "regardless of other freshness information"; RFC 9111
    §4.2.4's MUST NOT (no-cache, must-revalidate, proxy-revalidate, s-maxage) still holds
    unless the origin itself sent ``stale-if-error``, the more specific permission."""
    cc = response_directives(stored.headers, config.targeted_fields).cc
    if stale_prohibited(cc, config) and cc.stale_if_error is None:
        return False
    lifetime = stored_lifetime(stored, config)
    stale_for = staleness(lifetime, stored_age(stored, now))
    return stale_for <= stale_if_error_window(cc, request_cc, config)
