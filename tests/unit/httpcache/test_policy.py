"""RFC 9111 rules, one by one, on plain data (no I/O, no clock)."""

from __future__ import annotations

import dataclasses

import pytest

from httpcache.dates import format_http_date
from httpcache.headers import Fields
from httpcache.messages import CacheRequest, StoredResponse
from httpcache.policy import (
    FreshHit,
    GatewayTimeout,
    Miss,
    Pass,
    PolicyConfig,
    Revalidate,
    apparent_age,
    corrected_age_value,
    current_age,
    decide,
    fields_to_store,
    freshness_lifetime,
    invalidated_targets,
    invalidates,
    is_fresh,
    is_storable,
    make_stored_response,
    resident_time,
    response_304_matches,
    should_store,
    update_from_304,
    validators_for,
)

NOW = 1_700_000_000.0
GET = CacheRequest("GET", "/b/k")


def h(**fields: str) -> Fields:
    return Fields((k.replace("_", "-"), v) for k, v in fields.items())


def date(offset: float = 0.0) -> str:
    return format_http_date(NOW + offset)


def stored(headers: Fields, *, status: int = 200, body: bytes = b"body",
           request_time: float = NOW, response_time: float = NOW,
           request: CacheRequest = GET) -> StoredResponse:
    return make_stored_response("/b/k", request, status, headers, body, request_time,
                                response_time)


# -- storability (§3) -------------------------------------------------------------------------


def test_is_storable_with_max_age() -> None:
    assert is_storable(GET, 200, h(Cache_Control="max-age=60"))


def test_is_storable_rejects_no_store_in_response() -> None:
    assert not is_storable(GET, 200, h(Cache_Control="no-store, max-age=60"))


def test_is_storable_rejects_no_store_in_request() -> None:
    request = CacheRequest("GET", "/b/k", h(Cache_Control="no-store"))
    assert not is_storable(request, 200, h(Cache_Control="max-age=60"))


def test_is_storable_rejects_private_in_shared_cache() -> None:
    assert not is_storable(GET, 200, h(Cache_Control="private, max-age=60"))


def test_is_storable_accepts_private_in_private_cache() -> None:
    assert is_storable(GET, 200, h(Cache_Control="private, max-age=60"),
                       PolicyConfig(shared=False))


def test_is_storable_rejects_non_get_methods() -> None:
    for method in ("POST", "PUT", "HEAD", "DELETE"):
        assert not is_storable(CacheRequest(method, "/b/k"), 200, h(Cache_Control="max-age=60"))


def test_is_storable_rejects_partial_and_not_modified() -> None:
    assert not is_storable(GET, 206, h(Cache_Control="max-age=60"))
    assert not is_storable(GET, 304, h(Cache_Control="max-age=60"))


def test_is_storable_heuristically_cacheable_status_without_directives() -> None:
    assert is_storable(GET, 200, h())
    assert is_storable(GET, 404, h())
    assert not is_storable(GET, 500, h())
    assert not is_storable(GET, 302, h())


def test_is_storable_explicit_freshness_makes_other_statuses_storable() -> None:
    assert is_storable(GET, 302, h(Cache_Control="max-age=60"))
    assert is_storable(GET, 500, h(Expires=date(60)))


@pytest.mark.parametrize("cc,allowed", [
    ("max-age=60", False), ("public, max-age=60", True), ("s-maxage=60", True),
    ("must-revalidate, max-age=60", True),
])
def test_is_storable_authorization_needs_explicit_permission(cc: str, allowed: bool) -> None:
    request = CacheRequest("GET", "/b/k", h(Authorization="Bearer x"))
    assert is_storable(request, 200, h(Cache_Control=cc)) is allowed


def test_is_storable_set_cookie_needs_permission_when_configured_off() -> None:
    cookie = {"Set-Cookie": "a=1"}
    off = PolicyConfig(cache_set_cookie=False)
    assert not is_storable(GET, 200, Fields.of({"Cache-Control": "max-age=60", **cookie}), off)
    assert is_storable(GET, 200, Fields.of({"Cache-Control": 'max-age=60, private="Set-Cookie"',
                                            **cookie}), off)
    assert is_storable(GET, 200, Fields.of({"Cache-Control": "max-age=60", **cookie}),
                       PolicyConfig(cache_set_cookie=True))


def test_is_storable_rejects_vary_star() -> None:
    assert not is_storable(GET, 200, h(Cache_Control="max-age=60", Vary="*"))


