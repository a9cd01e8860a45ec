"""The ``CDN-Purge-Seq`` exchange's parts: the field, waiting for a purge, each role's grace."""

from __future__ import annotations

import asyncio

import pytest

from cdn.settings import ConfigError
from edge.config import EdgeConfig
from httpcache import purge_watermark
from httpcache.metrics import CacheMetrics
from httpcache.purge_subscriber import PurgeEvent, PurgeSettings, PurgeSubscriber
from httpcache.store import PURGE_GRACE, MemoryStore
from shield.config import ShieldConfig


@pytest.mark.parametrize(("value", "seq"), [
    (None, 0), ("", 0), ("17", 17), (" 17 ", 17), ("-3", 0), ("1e3", 0), ("x", 0),
    ("9" * 19, 0),  # longer than any sequence the log will reach: refused, not trusted
])
def test_the_field_is_a_plain_non_negative_integer_or_nothing(value: str | None,
                                                              seq: int) -> None:
    assert purge_watermark.parse(value) == seq


async def test_waiting_for_a_purge_ends_when_it_is_applied_or_at_the_deadline() -> None:
    purges = PurgeSubscriber(PurgeSettings(redis_url="redis://127.0.0.1:1"),
                             MemoryStore(1 << 20), CacheMetrics("test"))
    purges.apply(PurgeEvent(1, tags=("a",)))
    purges.apply(PurgeEvent(2, tags=("b",)))
    assert await purges.applied_by(2, 5.0) == 2

    async def later() -> None:
        await asyncio.sleep(0.05)
        purges.apply(PurgeEvent(3, tags=("c",)))  # not yet 4
        await asyncio.sleep(0.05)
        purges.apply(PurgeEvent(4, tags=("d",)))
        purges.apply(PurgeEvent(5, tags=("e",)))

    task = asyncio.create_task(later())
    assert await purges.applied_by(4, 5.0) >= 4
    await task
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await purges.applied_by(9, 0.1) == 5  # never came: what it has, in time
    assert 0.09 <= loop.time() - started < 1.0


def test_the_grace_is_kept_only_where_the_upstream_is_a_cache() -> None:
    assert EdgeConfig().effective_purge_grace == PURGE_GRACE  # the default local shield
    assert EdgeConfig(shields={"s": "http://127.0.0.1:1"}).effective_purge_grace == PURGE_GRACE
    assert EdgeConfig(upstream="http://127.0.0.1:9000").effective_purge_grace == 0.0
    assert ShieldConfig().effective_purge_grace == 0.0  # the origin answers what is current
    assert ShieldConfig(purge_grace=1.5).effective_purge_grace == 1.5
    with pytest.raises(ConfigError, match="purge_grace must be >= 0"):
        ShieldConfig(purge_grace=-1.0)
