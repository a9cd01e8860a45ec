"""Cache-Control parsing (RFC 9111 §5.2) and CDN-Cache-Control selection (RFC 9213)."""

from __future__ import annotations

from httpcache.cache_control import parse_cache_control, parse_sf_directives, response_directives
from httpcache.headers import Fields


def test_parse_directives_are_case_insensitive_with_arguments() -> None:
    cc = parse_cache_control("Max-Age=60, S-MAXAGE=30, Public")
    assert cc.max_age == 60 and cc.s_maxage == 30 and cc.public


def test_parse_quoted_arguments_and_field_lists() -> None:
    cc = parse_cache_control('private="Set-Cookie, X-User", no-cache="X-Debug"')
    assert cc.fields_of("private") == {"set-cookie", "x-user"}
    assert cc.fields_of("no-cache") == {"x-debug"}
    assert not cc.private and not cc.no_cache  # qualified forms


def test_parse_unqualified_private_and_no_cache() -> None:
    cc = parse_cache_control("private, no-cache")
    assert cc.private and cc.no_cache


def test_parse_first_duplicate_wins_and_junk_is_skipped() -> None:
    cc = parse_cache_control("max-age=10, max-age=99, ,, =oops, no-store")
    assert cc.max_age == 10 and cc.no_store


def test_parse_invalid_max_age_reads_as_zero() -> None:
    assert parse_cache_control("max-age=-5").max_age == 0
    assert parse_cache_control("max-age=abc").max_age == 0


def test_parse_huge_delta_seconds_is_capped() -> None:
    assert parse_cache_control("max-age=99999999999999").max_age == 2**31


def test_parse_structured_field_parameters_are_ignored() -> None:
    cc = parse_sf_directives("max-age=60;foo=bar, must-revalidate")
    assert cc is not None and cc.max_age == 60 and cc.must_revalidate


def test_unknown_extensions_are_kept_but_harmless() -> None:
    cc = parse_cache_control("community=UCI, max-age=5")
    assert cc.has("community") and cc.max_age == 5


def test_response_directives_prefer_cdn_cache_control() -> None:
    chosen = response_directives(Fields.of({"Cache-Control": "max-age=1",
                                            "CDN-Cache-Control": "max-age=2"}))
    assert chosen.targeted and chosen.cc.max_age == 2


def test_response_directives_fall_back_when_cdn_cache_control_is_empty() -> None:
    chosen = response_directives(Fields.of({"Cache-Control": "max-age=1",
                                            "CDN-Cache-Control": " "}))
    assert not chosen.targeted and chosen.cc.max_age == 1


def test_response_directives_custom_target_list_order() -> None:
    headers = Fields.of({"CDN-Cache-Control": "max-age=2", "Acme-CDN-Cache-Control": "max-age=3"})
    chosen = response_directives(headers, ("Acme-CDN-Cache-Control", "CDN-Cache-Control"))
    assert chosen.cc.max_age == 3
