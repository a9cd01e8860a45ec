"""RFC 9111 / 5861 / 9213 rules written from the RFC text, one test per rule and outcome."""

from __future__ import annotations

import pytest

from httpcache.cache_control import parse_cache_control, parse_sf_directives, response_directives
from httpcache.dates import format_http_date, parse_http_date
from httpcache.freshness import (
    age_value,
    current_age,
    freshness_lifetime,
    may_serve_stale_on_error,
    stale_prohibited,
)
from httpcache.headers import Fields
from httpcache.invalidation import invalidated_targets, invalidates
from httpcache.messages import CacheRequest, StoredResponse
from httpcache.policy import (
    FreshHit,
    GatewayTimeout,
    Miss,
    Pass,
    PolicyConfig,
    Revalidate,
    StaleHit,
    decide,
    make_stored_response,
)
from httpcache.ranges import ByteRange, Unsatisfiable, multipart_byteranges, parse_ranges
from httpcache.storability import fields_to_store, is_storable
from httpcache.validation import head_response_matches, update_from_304, update_from_head
from httpcache.vary import normalise_field, selecting_fields, vary_is_star, vary_matches

NOW = 1_700_000_000.0
GET = CacheRequest("GET", "/b/k")


def f(*pairs: tuple[str, str]) -> Fields:
    return Fields(pairs)


def cc_lifetime(value: str, **extra: str) -> float:
    headers = Fields([("Cache-Control", value), *extra.items()])
    return freshness_lifetime(200, headers, NOW)


# -- §5.2 Cache-Control syntax ----------------------------------------------------------------


@pytest.mark.parametrize("value,lifetime", [
    ("max-age=3600", 3600), ('max-age="3600"', 3600), ("MaX-AgE=3600", 3600),
    ("max-age=003600", 3600), ("foobar, max-age=3600", 3600),
    ("max-age=2147483648", 2**31), ("max-age=99999999999", 2**31),
])
def test_max_age_valid_forms_give_their_lifetime(value: str, lifetime: float) -> None:
    assert cc_lifetime(value) == lifetime


@pytest.mark.parametrize("value", [
    "max-age=0", "max-age=-100", "max-age=a100", "max-age=100a", "max-age='3600'",
    "max-age=3600.5", "max-age",
])
def test_max_age_invalid_or_zero_is_stale(value: str) -> None:
    assert cc_lifetime(value) == 0


@pytest.mark.parametrize("value", ["max-age =100", "max-age= 100"])
def test_max_age_with_whitespace_around_equals_is_not_a_max_age(value: str) -> None:
    assert not parse_cache_control(value).has("max-age")


@pytest.mark.parametrize("value", ['extension="max-age=100", max-age=1',
                                   'max-age=1, extension="max-age=100"',
                                   'extension="max-age=100", max-age="1"'])
def test_max_age_inside_a_quoted_string_is_ignored(value: str) -> None:
    assert cc_lifetime(value) == 1


def test_duplicate_directive_uses_first_occurrence() -> None:
    assert cc_lifetime("max-age=1800, max-age=1") == 1800


def test_s_maxage_wins_over_max_age_in_a_shared_cache() -> None:
    assert cc_lifetime("max-age=3600, s-maxage=1") == 1
    assert cc_lifetime("s-maxage=1, max-age=3600") == 1


def test_max_age_wins_over_expires() -> None:
    assert cc_lifetime("max-age=0", Expires=format_http_date(NOW + 1000),
                       Date=format_http_date(NOW)) == 0


# -- §5.3 Expires and HTTP-date ---------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "Thu, 18 Aug 2050 02:01:18 GMT", "THU, 18 AUG 2050 02:01:18 gmt",
    "Thursday, 18-Aug-50 02:01:18 GMT", "Thu Aug 18 02:01:18 2050",
])
def test_http_date_accepts_the_three_formats(value: str) -> None:
    assert parse_http_date(value, now=NOW) == parse_http_date("Thu, 18 Aug 2050 02:01:18 GMT")


@pytest.mark.parametrize("value", [
    "0", "Thu, 18 Aug 2050 02:01:18 UTC", "Thu, 18 Aug 50 02:01:18 GMT",
    "Thu 18 Aug 2050 02:01:18 GMT", "Thu, 18  Aug  2050 02:01:18 GMT",
    "Thu, 18-Aug-2050 02:01:18 GMT", "Thu, 18 Aug 2050 02.01.18 GMT",
    "Thu, 18 Aug 2050 2:01:18 GMT",
])
def test_invalid_expires_means_already_expired(value: str) -> None:
    headers = f(("Expires", value), ("Date", format_http_date(NOW)))
    assert freshness_lifetime(200, headers, NOW) == 0


