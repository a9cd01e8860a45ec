"""``TTLCache``: values live ``ttl`` seconds of the caller's clock, misses are not stored."""

from __future__ import annotations

import pytest

from origin.ttl_cache import TTLCache


def test_value_is_returned_until_its_ttl_has_passed() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=2.0)
    cache.put("a", 1, now=10.0)
    assert cache.get("a", now=11.9) == 1
    assert cache.get("a", now=12.0) is None
    assert len(cache) == 0  # the expired entry is dropped when seen


def test_discard_forgets_at_once() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=60.0)
    cache.put("a", 1, now=0.0)
    cache.discard("a")
    cache.discard("never stored")
    assert cache.get("a", now=0.0) is None


def test_put_again_restarts_the_ttl() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=1.0)
    cache.put("a", 1, now=0.0)
    cache.put("a", 2, now=0.9)
    assert cache.get("a", now=1.5) == 2


def test_oldest_stored_goes_first_when_full() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=60.0, max_entries=2)
    for i, key in enumerate("abc"):
        cache.put(key, i, now=0.0)
    assert cache.get("a", now=0.0) is None
    assert (cache.get("b", now=0.0), cache.get("c", now=0.0)) == (1, 2)


def test_zero_ttl_stores_nothing_usable() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl=0.0)
    cache.put("a", 1, now=5.0)
    assert cache.get("a", now=5.0) is None


def test_bad_bounds_are_refused_with_the_numbers() -> None:
    with pytest.raises(ValueError, match="-1"):
        TTLCache(ttl=-1.0)