def test_should_store_skips_stale_on_arrival_without_validators() -> None:
    assert not should_store(GET, 200, h(), NOW)
    assert should_store(GET, 200, h(ETag='"x"'), NOW)


def test_fields_to_store_drops_cookies_hop_by_hop_and_qualified_private() -> None:
    fields = Fields([("Cache-Control", 'max-age=60, private="X-User", no-cache="X-Debug"'),
                     ("Set-Cookie", "a=1"), ("Connection", "close, X-Hop"), ("X-Hop", "1"),
                     ("X-User", "alice"), ("X-Debug", "1"), ("ETag", '"e"')])
    assert fields_to_store(fields).names() == {"cache-control", "etag"}


# -- freshness (§4.2) -------------------------------------------------------------------------


def test_freshness_lifetime_s_maxage_wins_over_max_age() -> None:
    assert freshness_lifetime(200, h(Cache_Control="max-age=10, s-maxage=99"), NOW) == 99


def test_freshness_lifetime_private_cache_ignores_s_maxage() -> None:
    lifetime = freshness_lifetime(200, h(Cache_Control="max-age=10, s-maxage=99"), NOW,
                                  PolicyConfig(shared=False))
    assert lifetime == 10


def test_freshness_lifetime_max_age_wins_over_expires() -> None:
    assert freshness_lifetime(200, h(Cache_Control="max-age=10", Date=date(),
                                     Expires=date(500)), NOW) == 10


def test_freshness_lifetime_expires_minus_date() -> None:
    assert freshness_lifetime(200, h(Date=date(), Expires=date(120)), NOW) == 120


def test_freshness_lifetime_expires_without_date_uses_response_time() -> None:
    assert freshness_lifetime(200, h(Expires=date(30)), NOW) == 30


def test_freshness_lifetime_invalid_expires_means_already_expired() -> None:
    assert freshness_lifetime(200, h(Expires="0"), NOW) == 0


def test_freshness_lifetime_heuristic_is_ten_percent_of_last_modified_age() -> None:
    headers = h(Date=date(), Last_Modified=date(-1000))
    assert freshness_lifetime(200, headers, NOW) == pytest.approx(100)


def test_freshness_lifetime_heuristic_only_for_heuristically_cacheable_status() -> None:
    headers = h(Date=date(), Last_Modified=date(-1000))
    assert freshness_lifetime(302, headers, NOW) == 0
    assert freshness_lifetime(302, h(Cache_Control="public", Date=date(),
                                     Last_Modified=date(-1000)), NOW) == pytest.approx(100)


def test_freshness_lifetime_heuristic_is_capped() -> None:
    headers = h(Date=date(), Last_Modified=date(-10 * 365 * 86400))
    assert freshness_lifetime(200, headers, NOW) == 86400


def test_freshness_lifetime_malformed_max_age_is_stale() -> None:
    assert freshness_lifetime(200, h(Cache_Control="max-age=soon"), NOW) == 0


def test_cdn_cache_control_takes_precedence_over_cache_control() -> None:
    headers = h(Cache_Control="max-age=10", CDN_Cache_Control="max-age=300")
    assert freshness_lifetime(200, headers, NOW) == 300


def test_cdn_cache_control_makes_expires_ignored() -> None:
    headers = h(CDN_Cache_Control="no-cache", Date=date(), Expires=date(100))
    assert freshness_lifetime(200, headers, NOW) == 0


def test_cdn_cache_control_no_store_overrides_cacheable_cache_control() -> None:
    headers = h(Cache_Control="max-age=60", CDN_Cache_Control="no-store")
    assert not is_storable(GET, 200, headers)


def test_cdn_cache_control_allows_storing_what_browsers_may_not() -> None:
    headers = h(Cache_Control="private", CDN_Cache_Control="max-age=60")
    assert is_storable(GET, 200, headers)


def test_empty_cdn_cache_control_falls_back_to_cache_control() -> None:
    headers = h(Cache_Control="max-age=10", CDN_Cache_Control="")
    assert freshness_lifetime(200, headers, NOW) == 10


# -- age (§4.2.3) -----------------------------------------------------------------------------


def test_apparent_age_is_response_time_minus_date() -> None:
    assert apparent_age(h(Date=date(-5)), NOW) == 5


def test_apparent_age_is_never_negative() -> None:
    assert apparent_age(h(Date=date(+5)), NOW) == 0


def test_corrected_age_value_adds_response_delay_to_age() -> None:
    assert corrected_age_value(h(Age="7"), NOW - 2, NOW) == 9


def test_resident_time_is_now_minus_response_time() -> None:
    assert resident_time(NOW, NOW + 12) == 12