def test_expires_without_valid_date_uses_response_time() -> None:
    headers = f(("Expires", format_http_date(NOW + 10)), ("Date", "foo"))
    assert freshness_lifetime(200, headers, NOW) == 10


def test_expires_older_than_date_is_stale() -> None:
    headers = f(("Expires", format_http_date(NOW + 300)), ("Date", format_http_date(NOW + 400)))
    assert freshness_lifetime(200, headers, NOW) == 0


# -- §4.2.2 heuristic freshness ---------------------------------------------------------------


@pytest.mark.parametrize("status,cacheable", [
    (200, True), (203, True), (204, True), (404, True), (405, True), (410, True), (414, True),
    (501, True), (201, False), (202, False), (403, False), (502, False), (503, False),
    (504, False), (599, False),
])
def test_heuristic_freshness_only_for_heuristically_cacheable_statuses(
        status: int, cacheable: bool) -> None:
    headers = f(("Last-Modified", format_http_date(NOW - 86400)), ("Date", format_http_date(NOW)))
    assert (freshness_lifetime(status, headers, NOW) > 0) is cacheable
    assert is_storable(GET, status, headers) is cacheable


def test_heuristic_freshness_for_any_status_with_public() -> None:
    headers = f(("Last-Modified", format_http_date(NOW - 86400)), ("Date", format_http_date(NOW)),
                ("Cache-Control", "public"))
    assert freshness_lifetime(599, headers, NOW) == pytest.approx(8640)


# -- §4.2.3 / §5.1 age ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "-7200", "7200.0", "7200,0", "0,7200", "0, 0"])
def test_invalid_age_is_ignored(value: str) -> None:
    assert age_value(f(("Age", value))) == 0


def test_age_on_two_lines_is_ignored() -> None:
    assert age_value(f(("Age", "7200"), ("Age", "7200"))) == 0


def test_age_greater_than_max_age_makes_it_stale() -> None:
    headers = f(("Cache-Control", "max-age=10"), ("Age", "15"), ("Date", format_http_date(NOW)))
    entry = make_stored_response("/b/k", GET, 200, headers, b"", NOW, NOW)
    assert not isinstance(decide(GET, entry, NOW), FreshHit)


def test_current_age_adds_resident_time_and_response_delay() -> None:
    headers = f(("Age", "30"), ("Date", format_http_date(NOW)))
    assert current_age(headers, NOW - 2, NOW, NOW + 10) == 30 + 2 + 10


def test_current_age_is_clock_skew_safe_for_a_date_in_the_future() -> None:
    headers = f(("Date", format_http_date(NOW + 3600)))
    assert current_age(headers, NOW, NOW, NOW + 5) == 5


# -- §3 storing -------------------------------------------------------------------------------


def test_no_store_is_not_stored_in_any_case() -> None:
    assert not is_storable(GET, 200, f(("Cache-Control", "No-StOrE, max-age=10000")))


def test_must_understand_overrides_no_store_for_understood_status() -> None:
    assert is_storable(GET, 200, f(("Cache-Control", "must-understand, no-store, max-age=60")))


def test_must_understand_refuses_unknown_status() -> None:
    assert not is_storable(GET, 299, f(("Cache-Control", "must-understand, max-age=60")))


def test_private_is_not_stored_by_a_shared_cache() -> None:
    assert not is_storable(GET, 200, f(("Cache-Control", "private, max-age=3600")))


def test_request_no_store_forbids_storing() -> None:
    request = CacheRequest("GET", "/b/k", f(("Cache-Control", "no-store")))
    assert not is_storable(request, 200, f(("Cache-Control", "max-age=60")))


def test_qualified_no_cache_and_private_fields_are_not_stored() -> None:
    headers = f(("Cache-Control", 'no-cache="a", private="b", max-age=60'), ("a", "1"),
                ("b", "2"), ("c", "3"), ("Connection", "d"), ("d", "4"))
    assert fields_to_store(headers).names() == {"cache-control", "c"}


