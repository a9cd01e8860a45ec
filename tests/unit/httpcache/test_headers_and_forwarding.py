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
