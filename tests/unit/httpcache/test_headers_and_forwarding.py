"""Header field lists, hop-by-hop removal, and what is forwarded each way."""

from __future__ import annotations

from httpcache.cache_key import cache_key, split_target, strip_query_params
from httpcache.cache_status import CacheStatus
from httpcache.forwarding import (
    client_response_fields,
    fill_request_fields,
    forward_request_fields,
    multipart_fields,
    part_fields,
    partial_base,
    unsatisfiable_fields,
    whole_fields,
)
from httpcache.headers import Fields, end_to_end
from httpcache.ranges import ByteRange, Unsatisfiable


def test_fields_are_case_insensitive_and_keep_duplicates() -> None:
    f = Fields([("Vary", "a"), ("vary", "b"), ("X", "1")])
    assert f.get("VARY") == "a, b" and f.first("vary") == "a"
    assert f.without("x").names() == {"vary"}
    assert f.with_field("Vary", "c").get_all("vary") == ["c"]


def test_end_to_end_drops_hop_by_hop_and_connection_options() -> None:
    f = Fields([("Connection", "close, X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "5"),
                ("Transfer-Encoding", "chunked"), ("TE", "trailers"), ("ETag", '"e"')])
    assert list(end_to_end(f)) == [("ETag", '"e"')]


def test_forward_request_fields_append_via_and_forwarded_for() -> None:
    client = Fields([("Host", "edge"), ("Via", "1.1 lb"), ("X-Forwarded-For", "1.1.1.1"),
                     ("Expect", "100-continue"), ("X-Edge", "s"), ("Range", "bytes=0-1")])
    out = forward_request_fields(client, via="cdn-edge", peer="2.2.2.2",
                                 drop=frozenset({"x-edge"}))
    assert out.get("via") == "1.1 lb, 1.1 cdn-edge"
    assert out.get("x-forwarded-for") == "1.1.1.1, 2.2.2.2"
    assert out.get("range") == "bytes=0-1"
    assert "host" not in out.names() and "expect" not in out.names()
    assert "x-edge" not in out.names()


def test_fill_request_fields_drop_client_preconditions_and_add_validators() -> None:
    client = Fields([("If-None-Match", '"client"'), ("Range", "bytes=0-1"),
                     ("Accept", "*/*")])
    out = fill_request_fields(client, via="v", peer=None,
                              validators=Fields([("If-None-Match", '"ours"')]))
    assert out.get_all("if-none-match") == ['"ours"']
    assert "range" not in out.names() and out.get("accept") == "*/*"


def test_client_response_fields_append_cache_status_and_replace_age() -> None:
    upstream = Fields([("Age", "3"), ("Cache-Status", "shield; hit"), ("Surrogate-Key", "a"),
                       ("ETag", '"e"')])
    out = client_response_fields(upstream, CacheStatus("edge", hit=True), via="edge", age=9,
                                 strip=frozenset({"surrogate-key"}))
    assert out.get("age") == "9"
    assert out.get("cache-status") == "shield; hit, edge; hit"
    assert "surrogate-key" not in out.names()


def test_cache_key_strips_only_named_params_and_keeps_order() -> None:
    path, query = split_target("/b/k?z=1&sig=abc&a=2&exp=5")
    assert cache_key(path, strip_query_params(query, frozenset({"sig", "exp"}))) == "/b/k?z=1&a=2"
    assert cache_key("/b/k", "") == "/b/k"


def test_answer_fields_for_each_kind_of_answer() -> None:
    stored = Fields([("Content-Type", "text/plain"), ("Content-Encoding", "gzip"),
                     ("Content-Length", "10")])
    assert list(whole_fields(stored, 200, 10))[-2:] == [("Content-Length", "10"),
                                                       ("Accept-Ranges", "bytes")]
    assert whole_fields(stored.appended("Accept-Ranges", "none"), 200, 10).get(
        "accept-ranges") == "none"  # the upstream's word stands
    assert "accept-ranges" not in whole_fields(stored, 404, 10)
    assert "content-length" not in whole_fields(stored, 204, 0)  # RFC 9110 §8.6
    part = part_fields(partial_base(stored), ByteRange(2, 5, 10))
    assert part.get("content-range") == "bytes 2-5/10" and part.get_all("content-length") == ["4"]
    multi = multipart_fields(part, "multipart/byteranges; boundary=x")
    assert "content-range" not in multi and "content-length" not in multi
    assert multi.get_all("content-type") == ["multipart/byteranges; boundary=x"]
    bad = unsatisfiable_fields(stored, Unsatisfiable(10))
    assert list(bad) == [("Content-Range", "bytes */10"), ("Content-Length", "0")]


def test_replaced_is_without_then_appended_on_indexed_and_plain_fields() -> None:
    items = [("A", "1"), ("Via", "x"), ("a", "2"), ("B", "3"), ("via", "y")]
    for fields in (Fields(items), Fields.indexed(items)):
        out = fields.replaced(frozenset({"via", "zz"}), [("Via", "z"), ("A", "4")])
        assert list(out) == [("A", "1"), ("a", "2"), ("B", "3"), ("Via", "z"), ("A", "4")]
        assert out.get_all("a") == ["1", "2", "4"] and out.get("via") == "z"
        untouched = fields.replaced(frozenset({"zz"}), [("A", "5")])
        assert untouched.get_all("a") == ["1", "2", "5"]
    # an indexed copy extends copies of the value lists, never the original's
    indexed = Fields.indexed(items)
    indexed.replaced(frozenset(), [("A", "9")])
    assert indexed.get_all("a") == ["1", "2"]


def test_forwarded_fields_in_order_from_indexed_and_plain_requests() -> None:
    items = [("Host", "edge"), ("Connection", "x-hop"), ("X-Hop", "1"), ("Accept", "*/*"),
             ("If-None-Match", '"c"'), ("Via", "1.0 lb"), ("Content-Length", "0"),
             ("X-Forwarded-For", "1.1.1.1"), ("Cookie", "c=1")]
    for client in (Fields(items), Fields.indexed(items)):
        assert list(forward_request_fields(client, via="e", peer="2.2.2.2")) == [
            ("Accept", "*/*"), ("If-None-Match", '"c"'), ("Content-Length", "0"),
            ("Cookie", "c=1"), ("Via", "1.0 lb, 1.1 e"),
            ("X-Forwarded-For", "1.1.1.1, 2.2.2.2")]
        assert list(fill_request_fields(client, via="e", peer=None)) == [
            ("Accept", "*/*"), ("X-Forwarded-For", "1.1.1.1"), ("Cookie", "c=1"),
            ("Via", "1.0 lb, 1.1 e")]


def test_request_and_response_removals_do_not_share_a_memo() -> None:
    # same sets and flags on both sides: each still removes its own names
    request = Fields.indexed([("Range", "bytes=0-1"), ("Age", "1"), ("Accept", "*/*")])
    assert list(fill_request_fields(request, via="e", peer="p")) == [
        ("Age", "1"), ("Accept", "*/*"), ("Via", "1.1 e"), ("X-Forwarded-For", "p")]
    response = Fields.indexed([("Range", "r"), ("Age", "1"), ("ETag", '"e"')])
    out = client_response_fields(response, CacheStatus("edge", hit=True), via="e", age=2)
    assert list(out)[:2] == [("Range", "r"), ("ETag", '"e"')] and out.get("age") == "2"
