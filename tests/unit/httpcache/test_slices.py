"""Slice arithmetic, representation matching and combining partial content (RFC 9111
§3.3–3.4, RFC 9110 §14.4, §8.8.2.2), pure."""

from __future__ import annotations

import pytest

from httpcache.dates import format_http_date
from httpcache.headers import Fields
from httpcache.ranges import ByteRange
from httpcache.slices import (
    ContentRange,
    Representation,
    SliceCoverage,
    SliceLayout,
    UnsliceableKeys,
    combined_fields,
    first_slice_guess,
    is_slice_of,
    is_suffix_of,
    parse_content_range,
    record_representation,
    representation_of,
    slice_request_range,
    slice_slot,
    strong_validator,
    suffix_length,
    suffix_request_range,
)

LAYOUT = SliceLayout(size=100, total=350)  # slices 0-99, 100-199, 200-299, 300-349


def test_layout_counts_and_spans_with_a_short_last_slice() -> None:
    assert LAYOUT.count == 4
    assert LAYOUT.span(0) == (0, 99)
    assert LAYOUT.span(3) == (300, 349)
    assert SliceLayout(100, 300).count == 3
    assert SliceLayout(100, 1).count == 1


def test_needed_slices_of_one_range_of_several_and_of_the_whole() -> None:
    assert LAYOUT.needed([ByteRange(150, 250, 350)]) == [1, 2]
    assert LAYOUT.needed([ByteRange(0, 0, 350)]) == [0]
    assert LAYOUT.needed([ByteRange(0, 10, 350), ByteRange(20, 30, 350),
                          ByteRange(320, 349, 350)]) == [0, 3]
    assert LAYOUT.needed(None) == [0, 1, 2, 3]


def test_pieces_cover_exactly_the_requested_bytes() -> None:
    assert LAYOUT.pieces(150, 250) == [(1, 50, 100), (2, 0, 51)]
    assert LAYOUT.pieces(300, 349) == [(3, 0, 50)]
    for first, last in [(0, 349), (99, 100), (5, 5), (199, 300)]:
        pieces = LAYOUT.pieces(first, last)
        assert sum(end - offset for _i, offset, end in pieces) == last - first + 1


def test_slice_request_range_is_aligned_to_the_slice_size() -> None:
    assert slice_request_range(1024, 0) == "bytes=0-1023"
    assert slice_request_range(1024, 3) == "bytes=3072-4095"


@pytest.mark.parametrize("value,expected", [
    ("bytes 0-99/350", ContentRange(0, 99, 350)),
    ("BYTES 300-349/350", ContentRange(300, 349, 350)),
    ("bytes 0-99/*", ContentRange(0, 99, None)),
])
def test_content_range_is_parsed(value: str, expected: ContentRange) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize("value", [None, "", "bytes */350", "bytes 9-5/350",
                                   "bytes 0-350/350", "items 0-1/2", "bytes 0-1"])
def test_invalid_content_range_is_none(value: str | None) -> None:
    """RFC 9110 §14.4: last-pos before first-pos, or a complete length not beyond
    last-pos, make the field invalid."""
    assert parse_content_range(value) is None


def test_is_slice_of_needs_exactly_the_span_and_the_complete_length() -> None:
    assert is_slice_of(ContentRange(100, 199, 350), LAYOUT, 1)
    assert is_slice_of(ContentRange(300, 349, 350), LAYOUT, 3)
    assert not is_slice_of(ContentRange(100, 150, 350), LAYOUT, 1)  # origin cut it short
    assert not is_slice_of(ContentRange(100, 199, 400), LAYOUT, 1)  # another length
    assert not is_slice_of(ContentRange(100, 199, None), LAYOUT, 1)
    assert not is_slice_of(None, LAYOUT, 1)


def test_strong_etag_is_a_strong_validator_weak_is_not() -> None:
    assert strong_validator(Fields([("ETag", '"abc"')])) == 'etag:"abc"'
    assert strong_validator(Fields([("ETag", 'W/"abc"')])) is None
    # a weak ETag is not made strong by a Last-Modified
    assert strong_validator(Fields([("ETag", 'W/"abc"'),
                                    ("Last-Modified", format_http_date(0))])) is None


def test_last_modified_is_strong_only_60_seconds_before_date() -> None:
    """RFC 9110 §8.8.2.2: "the presented Last-Modified time is at least 60 seconds before
    the Date value"."""
    old = Fields([("Last-Modified", format_http_date(1_000_000)),
                  ("Date", format_http_date(1_000_060))])
    recent = Fields([("Last-Modified", format_http_date(1_000_000)),
                     ("Date", format_http_date(1_000_059))])
    assert strong_validator(old) == "lm:1000000"
    assert strong_validator(recent) is None
    assert strong_validator(Fields([("Last-Modified", format_http_date(1_000_000))])) is None


