"""RFC 9111 (with RFC 5861 and RFC 9213) for a shared cache: the decision, as pure code.

Nothing here does I/O or reads a clock: time arrives as ``now`` (seconds since the epoch) and
every function returns a value without changing its inputs. The aiohttp driver
(``httpcache.engine``) asks ``decide`` what to do with a request, does exactly one I/O step for
the answer, and comes back to the rule modules with the result (``should_store``,
``update_from_304``, ``update_from_head``, ``may_serve_stale_on_error``).

The rules live in one module per concept, each function citing the section it implements:

* ``freshness``    — lifetime, age, heuristics, serving stale (§4.2, §4.2.4, RFC 5861);
* ``storability``  — what may be stored and which fields (§3, §3.1, §3.5, §5.2.2);
* ``vary``         — secondary keys (§4.1);
* ``validation``   — validators sent and 304 updates (§4.3);
* ``invalidation`` — unsafe methods (§4.4);
* ``cache_control``— directive parsing and targeted fields (§5.2, RFC 9213).

This module re-exports them so callers have one import.

Request directives (§5.2.1) are honoured by default (``PolicyConfig.honor_request_cache_control``):
``max-age``, ``min-fresh`` and ``no-cache`` force validation, ``max-stale`` accepts stale
responses, ``no-store`` bypasses the cache for that exchange, ``only-if-cached`` answers 504
when nothing usable is stored. ``Pragma`` is ignored (§5.4 deprecates it; RFC 9111 no longer
asks caches to treat ``Pragma: no-cache`` as ``no-cache``). An operator may stop honouring
clients' directives (not ``only-if-cached``) so clients cannot force origin traffic.
"""

from __future__ import annotations

from typing import Literal

from httpcache.cache_control import CacheControl
from httpcache.freshness import (
    HEURISTICALLY_CACHEABLE,
    age_value,
    apparent_age,
    corrected_age_value,
    current_age,
    expires_lifetime,
    freshness_lifetime,
    heuristic_freshness,
    is_fresh,
    may_serve_stale_on_error,
    resident_time,
    stale_prohibited,
    staleness,
    stored_age,
    stored_directives,
    stored_lifetime,
    stored_view,
    within_stale_while_revalidate,
)
from httpcache.headers import Fields
from httpcache.invalidation import invalidated_targets, invalidates
from httpcache.messages import Body, CacheRequest, StoredResponse
from httpcache.policy_config import DEFAULT_POLICY, PolicyConfig
from httpcache.records import record
from httpcache.storability import (
    CACHEABLE_METHODS,
    STORABLE_STATUSES,
    allows_authorized_reuse,
    fields_to_store,
    has_authorization,
    is_storable,
    is_worth_storing,
    request_directives,
    should_store,
    surrogate_keys,
)
from httpcache.validation import (
    response_304_matches,
    update_from_304,
    update_from_head,
    validators_for,
)
from httpcache.vary import selecting_fields, vary_field_names, vary_matches

__all__ = [
    "CACHEABLE_METHODS", "DEFAULT_POLICY", "HEURISTICALLY_CACHEABLE", "STORABLE_STATUSES",
    "Decision", "FreshHit", "GatewayTimeout", "Miss", "Pass", "PolicyConfig", "Revalidate",
    "StaleHit", "age_value", "allows_authorized_reuse", "apparent_age", "corrected_age_value",
    "current_age", "decide", "effective_request_directives", "expires_lifetime",
    "fields_to_store", "freshness_lifetime", "heuristic_freshness", "invalidated_targets",
    "invalidates", "is_fresh", "is_storable", "is_worth_storing", "make_stored_response",
    "may_serve_stale_on_error", "resident_time", "response_304_matches", "selecting_fields",
    "should_store", "stale_prohibited", "stored_age", "stored_lifetime", "surrogate_keys",
    "update_from_304", "update_from_head", "validators_for", "vary_field_names",
    "vary_matches",
]

StaleReason = Literal["stale", "request"]


# -- decisions ---------------------------------------------------------------------------------


@record
class FreshHit:
    """Serve the stored response as is."""

    stored: StoredResponse
    age: float
    ttl: float