def test_set_cookie_is_never_stored() -> None:
    headers = f(("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b"), ("Set-Cookie2", "a=b"))
    assert is_storable(GET, 200, headers)
    assert "set-cookie" not in fields_to_store(headers).names()


# -- RFC 9213 targeted fields -----------------------------------------------------------------


def test_cdn_cache_control_overrides_cache_control_and_expires() -> None:
    headers = f(("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=10000"))
    assert is_storable(GET, 200, headers)
    assert freshness_lifetime(200, headers, NOW) == 10000


@pytest.mark.parametrize("value", ["max-age=10000, &&&&&", 'max-age="10000"', "max-age=-1"])
def test_invalid_cdn_cache_control_falls_back_to_cache_control(value: str) -> None:
    headers = f(("CDN-Cache-Control", value), ("Cache-Control", "no-store"))
    assert not response_directives(headers).targeted
    assert not is_storable(GET, 200, headers)


def test_cdn_cache_control_booleans_and_parameters() -> None:
    cc = parse_sf_directives("no-cache, private=?0, max-age=5;x=1")
    assert cc is not None and cc.no_cache and not cc.has("private") and cc.max_age == 5


def test_surrogate_control_is_a_targeted_field_after_cdn_cache_control() -> None:
    assert freshness_lifetime(200, f(("Cache-Control", "max-age=3600"),
                                     ("Surrogate-Control", "max-age=1")), NOW) == 1
    assert freshness_lifetime(200, f(("Surrogate-Control", "max-age=1"),
                                     ("CDN-Cache-Control", "max-age=9")), NOW) == 9


def test_surrogate_control_with_bad_syntax_is_ignored() -> None:
    headers = f(("Cache-Control", "max-age=1"), ("Surrogate-Control", "max-age =100"))
    assert freshness_lifetime(200, headers, NOW) == 1


# -- §4.1 Vary --------------------------------------------------------------------------------


@pytest.mark.parametrize("lines", [["*"], ["*, *"], [", *"], ["", "*"], ["Foo, *"], ["*", "Foo"]])
def test_vary_star_in_any_position_never_matches(lines: list[str]) -> None:
    assert vary_is_star(Fields(("Vary", v) for v in lines))


def test_vary_normalises_whitespace_and_combines_lines() -> None:
    stored = selecting_fields(f(("Foo", "1,2")), f(("Vary", "Foo")))
    assert vary_matches(stored, f(("Foo", " 1, 2 ")))
    assert vary_matches(stored, f(("Foo", "1"), ("Foo", "2")))


def test_vary_accept_language_order_is_not_significant() -> None:
    assert normalise_field("accept-language", "en, de") == normalise_field("accept-language",
                                                                           "de,en")


def test_vary_absent_field_matches_only_absent() -> None:
    stored = selecting_fields(f(("Foo", "1")), f(("Vary", "Foo, Bar")))
    assert vary_matches(stored, f(("Foo", "1")))
    assert not vary_matches(stored, f(("Foo", "1"), ("Bar", "x")))
    assert not vary_matches(stored, f())


# -- §4.2.4 / RFC 5861 stale ------------------------------------------------------------------


@pytest.mark.parametrize("cc", ["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage=2"])
def test_stale_is_prohibited_by(cc: str) -> None:
    assert stale_prohibited(parse_cache_control(cc))


def stale_entry(cc: str, stale_for: float = 10, etag: bool = True):  # type: ignore[no-untyped-def]
    headers = [("Cache-Control", cc), ("Date", format_http_date(NOW))]
    if etag:
        headers.append(("ETag", '"v"'))
    entry = make_stored_response("/b/k", GET, 200, Fields(headers), b"x", NOW, NOW)
    lifetime = freshness_lifetime(200, entry.headers, NOW)
    return entry, NOW + lifetime + stale_for


def test_stale_while_revalidate_serves_stale_and_revalidates() -> None:
    entry, now = stale_entry("max-age=2, stale-while-revalidate=60")
    decision = decide(GET, entry, now)
    assert isinstance(decision, StaleHit) and decision.revalidate


def test_stale_while_revalidate_window_passed_revalidates_in_the_foreground() -> None:
    entry, now = stale_entry("max-age=2, stale-while-revalidate=5", stale_for=6)
    assert isinstance(decide(GET, entry, now), Revalidate)


def test_stale_if_error_within_window_allows_stale_on_error() -> None:
    entry, now = stale_entry("max-age=2, stale-if-error=60")
    assert may_serve_stale_on_error(entry, parse_cache_control(None), now,
                                    PolicyConfig(stale_if_error_default=0))


