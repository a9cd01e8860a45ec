"""A stored response packed as one record (``httpcache.stored_record``): it reads back equal,
and what cannot be packed says so."""

from __future__ import annotations

import pytest

from httpcache import stored_record
from httpcache.headers import Fields
from httpcache.messages import BodyFile, StoredResponse


def response(**changes: object) -> StoredResponse:
    fields = Fields([("Content-Type", "text/plain"), ("Cache-Control", "max-age=60"),
                     ("X-Obs", "caf\xe9"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    base: dict[str, object] = dict(
        cache_key="/b/k?x=1", status=203, headers=fields, body=b"\x00body\xff" * 50,
        request_time=1_700_000_000.25, response_time=1_700_000_000.5,
        surrogate_keys=frozenset({"t1", "t2"}))
    base.update(changes)
    return StoredResponse(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("changes", [{}, {"invalidated": True}, {"surrogate_keys": frozenset()},
                                     {"body": b""}, {"headers": Fields()}])
def test_a_record_reads_back_equal(changes: dict[str, object]) -> None:
    stored = response(**changes)
    record = stored_record.pack(stored)
    assert record is not None
    again = stored_record.unpack(record)
    assert again == stored
    assert list(again.headers) == list(stored.headers)
    assert stored_record.key_of(record) == "/b/k?x=1"
    assert sorted(stored_record.tags_of(record)) == sorted(stored.surrogate_keys)
    assert again.memo_wire is None and again.memo_policy is None


def test_a_soft_purge_flips_only_the_flag() -> None:
    record = stored_record.pack(response())
    assert record is not None
    assert stored_record.unpack(stored_record.invalidated(record)) == response(invalidated=True)


@pytest.mark.parametrize("changes", [
    {"vary": (("accept", "text/html"),)},
    {"slot": "#slice:0"},
    {"file": BodyFile("/tmp/x", 10), "body": b""},
    {"body": b"x" * (stored_record.PACK_LIMIT + 1)},
    {"cache_key": "/b/\u2603"},  # not Latin-1
    {"headers": Fields([("X-Nul", "a\x00b")])},  # kept unpacked by the response itself
])
def test_what_cannot_be_a_record_stays_an_object(changes: dict[str, object]) -> None:
    assert stored_record.pack(response(**changes)) is None