@record
class StaleHit:
    """Serve the stored, stale response now. ``why`` is the permission: the client's
    ``max-stale`` (§5.2.1.2) or the origin's ``stale-while-revalidate`` (RFC 5861 §3), in
    which case ``revalidate`` asks for one background revalidation."""

    stored: StoredResponse
    age: float
    ttl: float  # negative: seconds past freshness
    why: Literal["max-stale", "stale-while-revalidate"]
    revalidate: bool = False


@record
class Revalidate:
    """Send a conditional request with ``validators``; a 304 refreshes the stored response.
    On an upstream failure the stored response may still be served
    (``may_serve_stale_on_error``)."""

    stored: StoredResponse
    validators: Fields
    reason: StaleReason
    collapse: bool = True


@record
class Miss:
    """Fetch from upstream; store the answer if ``store`` and ``should_store`` agree.
    ``stale`` is a stored response without validators that may still serve on error."""

    reason: Literal["uri-miss", "vary-miss", "stale", "request"]
    collapse: bool = True
    store: bool = True
    stale: StoredResponse | None = None


@record
class Pass:
    """Forward to upstream unchanged and store nothing (fwd=method/bypass/request)."""

    reason: Literal["method", "bypass", "request"]


@record
class GatewayTimeout:
    """``only-if-cached`` with nothing usable stored: §5.2.1.7 "the cache SHOULD either
    respond using a stored response ... or respond with a status code of 504 (Gateway
    Timeout)"."""


Decision = FreshHit | StaleHit | Revalidate | Miss | Pass | GatewayTimeout

_NO_DIRECTIVES = CacheControl({})


# -- helpers -----------------------------------------------------------------------------------


def effective_request_directives(request: CacheRequest, config: PolicyConfig) -> CacheControl:
    """The client's directives this tier obeys: all of them, or only ``only-if-cached`` (and
    ``stale-if-error``, which only ever avoids an error) when the operator switched them off."""
    cc = request_directives(request)
    if config.honor_request_cache_control:
        return cc
    kept = {k: v for k, v in cc.directives.items() if k in ("only-if-cached", "stale-if-error")}
    return CacheControl(kept)


def make_stored_response(cache_key: str, request: CacheRequest, status: int, headers: Fields,
                         body: Body, request_time: float, response_time: float,
                         config: PolicyConfig = DEFAULT_POLICY, *,
                         kept: Fields | None = None,
                         vary: tuple[tuple[str, str | None], ...] | None = None
                         ) -> StoredResponse:
    """The stored form of a response that ``should_store`` accepted (``kept``:
    ``fields_to_store(headers, config)``, ``vary``: ``selecting_fields(request.headers,
    headers)``, when the caller has them already)."""
    if kept is None:
        kept = fields_to_store(headers, config)
    if vary is None:
        vary = selecting_fields(request.headers, headers)
    return StoredResponse(cache_key=cache_key, status=status, headers=kept, body=body,
                          request_time=request_time, response_time=response_time,
                          surrogate_keys=surrogate_keys(kept), vary=vary)


def client_requires_validation(req: CacheControl, age: float, lifetime: float) -> bool:
    """§5.2.1.4 no-cache: "the client prefers that a stored response not be used to satisfy
    the request without successful validation on the origin server"; §5.2.1.1 max-age: "the
    client prefers a response whose age is less than or equal to the specified number of
    seconds"; §5.2.1.3 min-fresh: "the client prefers a response whose freshness lifetime is
    no less than its current age plus the specified time in seconds"."""
    if req.has("no-cache"):
        return True
    max_age = req.request_max_age
    if max_age is not None and age > max_age:
        return True
    min_fresh = req.min_fresh
    return min_fresh is not None and lifetime - age < min_fresh


def origin_requires_validation(stored: StoredResponse, cc: CacheControl) -> bool:
    """§5.2.2.4 no-cache: "the response MUST NOT be used to satisfy any other request without
    forwarding it for validation and receiving a successful response"; a soft purge marks a
    stored response the same way."""
    return stored.invalidated or cc.no_cache


def client_accepts_stale(req: CacheControl, cc: CacheControl, lifetime: float, age: float,
                         config: PolicyConfig) -> bool:
    """§5.2.1.2 max-stale: "the client will accept a response that has exceeded its freshness
    lifetime by no more than the specified number of seconds" — unless the origin forbade
    serving it stale (§4.2.4)."""
    max_stale = req.max_stale
    return (max_stale is not None and not stale_prohibited(cc, config)
            and staleness(lifetime, age) <= max_stale)