def test_stale_if_error_past_window_refuses() -> None:
    entry, now = stale_entry("max-age=2, stale-if-error=5", stale_for=6)
    assert not may_serve_stale_on_error(entry, parse_cache_control(None), now)


def test_request_stale_if_error_overrides_response() -> None:
    entry, now = stale_entry("max-age=2", stale_for=6)
    config = PolicyConfig(stale_if_error_default=0)
    assert may_serve_stale_on_error(entry, parse_cache_control("stale-if-error=60"), now, config)
    assert not may_serve_stale_on_error(entry, parse_cache_control(None), now, config)


def test_must_revalidate_forbids_stale_on_error_by_default() -> None:
    entry, now = stale_entry("max-age=2, must-revalidate")
    assert not may_serve_stale_on_error(entry, parse_cache_control(None), now)


# -- §5.2.1 request directives ----------------------------------------------------------------


def req(cc: str) -> CacheRequest:
    return CacheRequest("GET", "/b/k", f(("Cache-Control", cc)))


def test_request_max_stale_accepts_a_stale_response() -> None:
    entry, now = stale_entry("max-age=2")
    assert isinstance(decide(req("max-stale=1000"), entry, now), StaleHit)
    assert isinstance(decide(req("max-stale"), entry, now), StaleHit)
    assert isinstance(decide(req("max-stale=1"), entry, now), Revalidate)


def test_request_max_stale_does_not_override_must_revalidate() -> None:
    entry, now = stale_entry("max-age=2, must-revalidate")
    assert isinstance(decide(req("max-stale=1000"), entry, now), Revalidate)


def test_request_min_fresh_requires_remaining_freshness() -> None:
    entry, _ = stale_entry("max-age=1500")
    assert isinstance(decide(req("min-fresh=2000"), entry, NOW), Revalidate)
    assert isinstance(decide(req("min-fresh=100"), entry, NOW), FreshHit)


def test_request_max_age_zero_revalidates() -> None:
    entry, _ = stale_entry("max-age=1500")
    decision = decide(req("max-age=0"), entry, NOW + 1)
    assert isinstance(decision, Revalidate) and decision.reason == "request"


def test_request_no_store_bypasses_the_cache() -> None:
    entry, _ = stale_entry("max-age=1500")
    assert decide(req("no-store"), entry, NOW) == Pass("request")


def test_request_only_if_cached_with_stale_response_is_504() -> None:
    entry, now = stale_entry("max-age=2")
    assert decide(req("only-if-cached"), entry, now) == GatewayTimeout()
    assert isinstance(decide(req("only-if-cached"), entry, NOW), FreshHit)


def test_request_directives_ignored_when_configured_except_only_if_cached() -> None:
    entry, now = stale_entry("max-age=1500")
    config = PolicyConfig(honor_request_cache_control=False)
    assert isinstance(decide(req("no-cache"), entry, NOW, config), FreshHit)
    assert decide(req("only-if-cached"), None, now, config) == GatewayTimeout()


def test_unknown_request_directive_is_ignored() -> None:
    entry, _ = stale_entry("max-age=1500")
    assert isinstance(decide(req("foo=bar, baz"), entry, NOW), FreshHit)


def test_stale_without_validators_is_refetched_with_a_fallback() -> None:
    entry, now = stale_entry("max-age=2", etag=False)
    assert decide(GET, entry, now) == Miss("stale", stale=entry)


# -- §4.3.4 304 updates -----------------------------------------------------------------------


def test_304_updates_headers_but_not_content_length() -> None:
    entry = make_stored_response("/b/k", GET, 200, f(("Content-Length", "4"), ("X", "a"),
                                                     ("ETag", '"v"')), b"body", NOW, NOW)
    fresh = update_from_304(entry, f(("Content-Length", "0"), ("X", "b"), ("ETag", '"v"'),
                                     ("Set-Cookie", "a=c")), NOW + 1, NOW + 1)
    assert fresh.headers.get("x") == "b" and fresh.headers.get("content-length") == "4"
    assert fresh.headers.get("set-cookie") is None
    assert entry.headers.get("x") == "a"  # input unchanged


# -- §4.3.5 freshening with HEAD ----------------------------------------------------------------

LM = "Mon, 01 Jan 2001 00:00:00 GMT"


