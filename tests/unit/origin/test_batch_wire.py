"""The batch endpoints' framing: round trips, and every truncation or bad length refused."""

from __future__ import annotations

import zlib

import pytest

from origin import batch_wire as bw


def test_store_request_round_trips_in_order() -> None:
    items = [bw.StoreItem(f"obj/0/{i}".encode(), bytes([i]) * (i * 100), zlib.crc32(
        bytes([i]) * (i * 100))) for i in range(5)]
    decoded = bw.decode_store(b"".join(bw.encode_store(items)), max_id=256, max_payload=1000)
    assert [(d.fragment_id, bytes(d.payload), d.crc32) for d in decoded] == \
        [(i.fragment_id, i.payload, i.crc32) for i in items]


def test_store_request_refuses_truncation_and_out_of_range_lengths() -> None:
    body = b"".join(bw.encode_store([bw.StoreItem(b"a/0/0", b"payload", 1)]))
    for cut in (1, 5, len(body) - 1):
        with pytest.raises(bw.BatchFormatError):
            bw.decode_store(body[:cut], max_id=256, max_payload=1000)
    with pytest.raises(bw.BatchFormatError, match="at most 3"):
        bw.decode_store(body, max_id=256, max_payload=3)
    with pytest.raises(bw.BatchFormatError, match="1..4"):
        bw.decode_store(body, max_id=4, max_payload=1000)
    empty_id = b"".join(bw.encode_store([bw.StoreItem(b"", b"x", 1)]))
    with pytest.raises(bw.BatchFormatError):
        bw.decode_store(empty_id, max_id=256, max_payload=1000)


def test_store_answer_round_trips_and_checks_its_count() -> None:
    entries = [bw.StoredItem(0, 3, 1 << 40, 700), bw.StoredItem(bw.STATUS["io-error"], 0, 0, 0)]
    body = bw.encode_stored(entries)
    assert bw.decode_stored(body, 2) == entries
    assert bw.decode_stored(body, 2)[0].ok and not bw.decode_stored(body, 2)[1].ok
    with pytest.raises(bw.BatchFormatError):
        bw.decode_stored(body, 3)


def test_fetch_request_and_answer_round_trip() -> None:
    wanted = [bw.FetchItem(1, 0, 10, b"o/0/0"), bw.FetchItem(2, 99, 0, b"")]
    assert bw.decode_fetch(bw.encode_fetch(wanted), max_id=256) == wanted
    answers = [bw.FetchedItem(0, b"0123456789"),
               bw.FetchedItem(bw.STATUS["checksum-mismatch"], b"payload CRC differs")]
    assert bw.decode_fetched(b"".join(bw.encode_fetched(answers)), 2) == answers


def test_fetch_answer_refuses_missing_or_extra_bytes() -> None:
    body = b"".join(bw.encode_fetched([bw.FetchedItem(0, b"abc")]))
    with pytest.raises(bw.BatchFormatError):
        bw.decode_fetched(body[:-1], 1)
    with pytest.raises(bw.BatchFormatError):
        bw.decode_fetched(body + b"x", 1)
    with pytest.raises(bw.BatchFormatError):
        bw.decode_fetched(body, 2)
    with pytest.raises(bw.BatchFormatError):
        bw.decode_fetch(bw.encode_fetch([bw.FetchItem(1, 0, 1, b"id")])[:-1], max_id=256)


def test_status_codes_name_the_single_endpoint_kinds() -> None:
    assert set(bw.STATUS) == {"ok", "not-found", "checksum-mismatch", "corrupt-record",
                              "fragment-id-mismatch", "io-error"}
    assert all(bw.KIND[code] == kind for kind, code in bw.STATUS.items())


def test_plain_tuple_decoders_and_frames_agree_with_the_named_ones() -> None:
    frames = [bw.fetch_frame(1, 24 * i, 700, f"o/0/{i}".encode()) for i in range(3)]
    items = [bw.FetchItem(1, 24 * i, 700, f"o/0/{i}".encode()) for i in range(3)]
    assert b"".join(frames) == bw.encode_fetch(items)
    fetched = [bw.FetchedItem(0, b"abc"), bw.FetchedItem(3, b"gone"), bw.FetchedItem(0, b"")]
    body = b"".join(bw.encode_fetched(fetched))
    assert bw.decode_fetched_tuples(body, 3) == [(0, b"abc"), (3, b"gone"), (0, b"")]
    with pytest.raises(bw.BatchFormatError):
        bw.decode_fetched_tuples(body + b"x", 3)
    stored = [bw.StoredItem(0, 2, 4096, 760), bw.StoredItem(5, 0, 0, 0)]
    answer = bw.encode_stored(stored)
    assert bw.decode_stored_tuples(answer, 2) == [(0, 2, 4096, 760), (5, 0, 0, 0)]
    with pytest.raises(bw.BatchFormatError):
        bw.decode_stored_tuples(answer, 3)