# -- plain requests ---------------------------------------------------------------------------

# The request fields ``decide`` and the answer to a hit read, apart from the ones a stored
# response's ``Vary`` names: a GET or HEAD carrying none of them is *plain*, and for a plain
# request on a stored response that does not vary, the decision depends on the response and
# the clock alone (``plain_fresh_hit``).
DECISIVE_REQUEST_FIELDS = frozenset({
    "cache-control", "authorization",  # §5.2.1 request directives; §3.5
    "if-match", "if-unmodified-since", "if-none-match", "if-modified-since",  # §4.3.2
    "range", "if-range",  # §3.4 and RFC 9110 §14
})


def plain_fresh_hit(stored: StoredResponse, now: float, config: PolicyConfig
                    ) -> tuple[float, float] | None:
    """``(age, ttl)`` when ``decide`` answers a plain request (no field of
    ``DECISIVE_REQUEST_FIELDS``, method GET or HEAD) on ``stored`` (which has no ``vary``)
    with a ``FreshHit``; otherwise ``None``. The same rules as ``_decide_stored`` with no
    request directives: not invalidated, no ``no-cache`` (§5.2.2.4), and §4.2's
    ``freshness_lifetime > current_age``; the hit path uses it to skip building a request
    the rules would not look at."""
    if stored.invalidated:
        return None
    view = stored_view(stored, config)
    if view.cc.no_cache:
        return None
    age = view.initial_age + resident_time(stored.response_time, now)
    lifetime = view.lifetime
    if lifetime > age:
        return age, lifetime - age
    return None


# -- the decision (§4 "Constructing Responses from Caches") ------------------------------------


def decide(request: CacheRequest, stored: StoredResponse | None, now: float,
           config: PolicyConfig = DEFAULT_POLICY, *, vary_miss: bool = False) -> Decision:
    """What to do with ``request`` given the stored response its keys select (``vary_miss``:
    responses exist for the URL, but for other values of the ``Vary`` fields)."""
    if request.method not in CACHEABLE_METHODS:
        return Pass("method")
    if request.headers.first("if-match") or request.headers.first("if-unmodified-since"):
        # §4.3.2: such preconditions "are likely intended for some other (inbound) server".
        return Pass("request")
    req = effective_request_directives(request, config)
    if req.no_store:
        return Pass("request")  # §5.2.1.5: nothing stored; we do not serve from cache either
    authorized = has_authorization(request)
    if stored is not None and not vary_matches(stored.vary, request.headers):
        stored, vary_miss = None, True
    if stored is not None and authorized and config.shared:
        cc = stored_directives(stored, config)
        if not allows_authorized_reuse(cc):
            return Pass("bypass")
    cacheable = request.method == "GET"
    collapse = cacheable and not authorized
    if stored is None:
        if req.only_if_cached:
            return GatewayTimeout()
        return Miss("vary-miss" if vary_miss else "uri-miss", collapse=collapse,
                    store=cacheable)
    return _decide_stored(request, stored, now, config, req, collapse)


def _decide_stored(request: CacheRequest, stored: StoredResponse, now: float,
                   config: PolicyConfig, req: CacheControl, collapse: bool) -> Decision:
    age = stored_age(stored, now)
    lifetime = stored_lifetime(stored, config)
    cc = stored_directives(stored, config)
    why: StaleReason | None = None
    if origin_requires_validation(stored, cc):
        why = "stale"
    elif client_requires_validation(req, age, lifetime):
        why = "request"
    elif is_fresh(lifetime, age):
        return FreshHit(stored, age=age, ttl=lifetime - age)
    elif client_accepts_stale(req, cc, lifetime, age, config):
        return StaleHit(stored, age=age, ttl=lifetime - age, why="max-stale")
    elif not stale_prohibited(cc, config) and within_stale_while_revalidate(cc, lifetime, age) \
            and not req.only_if_cached:
        return StaleHit(stored, age=age, ttl=lifetime - age, why="stale-while-revalidate",
                        revalidate=True)
    else:
        why = "stale"
    if req.only_if_cached:
        return GatewayTimeout()
    validators = validators_for(stored)
    if not validators:
        return Miss(why, collapse=collapse, store=request.method == "GET", stale=stored)
    return Revalidate(stored, validators, why, collapse=collapse)