def test_current_age_takes_the_larger_initial_age_plus_resident_time() -> None:
    headers = h(Date=date(-3), Age="10")
    assert current_age(headers, NOW - 1, NOW, NOW + 5) == 11 + 5
    headers = h(Date=date(-30), Age="10")
    assert current_age(headers, NOW - 1, NOW, NOW + 5) == 30 + 5


def test_is_fresh_while_lifetime_exceeds_age() -> None:
    assert is_fresh(60, 59.9)
    assert not is_fresh(60, 60)


# -- decide (§4) ------------------------------------------------------------------------------


def test_decide_unsafe_and_other_methods_pass() -> None:
    assert decide(CacheRequest("POST", "/b/k"), None, NOW) == Pass("method")
    assert decide(CacheRequest("OPTIONS", "/b/k"), None, NOW) == Pass("method")


def test_decide_nothing_stored_is_uri_miss() -> None:
    assert decide(GET, None, NOW) == Miss("uri-miss")


def test_decide_head_miss_is_forwarded_without_storing() -> None:
    assert decide(CacheRequest("HEAD", "/b/k"), None, NOW) == Miss(
        "uri-miss", collapse=False, store=False)


def test_decide_fresh_response_is_a_hit_with_age_and_ttl() -> None:
    entry = stored(h(Cache_Control="max-age=60", Date=date()))
    decision = decide(GET, entry, NOW + 20)
    assert isinstance(decision, FreshHit)
    assert decision.age == 20 and decision.ttl == 40


def test_decide_stale_response_revalidates_with_its_validators() -> None:
    entry = stored(h(Cache_Control="max-age=60", Date=date(), ETag='"v1"',
                     Last_Modified=date(-100)))
    decision = decide(GET, entry, NOW + 61)
    assert isinstance(decision, Revalidate) and decision.reason == "stale"
    assert decision.validators.get("If-None-Match") == '"v1"'
    assert decision.validators.get("If-Modified-Since") == date(-100)


def test_decide_stale_response_without_validators_is_refetched() -> None:
    entry = stored(h(Cache_Control="max-age=60", Date=date()))
    assert decide(GET, entry, NOW + 61) == Miss("stale", stale=entry)


def test_decide_response_no_cache_always_revalidates() -> None:
    entry = stored(h(Cache_Control="no-cache, max-age=60", Date=date(), ETag='"v"'))
    assert isinstance(decide(GET, entry, NOW + 1), Revalidate)


def test_decide_must_revalidate_stale_revalidates() -> None:
    entry = stored(h(Cache_Control="must-revalidate, max-age=1", Date=date(), ETag='"v"'))
    assert isinstance(decide(GET, entry, NOW + 5), Revalidate)


def test_decide_request_no_cache_revalidates() -> None:
    entry = stored(h(Cache_Control="max-age=60", Date=date(), ETag='"v"'))
    request = CacheRequest("GET", "/b/k", h(Cache_Control="no-cache"))
    decision = decide(request, entry, NOW + 1)
    assert isinstance(decision, Revalidate) and decision.reason == "request"


def test_decide_request_no_cache_ignored_when_configured() -> None:
    entry = stored(h(Cache_Control="max-age=60", Date=date(), ETag='"v"'))
    request = CacheRequest("GET", "/b/k", h(Cache_Control="no-cache"))
    decision = decide(request, entry, NOW + 1, PolicyConfig(honor_request_cache_control=False))
    assert isinstance(decision, FreshHit)


def test_decide_request_max_age_limits_acceptable_age() -> None:
    entry = stored(h(Cache_Control="max-age=60", Date=date(), ETag='"v"'))
    request = CacheRequest("GET", "/b/k", h(Cache_Control="max-age=5"))
    assert isinstance(decide(request, entry, NOW + 10), Revalidate)
    assert isinstance(decide(request, entry, NOW + 2), FreshHit)


def test_decide_pragma_no_cache_is_ignored() -> None:
    """RFC 9111 §5.4 deprecates Pragma; it no longer asks caches to honour it."""
    entry = stored(h(Cache_Control="max-age=60", Date=date(), ETag='"v"'))
    request = CacheRequest("GET", "/b/k", h(Pragma="no-cache"))
    assert isinstance(decide(request, entry, NOW + 1), FreshHit)


def test_decide_only_if_cached_without_stored_is_504() -> None:
    request = CacheRequest("GET", "/b/k", h(Cache_Control="only-if-cached"))
    assert decide(request, None, NOW) == GatewayTimeout()


