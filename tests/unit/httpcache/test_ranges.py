"""Single byte ranges from a complete body (RFC 9110 §14)."""

from __future__ import annotations

import pytest

from httpcache.ranges import ByteRange, Unsatisfiable, parse_range


@pytest.mark.parametrize("header,expected", [
    ("bytes=0-4", ByteRange(0, 4, 10)),
    ("bytes=5-", ByteRange(5, 9, 10)),
    ("bytes=-3", ByteRange(7, 9, 10)),
    ("bytes=-30", ByteRange(0, 9, 10)),
    ("bytes=8-100", ByteRange(8, 9, 10)),
    ("BYTES = 1-1", ByteRange(1, 1, 10)),
])
def test_satisfiable_ranges(header: str, expected: ByteRange) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=50-60", "bytes=-0"])
def test_unsatisfiable_ranges_are_416(header: str) -> None:
    assert parse_range(header, 10) == Unsatisfiable(10)


@pytest.mark.parametrize("header", ["items=0-1", "bytes=5-2", "bytes=0-1,3-4", "bytes=x-",
                                    "bytes=-", ""])
def test_unsupported_or_invalid_ranges_are_ignored(header: str) -> None:
    assert parse_range(header, 10) is None


def test_content_range_values() -> None:
    assert ByteRange(2, 5, 10).content_range() == "bytes 2-5/10"
    assert ByteRange(2, 5, 10).size == 4
    assert Unsatisfiable(10).content_range() == "bytes */10"
