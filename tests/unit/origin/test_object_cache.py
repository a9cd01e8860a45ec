"""``origin.object_cache.ObjectCache``: bounded by bytes, least recently used out first."""

from __future__ import annotations

from origin.object_cache import MAX_OBJECT, ObjectCache


def test_least_recently_used_leave_first_within_the_byte_budget() -> None:
    cache = ObjectCache(100)
    cache.put("a", b"x" * 40)
    cache.put("b", b"y" * 40)
    assert cache.get("a") == b"x" * 40  # a is now the most recent
    cache.put("c", b"z" * 40)
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    assert cache.bytes == 80 and len(cache) == 2


def test_too_large_objects_are_not_kept_and_ids_are_not_replaced() -> None:
    cache = ObjectCache(10 * MAX_OBJECT)
    cache.put("big", b"b" * (MAX_OBJECT + 1))
    assert cache.get("big") is None
    cache.put("id", b"first")
    cache.put("id", b"other")  # an id's bytes never change: the first stays
    assert cache.get("id") == b"first" and cache.bytes == 5
    cache.discard("id")
    cache.discard("id")
    assert cache.get("id") is None and cache.bytes == 0
