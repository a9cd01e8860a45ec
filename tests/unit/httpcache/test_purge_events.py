"""Purge events: validation, application to a store, sequence bookkeeping (no Redis)."""

from __future__ import annotations

import pytest

from httpcache.errors import PurgeError
from httpcache.headers import Fields
from httpcache.messages import StoredResponse
from httpcache.metrics import CacheMetrics
from httpcache.purge_subscriber import PurgeEvent, PurgeSettings, PurgeSubscriber, apply_event
from httpcache.store import MemoryStore


def filled_store() -> MemoryStore:
    store = MemoryStore(max_bytes=1 << 20)
    for key, tags in (("/b/a", ("t1",)), ("/b/dir/x", ("t2",)), ("/c/y", ())):
        store.put(StoredResponse(key, 200, Fields(), b"x", 0.0, 0.0, frozenset(tags)))
    return store


def test_event_from_json_validates_fields() -> None:
    event = PurgeEvent.from_json({"seq": 3, "tags": ["a"], "urls": ["/b/a"], "soft": True,
                                  "created_at": 1.0})
    assert event == PurgeEvent(3, ("a",), ("/b/a",), (), True, created_at=1.0)
    bad: object
    for bad in ([], {"seq": -1}, {"seq": "1"}, {"tags": "a"}, {"soft": "yes"}, {"created_at": "x"}):
        with pytest.raises(PurgeError):
            PurgeEvent.from_json(bad)


def test_apply_event_by_tag_url_and_prefix() -> None:
    store = filled_store()
    result = apply_event(store, PurgeEvent(1, tags=("t1",), prefixes=("/b/dir/",)), now=0.0)
    assert result.removed == 2 and len(store) == 1


def test_apply_soft_event_invalidates() -> None:
    store = filled_store()
    assert apply_event(store, PurgeEvent(1, urls=("/c/y",), soft=True), now=0.0).invalidated == 1
    assert store.peek("/c/y").invalidated  # type: ignore[union-attr]


def subscriber(control_url: str = "") -> PurgeSubscriber:
    settings = PurgeSettings(redis_url="redis://127.0.0.1:1", control_url=control_url)
    return PurgeSubscriber(settings, filled_store(), CacheMetrics("test"))


async def test_subscriber_skips_events_already_applied() -> None:
    sub = subscriber()
    assert sub.apply(PurgeEvent(1, tags=("t1",)))
    assert not sub.apply(PurgeEvent(1, tags=("t1",)))
    assert sub.last_seq == 1
    assert sub.metrics.registry.get_sample_value("cdn_purge_last_seq") == 1


async def test_subscriber_gap_applies_but_keeps_last_seq_for_catch_up() -> None:
    sub = subscriber(control_url="http://127.0.0.1:1")
    sub.apply(PurgeEvent(3, tags=("t1",)))
    assert "/b/a" not in sub.store
    assert sub.last_seq == 0  # the catch-up will ask for everything after 0


async def test_subscriber_ignores_malformed_messages() -> None:
    sub = subscriber()
    assert not sub.apply_message(b"not json")
    assert not sub.apply_message(b'{"seq": "x"}')
    assert sub.apply_message(b'{"seq": 1, "urls": ["/b/a"]}')


def test_event_age_comes_from_its_log_timestamp() -> None:
    event = PurgeEvent.from_json({"seq": 3, "tags": ["a"], "created_at": 1000.0})
    assert event.age(now=1010.0) == 10.0
    assert PurgeEvent.from_json({"seq": 3, "tags": ["a"]}).age(now=1010.0) == 0.0
    assert event.age(now=990.0) == 0.0  # clock skew never makes a purge "from the future"