def test_decide_soft_purged_response_revalidates() -> None:
    entry = stored(h(Cache_Control="max-age=60", Date=date(), ETag='"v"'))
    decision = decide(GET, dataclasses.replace(entry, invalidated=True), NOW + 1)
    assert isinstance(decision, Revalidate) and decision.reason == "stale"


def test_decide_authorization_bypasses_unless_response_allows_it() -> None:
    request = CacheRequest("GET", "/b/k", h(Authorization="Basic x"))
    plain = stored(h(Cache_Control="max-age=60", Date=date()))
    public = stored(h(Cache_Control="public, max-age=60", Date=date()))
    assert decide(request, plain, NOW) == Pass("bypass")
    assert isinstance(decide(request, public, NOW), FreshHit)
    assert decide(request, None, NOW) == Miss("uri-miss", collapse=False, store=True)


def test_decide_vary_mismatch_is_vary_miss() -> None:
    original = CacheRequest("GET", "/b/k", h(Accept_Encoding="gzip"))
    entry = stored(h(Cache_Control="max-age=60", Date=date(), Vary="Accept-Encoding"),
                   request=original)
    same = CacheRequest("GET", "/b/k", h(Accept_Encoding="gzip"))
    other = CacheRequest("GET", "/b/k", h(Accept_Encoding="br"))
    assert isinstance(decide(same, entry, NOW), FreshHit)
    assert decide(other, entry, NOW) == Miss("vary-miss")


def test_decide_preconditions_for_the_origin_pass() -> None:
    request = CacheRequest("GET", "/b/k", h(If_Match='"v"'))
    assert decide(request, None, NOW) == Pass("request")


# -- validation (§4.3) ------------------------------------------------------------------------


def test_validators_for_sends_etag_and_last_modified() -> None:
    entry = stored(h(ETag='W/"a"', Last_Modified=date(-10)))
    assert list(validators_for(entry)) == [("If-None-Match", 'W/"a"'),
                                           ("If-Modified-Since", date(-10))]


def test_update_from_304_replaces_fields_and_restarts_age() -> None:
    entry = stored(h(Cache_Control="max-age=60", Date=date(), ETag='"v1"', Age="30",
                     X_Old="kept", Content_Length="4"), request_time=NOW, response_time=NOW)
    new = update_from_304(entry, h(Cache_Control="max-age=120", Date=date(100), ETag='"v1"',
                                   Content_Length="0"), NOW + 100, NOW + 100)
    assert new.headers.get("Cache-Control") == "max-age=120"
    assert new.headers.get("X-Old") == "kept"
    assert new.headers.get("Content-Length") == "4"
    assert new.headers.get("Age") is None
    assert new.body == entry.body and new.response_time == NOW + 100
    assert isinstance(decide(GET, new, NOW + 150), FreshHit)


def test_update_from_304_returns_new_value_and_leaves_input_alone() -> None:
    entry = stored(h(Cache_Control="max-age=60", ETag='"v1"'))
    before = entry.headers
    new = update_from_304(entry, h(Cache_Control="max-age=1"), NOW, NOW)
    assert new is not entry and entry.headers == before


def test_update_from_304_clears_soft_purge_and_updates_tags() -> None:
    entry = dataclasses.replace(stored(h(ETag='"v1"', Surrogate_Key="a")), invalidated=True)
    new = update_from_304(entry, h(ETag='"v1"', Surrogate_Key="b c"), NOW, NOW)
    assert not new.invalidated and new.surrogate_keys == {"b", "c"}


def test_response_304_matches_strong_validator_only_if_equal() -> None:
    entry = stored(h(ETag='"v1"'))
    assert response_304_matches(entry, h(ETag='"v1"'))
    assert not response_304_matches(entry, h(ETag='"v2"'))
    assert response_304_matches(entry, h())


def test_response_304_matches_weak_validator_by_weak_comparison() -> None:
    assert response_304_matches(stored(h(ETag='"v1"')), h(ETag='W/"v1"'))


# -- invalidation (§4.4) ----------------------------------------------------------------------


def test_invalidates_on_unsafe_method_with_non_error_status() -> None:
    assert invalidates("POST", 201)
    assert invalidates("DELETE", 204)
    assert not invalidates("POST", 500)
    assert not invalidates("GET", 200)


def test_invalidated_targets_are_same_origin_locations() -> None:
    found = invalidated_targets("/b/k", ["/b/new", "http://other/x", "rel?q=1",
                                         "http://cdn.example/abs"], "cdn.example")
    assert found == ["/b/new", "/b/rel?q=1", "/abs"]