def head_entry(*pairs: tuple[str, str]) -> StoredResponse:
    return make_stored_response("/b/k", GET, 200, f(("Content-Length", "4"), ("X", "a"),
                                                    ("Cache-Control", "max-age=1"), *pairs),
                                b"body", NOW, NOW)


@pytest.mark.parametrize("stored,head,matches", [
    ((), (("Content-Length", "4"),), True),  # no validators: the length decides
    ((), (), False),  # no validator, no length: no evidence, so stale
    ((("ETag", '"v"'),), (("ETag", '"v"'),), True),  # a validator alone is evidence
    ((), (("Content-Length", "5"),), False),
    ((("ETag", '"v"'),), (("ETag", '"v"'), ("Content-Length", "4")), True),
    ((("ETag", '"v"'),), (("ETag", '"w"'), ("Content-Length", "4")), False),
    ((("ETag", '"v"'),), (("ETag", 'W/"v"'),), True),  # weak comparison for a weak tag
    ((), (("ETag", '"v"'),), False),  # a validator the stored response lacks
    ((("Last-Modified", LM),), (("Last-Modified", LM),), True),
    ((("Last-Modified", LM),), (("Last-Modified", "Tue, 02 Jan 2001 00:00:00 GMT"),), False),
    ((("Last-Modified", LM),), (("Last-Modified", "garbage"),), False),
    ((("ETag", '"v"'), ("Last-Modified", LM)),
     (("ETag", '"v"'), ("Last-Modified", "Tue, 02 Jan 2001 00:00:00 GMT")), False),
])
def test_head_response_matches_when_every_validator_and_the_length_agree(
        stored: tuple[tuple[str, str], ...], head: tuple[tuple[str, str], ...],
        matches: bool) -> None:
    assert head_response_matches(head_entry(*stored), f(*head)) is matches


def test_head_200_updates_a_matching_stored_get_and_restarts_its_age() -> None:
    entry = head_entry(("ETag", '"v"'))
    head = f(("Content-Length", "4"), ("X", "b"), ("ETag", '"v"'),
             ("Cache-Control", "max-age=60"))
    updated = update_from_head(entry, head, NOW + 30, NOW + 30)
    assert updated.headers.get("x") == "b" and updated.headers.get("content-length") == "4"
    assert updated.response_time == NOW + 30 and not updated.invalidated
    assert updated.body == b"body" and entry.headers.get("x") == "a"


def test_head_200_for_another_representation_makes_the_stored_get_stale() -> None:
    entry = head_entry(("ETag", '"v"'))
    updated = update_from_head(entry, f(("ETag", '"w"'), ("X", "b")), NOW + 1, NOW + 1)
    assert updated.invalidated and updated.headers.get("x") == "a"
    assert updated.response_time == NOW


# -- §4.4 invalidation ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "M-SEARCH", "PATCH"])
def test_unsafe_and_unknown_methods_invalidate_on_success(method: str) -> None:
    assert invalidates(method, 200) and invalidates(method, 303)
    assert not invalidates(method, 500)


def test_location_of_another_origin_is_not_invalidated() -> None:
    assert invalidated_targets("/a/b", ["https://evil.example/a/b"], "cdn.example") == []
    assert invalidated_targets("/a/b", ["c"], "cdn.example") == ["/a/c"]


# -- RFC 9110 §14 ranges ----------------------------------------------------------------------


def test_several_ranges_are_coalesced_and_sorted() -> None:
    assert parse_ranges("bytes=5-6, 0-1, 2-3", 10) == [ByteRange(0, 3, 10), ByteRange(5, 6, 10)]


def test_no_satisfiable_range_is_416() -> None:
    assert parse_ranges("bytes=20-30, 40-", 10) == Unsatisfiable(10)


def test_range_syntax_error_ignores_the_field() -> None:
    assert parse_ranges("bytes=a-b", 10) is None
    assert parse_ranges("items=0-1", 10) is None


def test_multipart_byteranges_parts_carry_content_range() -> None:
    content_type, body = multipart_byteranges(
        b"0123456789", [ByteRange(0, 1, 10), ByteRange(5, 6, 10)], "text/plain", "XX")
    assert content_type == "multipart/byteranges; boundary=XX"
    assert body == (b"--XX\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01"
                    b"\r\n--XX\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-6/10\r\n\r\n"
                    b"56\r\n--XX--\r\n")
