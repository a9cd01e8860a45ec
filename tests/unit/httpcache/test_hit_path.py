"""The pure parts behind the hit path: indexed fields, the memoised stored view, wire heads."""

from __future__ import annotations

import dataclasses

from httpcache.dates import format_http_date
from httpcache.freshness import (
    current_age,
    freshness_lifetime,
    stored_age,
    stored_directives,
    stored_lifetime,
    stored_view,
)
from httpcache.headers import Fields
from httpcache.hit_path import DateLine, Wire, serialise
from httpcache.messages import StoredResponse
from httpcache.policy_config import PolicyConfig

NOW = 1_700_000_000.0


def stored(**headers: str) -> StoredResponse:
    return StoredResponse("/k", 200, Fields(headers.items()), b"body", NOW - 5, NOW - 4)


def test_indexed_fields_answer_like_plain_fields() -> None:
    items = [("Accept", "a"), ("X-A", "1"), ("x-a", "2"), ("Range", "bytes=0-1")]
    plain, indexed = Fields(items), Fields.indexed(items)
    for name in ("accept", "X-A", "x-a", "range", "missing"):
        assert indexed.first(name) == plain.first(name)
        assert indexed.get(name) == plain.get(name)
        assert indexed.get_all(name) == plain.get_all(name)
    assert indexed == plain and list(indexed) == items


def test_stored_view_equals_the_rules_it_memoises() -> None:
    response = stored(Date=format_http_date(NOW - 10), Age="3",
                      **{"Cache-Control": "max-age=60, stale-while-revalidate=5"})
    config = PolicyConfig()
    for now in (NOW - 100, NOW, NOW + 30, NOW + 1000):
        assert stored_age(response, now) == current_age(
            response.headers, response.request_time, response.response_time, now)
    assert stored_lifetime(response, config) == freshness_lifetime(
        200, response.headers, response.response_time, config)
    assert stored_directives(response, config).stale_while_revalidate == 5


def test_stored_view_is_per_config_and_not_copied_by_replace() -> None:
    response = stored(**{"Cache-Control": "max-age=60"})
    view = stored_view(response)
    assert stored_view(response) is view
    other = PolicyConfig(heuristic_fraction=0.5)
    assert stored_view(response, other).config == other
    changed = dataclasses.replace(response, headers=Fields([("Cache-Control", "max-age=5")]))
    assert changed.memo_policy is None and stored_lifetime(changed) == 5.0
    assert changed == dataclasses.replace(changed)  # memo fields do not take part in equality


def test_wire_heads() -> None:
    response = stored(**{"Cache-Control": "max-age=60", "Cache-Status": "up; hit",
                         "Surrogate-Key": "t", "Content-Length": "4", "ETag": '"e"'})
    wire = Wire(response, "edge", frozenset({"surrogate-key"}))
    assert wire.status_prefix == b"Cache-Status: up; hit, edge; hit; ttl="
    assert wire.head_200.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 4\r\n" in wire.head_200
    assert wire.head_200.count(b"Content-Length") == 1
    assert b"Accept-Ranges: bytes\r\n" in wire.head_200
    assert b"Surrogate-Key" not in wire.head_200
    assert b"Via: 1.1 edge\r\n" in wire.head_200
    assert wire.head_304.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert b"Content-Length" not in wire.head_304
    assert b"Content-Range: bytes */4\r\nContent-Length: 0\r\n" in wire.unsatisfiable
    assert wire.date_missing  # no Date stored: the hit path adds one per response


def test_wire_head_of_a_stored_204_has_no_content_length() -> None:
    response = dataclasses.replace(stored(**{"Cache-Control": "max-age=60"}), status=204,
                                   body=b"")
    wire = Wire(response, "edge", frozenset())
    assert wire.head_200.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Content-Length" not in wire.head_200  # RFC 9110 §8.6


def test_serialise_and_date_line() -> None:
    assert serialise(404, Fields([("A", "b")])) == b"HTTP/1.1 404 Not Found\r\nA: b\r\n"
    times = iter([NOW, NOW + 0.5, NOW + 1])
    line = DateLine(lambda: next(times))
    first = line()
    assert first == f"Date: {format_http_date(NOW)}\r\n".encode()
    assert line() is first
    assert line() == f"Date: {format_http_date(NOW + 1)}\r\n".encode()
