"""ECScheme: encode/decode with every combination of lost fragments, segment arithmetic."""

from __future__ import annotations

import itertools
import os

import pytest

from origin.erasure import (
    ECScheme,
    ErasureError,
    InsufficientFragmentsError,
    SegmentSlice,
    cached_scheme,
)

SEGMENT = 4096


@pytest.fixture(scope="module")
def scheme() -> ECScheme:
    return ECScheme(6, 3, SEGMENT, "isa_l_rs_cauchy")


@pytest.mark.parametrize("size", [0, 1, 100, SEGMENT - 1, SEGMENT])
def test_decode_from_every_combination_of_up_to_m_lost_fragments(
    scheme: ECScheme, size: int
) -> None:
    data = os.urandom(size)
    fragments = scheme.encode(data)
    assert len(fragments) == 9
    for lost in range(scheme.nparity + 1):
        for missing in itertools.combinations(range(9), lost):
            kept = {i: f for i, f in enumerate(fragments) if i not in missing}
            assert scheme.decode(kept, size) == data, (size, missing)


def test_decode_with_more_than_m_lost_fragments_fails(scheme: ECScheme) -> None:
    fragments = scheme.encode(b"abc" * 100)
    with pytest.raises(InsufficientFragmentsError):
        scheme.decode({i: fragments[i] for i in range(5)}, 300)


def test_decode_refuses_a_length_the_metadata_does_not_expect(scheme: ECScheme) -> None:
    fragments = scheme.encode(b"abc")
    with pytest.raises(ErasureError):
        scheme.decode(dict(enumerate(fragments)), 4)


def test_fragment_length_matches_encode(scheme: ECScheme) -> None:
    for size in (0, 1, 1000, SEGMENT):
        assert scheme.fragment_length(size) == len(scheme.encode(os.urandom(size))[0])


def test_oversized_segment_and_bad_scheme_are_errors(scheme: ECScheme) -> None:
    with pytest.raises(ErasureError):
        scheme.encode(b"x" * (SEGMENT + 1))
    with pytest.raises(ErasureError):
        ECScheme(6, 3, SEGMENT, "no_such_backend")
    with pytest.raises(ErasureError):
        ECScheme(6, 0, SEGMENT, "isa_l_rs_cauchy")


def test_segment_count_and_lengths(scheme: ECScheme) -> None:
    assert scheme.segment_count(0) == 0
    assert scheme.segment_count(1) == 1
    assert scheme.segment_count(SEGMENT) == 1
    assert scheme.segment_count(SEGMENT + 1) == 2
    assert scheme.segment_length(0, SEGMENT + 1) == SEGMENT
    assert scheme.segment_length(1, SEGMENT + 1) == 1
    with pytest.raises(ErasureError):
        scheme.segment_length(2, SEGMENT + 1)


def test_segment_slices_cover_exactly_the_range(scheme: ECScheme) -> None:
    size = 3 * SEGMENT + 10
    assert scheme.segment_slices(size, 0, size - 1) == [
        SegmentSlice(0, 0, SEGMENT), SegmentSlice(1, 0, SEGMENT), SegmentSlice(2, 0, SEGMENT),
        SegmentSlice(3, 0, 10)]
    assert scheme.segment_slices(size, SEGMENT - 1, SEGMENT) == [
        SegmentSlice(0, SEGMENT - 1, SEGMENT), SegmentSlice(1, 0, 1)]
    assert scheme.segment_slices(size, 5, 5) == [SegmentSlice(0, 5, 6)]
    for first, last in [(0, 0), (1, SEGMENT * 2), (SEGMENT * 3, size - 1), (7, size - 3)]:
        slices = scheme.segment_slices(size, first, last)
        assert sum(s.length for s in slices) == last - first + 1
    with pytest.raises(ErasureError):
        scheme.segment_slices(size, 0, size)


def test_cached_scheme_reuses_drivers() -> None:
    assert cached_scheme(4, 2, SEGMENT, "isa_l_rs_cauchy") is \
        cached_scheme(4, 2, SEGMENT, "isa_l_rs_cauchy")
