"""Cache-Status (RFC 9211) members, appended in tier order."""

from __future__ import annotations

from httpcache.cache_status import CacheStatus, append_cache_status, parse_members


def test_hit_member_with_ttl() -> None:
    assert CacheStatus("cdn-edge-us-east", hit=True, ttl=57).format() == (
        "cdn-edge-us-east; hit; ttl=57")


def test_forwarded_member_with_status_stored_and_collapsed() -> None:
    member = CacheStatus("cdn-shield-a", fwd="uri-miss", fwd_status=200, stored=True,
                         collapsed=True)
    assert member.format() == "cdn-shield-a; fwd=uri-miss; fwd-status=200; stored; collapsed"


def test_names_that_are_not_tokens_are_quoted_strings() -> None:
    assert CacheStatus("my cache", hit=True).format() == '"my cache"; hit'
    assert CacheStatus("1st", detail='say "hi"').format() == '"1st"; detail="say \\"hi\\""'


def test_each_tier_appends_after_the_upstream_members() -> None:
    shield = CacheStatus("cdn-shield-a", fwd="uri-miss", stored=True).format()
    value = append_cache_status(shield, CacheStatus("cdn-edge-us-east", hit=True, ttl=57))
    assert value == "cdn-shield-a; fwd=uri-miss; stored, cdn-edge-us-east; hit; ttl=57"
    assert append_cache_status(None, CacheStatus("x", hit=True)) == "x; hit"


def test_parse_members_round_trip() -> None:
    value = "origin-cache; hit, cdn-edge; fwd=stale; fwd-status=304; ttl=-3"
    assert parse_members(value) == [
        ("origin-cache", {"hit": True}),
        ("cdn-edge", {"fwd": "stale", "fwd-status": "304", "ttl": "-3"})]