def test_representations_differ_by_validator_or_length() -> None:
    headers = Fields([("ETag", '"v1"')])
    assert representation_of(headers, 350) == Representation('etag:"v1"', 350)
    assert representation_of(headers, 350) != representation_of(headers, 351)
    assert representation_of(headers, 350) != representation_of(Fields([("ETag", '"v2"')]),
                                                                 350)
    assert representation_of(headers, None) is None
    assert record_representation(Fields([("ETag", '"v1"'), ("Content-Length", "350")])) \
        == Representation('etag:"v1"', 350)


def test_slots_name_the_representation_and_the_slice() -> None:
    rep = Representation('etag:"v1"', 350)
    assert slice_slot(rep, 100, 2) != slice_slot(rep, 100, 3)
    assert slice_slot(rep, 100, 2) != slice_slot(Representation('etag:"v2"', 350), 100, 2)
    assert slice_slot(rep, 100, 2) != slice_slot(rep, 200, 2)


@pytest.mark.parametrize("value,expected", [
    (None, 0), ("bytes=0-10", 0), ("bytes=250-", 2), ("bytes=-10", 0),
    ("bytes=320-330, 120-130", 1), ("items=5-9", 0), ("bytes=x", 0),
])
def test_first_slice_guess_before_the_length_is_known(value: str | None,
                                                      expected: int) -> None:
    assert first_slice_guess(value, 100) == expected


def test_combining_uses_the_new_fields_aside_from_content_range() -> None:
    """RFC 9111 §3.4: "a cache MUST use the header fields provided in the new response,
    aside from Content-Range, to replace all instances of the corresponding header fields in
    the stored response"."""
    stored = Fields([("ETag", '"v1"'), ("Cache-Control", "max-age=5"), ("X-Old", "kept"),
                     ("Content-Length", "350")])
    new = Fields([("ETag", '"v1"'), ("Cache-Control", "max-age=60"),
                  ("Content-Range", "bytes 100-199/350"), ("Content-Length", "100")])
    combined = combined_fields(stored, new, 350)
    assert combined.get_all("cache-control") == ["max-age=60"]
    assert combined.first("x-old") == "kept"
    assert combined.first("content-range") is None
    assert combined.get_all("content-length") == ["350"]
    assert combined.first("accept-ranges") == "bytes"


def test_first_response_makes_the_record_fields() -> None:
    new = Fields([("ETag", '"v1"'), ("Content-Range", "bytes 0-99/350"),
                  ("Accept-Ranges", "bytes")])
    combined = combined_fields(None, new, 350)
    assert combined.first("content-length") == "350"
    assert combined.get_all("accept-ranges") == ["bytes"]


def test_coverage_says_hit_partial_or_miss() -> None:
    """RFC 9211 §2.2 fwd=partial: "The cache was able to select a partial response for the
    request, but it did not contain all of the requested ranges"."""
    assert SliceCoverage(needed=3, cached=3).forward_reason(had_record=True) is None
    assert SliceCoverage(needed=3, cached=1).forward_reason(had_record=True) == "partial"
    assert SliceCoverage(needed=3, cached=0).forward_reason(had_record=True) == "partial"
    assert SliceCoverage(needed=1, cached=0).forward_reason(had_record=False) == "uri-miss"


def test_unsliceable_keys_expire_and_are_bounded() -> None:
    keys = UnsliceableKeys(ttl=10, max_keys=2)
    keys.add("/a", 100.0, whole=True)
    keys.add("/b", 101.0, whole=False)
    assert keys.verdict("/a", 105.0) is True and keys.verdict("/b", 105.0) is False
    assert keys.verdict("/a", 110.0) is None and len(keys) == 1  # expired and dropped
    keys.add("/c", 111.0, whole=True)
    keys.add("/d", 111.0, whole=True)  # over the bound: the oldest (/b) goes
    assert keys.verdict("/b", 111.0) is None and len(keys) == 2
    assert keys.verdict("/nothing", 0.0) is None


@pytest.mark.parametrize("value,expected", [
    ("bytes=-10", 10), ("bytes= -10 ", 10), ("BYTES=-5", 5), ("bytes=-0", None),
    ("bytes=0-10", None), ("bytes=-10,0-5", None), ("items=-5", None), (None, None),
])
def test_suffix_length_of_one_suffix_range(value: str | None, expected: int | None) -> None:
    assert suffix_length(value) == expected


def test_cold_suffix_is_asked_as_at_least_one_slice() -> None:
    assert suffix_request_range(100, 10) == "bytes=-100"
    assert suffix_request_range(100, 250) == "bytes=-250"


def test_whole_slices_within_a_span_and_suffix_answers() -> None:
    assert list(LAYOUT.within(0, 349)) == [0, 1, 2, 3]
    assert list(LAYOUT.within(250, 349)) == [3]  # 200-299 only partly
    assert list(LAYOUT.within(200, 349)) == [2, 3]
    assert list(LAYOUT.within(101, 198)) == []
    assert list(LAYOUT.within(100, 199)) == [1]
    assert is_suffix_of(ContentRange(250, 349, 350), 350)
    assert not is_suffix_of(ContentRange(250, 348, 350), 350)
    assert not is_suffix_of(ContentRange(250, 349, None), 350)
