"""Entity-tag comparison and client preconditions answered from cache (RFC 9110 §13)."""

from __future__ import annotations

from httpcache.conditional import (
    EntityTag,
    if_range_matches,
    not_modified,
    parse_entity_tag,
    parse_entity_tag_list,
    strong_compare,
    weak_compare,
)
from httpcache.dates import format_http_date
from httpcache.headers import Fields

T = 1_700_000_000.0


def test_parse_entity_tags() -> None:
    assert parse_entity_tag('"abc"') == EntityTag("abc")
    assert parse_entity_tag('W/"abc"') == EntityTag("abc", weak=True)
    assert parse_entity_tag("abc") is None
    assert parse_entity_tag_list('"a", W/"b" ,"c"') == [
        EntityTag("a"), EntityTag("b", weak=True), EntityTag("c")]
    assert parse_entity_tag_list("*") is None


def test_strong_comparison_table_from_rfc_9110() -> None:
    # RFC 9110 §8.8.3.2 example table
    w1, w2, s1 = EntityTag("1", True), EntityTag("2", True), EntityTag("1")
    assert not strong_compare(w1, w1) and weak_compare(w1, w1)
    assert not strong_compare(w1, w2) and not weak_compare(w1, w2)
    assert not strong_compare(w1, s1) and weak_compare(w1, s1)
    assert strong_compare(s1, s1) and weak_compare(s1, s1)


def test_not_modified_if_none_match_uses_weak_comparison() -> None:
    stored = Fields.of({"ETag": '"v1"'})
    assert not_modified("GET", Fields.of({"If-None-Match": 'W/"v1"'}), 200, stored)
    assert not_modified("HEAD", Fields.of({"If-None-Match": '"x", "v1"'}), 200, stored)
    assert not not_modified("GET", Fields.of({"If-None-Match": '"v2"'}), 200, stored)


def test_not_modified_if_none_match_star_matches_any_representation() -> None:
    assert not_modified("GET", Fields.of({"If-None-Match": "*"}), 200, Fields())


def test_not_modified_if_modified_since() -> None:
    stored = Fields.of({"Last-Modified": format_http_date(T)})
    assert not_modified("GET", Fields.of({"If-Modified-Since": format_http_date(T)}), 200,
                        stored)
    assert not not_modified("GET", Fields.of({"If-Modified-Since": format_http_date(T - 1)}),
                            200, stored)


def test_not_modified_if_none_match_wins_over_if_modified_since() -> None:
    stored = Fields.of({"ETag": '"v1"', "Last-Modified": format_http_date(T)})
    request = Fields.of({"If-None-Match": '"v2"', "If-Modified-Since": format_http_date(T)})
    assert not not_modified("GET", request, 200, stored)


def test_not_modified_only_for_get_head_and_200() -> None:
    stored = Fields.of({"ETag": '"v1"'})
    request = Fields.of({"If-None-Match": '"v1"'})
    assert not not_modified("POST", request, 200, stored)
    assert not not_modified("GET", request, 404, stored)


def test_if_range_needs_strong_etag_or_exact_date() -> None:
    stored = Fields.of({"ETag": '"v1"', "Last-Modified": format_http_date(T)})
    assert if_range_matches('"v1"', stored)
    assert not if_range_matches('W/"v1"', stored)
    assert if_range_matches(format_http_date(T), stored)
    assert not if_range_matches(format_http_date(T + 1), stored)
