"""RFC 9110 conditionals and ranges, named after the rule and the outcome."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from origin.api.preconditions import (
    ByteRange,
    Outcome,
    evaluate_preconditions,
    http_date,
    parse_range,
    range_applies,
)
from origin.errors import InvalidRange

ETAG = "abc"
MODIFIED = datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)
AT = http_date(MODIFIED)
BEFORE = "Tue, 30 Apr 2024 12:00:00 GMT"
AFTER = "Thu, 02 May 2024 12:00:00 GMT"


def _eval(headers: dict[str, str], method: str = "GET") -> Outcome:
    return evaluate_preconditions(method, headers, ETAG, MODIFIED)


def test_http_date_is_imf_fixdate() -> None:
    assert AT == "Wed, 01 May 2024 12:00:00 GMT"


@pytest.mark.parametrize(("headers", "outcome"), [
    ({}, Outcome.PROCEED),
    ({"If-Match": '"abc"'}, Outcome.PROCEED),
    ({"If-Match": '"x", "abc"'}, Outcome.PROCEED),
    ({"If-Match": "*"}, Outcome.PROCEED),
    ({"If-Match": '"x"'}, Outcome.PRECONDITION_FAILED),
    ({"If-Match": 'W/"abc"'}, Outcome.PRECONDITION_FAILED),  # strong comparison
    ({"If-Unmodified-Since": BEFORE}, Outcome.PRECONDITION_FAILED),
    ({"If-Unmodified-Since": AT}, Outcome.PROCEED),
    ({"If-Match": '"abc"', "If-Unmodified-Since": BEFORE}, Outcome.PROCEED),
    ({"If-None-Match": '"abc"'}, Outcome.NOT_MODIFIED),
    ({"If-None-Match": 'W/"abc"'}, Outcome.NOT_MODIFIED),  # weak comparison
    ({"If-None-Match": "*"}, Outcome.NOT_MODIFIED),
    ({"If-None-Match": '"x"'}, Outcome.PROCEED),
    ({"If-Modified-Since": AT}, Outcome.NOT_MODIFIED),
    ({"If-Modified-Since": AFTER}, Outcome.NOT_MODIFIED),
    ({"If-Modified-Since": BEFORE}, Outcome.PROCEED),
    ({"If-Modified-Since": "not a date"}, Outcome.PROCEED),
    ({"If-None-Match": '"x"', "If-Modified-Since": AT}, Outcome.PROCEED),
    ({"If-Match": '"x"', "If-None-Match": '"abc"'}, Outcome.PRECONDITION_FAILED),
])
def test_evaluation_order(headers: dict[str, str], outcome: Outcome) -> None:
    assert _eval(headers) is outcome


def test_if_none_match_on_unsafe_method_is_precondition_failed() -> None:
    assert _eval({"If-None-Match": "*"}, "PUT") is Outcome.PRECONDITION_FAILED
    assert _eval({"If-Modified-Since": AT}, "PUT") is Outcome.PROCEED


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-9", ByteRange(0, 9)),
    ("bytes=5-", ByteRange(5, 99)),
    ("bytes=-10", ByteRange(90, 99)),
    ("bytes=-1000", ByteRange(0, 99)),
    ("bytes=90-1000", ByteRange(90, 99)),
    ("bytes = 1 - 2", ByteRange(1, 2)),
    ("bytes=9-2", None),          # invalid syntax: ignored
    ("bytes=0-1,5-6", None),      # multiple ranges: ignored, as S3 does
    ("items=0-1", None),
    ("bytes=-", None),
    ("bytes=a-b", None),
    (None, None),
])
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=0-", 0),
    ("bytes=-5", 0),
])
def test_unsatisfiable_ranges_raise_invalid_range(header: str, size: int) -> None:
    with pytest.raises(InvalidRange) as err:
        parse_range(header, size)
    assert err.value.status == 416 and err.value.object_size == size


def test_content_range() -> None:
    assert ByteRange(0, 9).content_range(100) == "bytes 0-9/100"
    assert ByteRange(0, 9).length == 10


def test_if_range() -> None:
    assert range_applies(None, ETAG, MODIFIED)
    assert range_applies('"abc"', ETAG, MODIFIED)
    assert not range_applies('"x"', ETAG, MODIFIED)
    assert not range_applies('W/"abc"', ETAG, MODIFIED)
    assert range_applies(AT, ETAG, MODIFIED)
    assert not range_applies(BEFORE, ETAG, MODIFIED)
