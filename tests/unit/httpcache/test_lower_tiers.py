"""Disk tier start-up wipe and body placement, and the shared tier's purge-sequence check
and key layout (against the real Redis of the ``redis_url`` fixture, one key prefix per test).

The shared-tier tests drive ``SharedStore`` the way the purge subscriber does (``applied``):
``begin_purge`` and ``purge_later`` for each event, ``applied_through`` only when every event
up to it has been applied, so a process with a gap in the purge log never says it.
"""

from __future__ import annotations

import fcntl
import uuid
from collections import deque
from pathlib import Path

import redis.asyncio as aioredis

from httpcache.body_sink import BodySink
from httpcache.disk_store import DiskStore
from httpcache.headers import Fields
from httpcache.messages import StoredResponse
from httpcache.policy import DEFAULT_POLICY
from httpcache.shared_store import SharedStore, decode_entry, encode_entry, entry_ttl
from httpcache.store import MemoryStore


def test_start_up_removes_folders_of_dead_processes_only(tmp_path: Path) -> None:
    dead = tmp_path / "proc-1-dead"
    dead.mkdir()
    (dead / "lock").write_bytes(b"")
    (dead / "body-0").write_bytes(b"old")
    live = DiskStore(tmp_path, 10_000, 100)
    second = DiskStore(tmp_path, 10_000, 100)  # another process of the same PoP
    assert not dead.exists() and live.dir.exists() and second.dir.exists()
    with open(live.dir / "lock", "rb") as lock:  # still held by its owner
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("lock should be held")
        except OSError:
            pass
    live.close()
    second.close()
    assert list(tmp_path.iterdir()) == []


async def test_sink_spills_an_unknown_length_body_to_disk_at_the_threshold(tmp_path: Path
                                                                          ) -> None:
    disk = DiskStore(tmp_path, 10_000, 100)
    sink = BodySink(MemoryStore(100_000), disk, None)
    await sink.add(b"x" * 60)
    assert sink.writer is None
    await sink.add(b"y" * 60)
    assert sink.writer is not None and sink.body() == b""
    stored = StoredResponse("/k", 200, Fields(), b"", 0.0, 0.0)
    assert await disk.commit(sink.writer, stored)
    kept = disk.index.peek("/k")
    assert kept is not None and kept.file is not None
    assert Path(kept.file.path).read_bytes() == b"x" * 60 + b"y" * 60  # noqa: ASYNC240 (a test)
    disk.close()


async def test_sink_drops_what_outgrows_every_tier(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path, 1000, 100)
    sink = BodySink(MemoryStore(100_000), disk, None)
    for _ in range(20):
        await sink.add(b"z" * 100)
    assert not sink.keeping and list(disk.dir.glob("tmp-*")) == []
    assert not BodySink(MemoryStore(10_000, 500), None, 600).keeping
    disk.close()


def entry(key: str, tags: tuple[str, ...] = ()) -> StoredResponse:
    return StoredResponse(key, 200, Fields([("Cache-Control", "max-age=60"), ("ETag", '"e"')]),
                          b"body", 1000.0, 1000.0, surrogate_keys=frozenset(tags))


def test_entries_round_trip_and_ttl_covers_the_stale_windows() -> None:
    stored = entry("/k", ("a", "b"))
    decoded, seq = decode_entry(encode_entry(stored, 7))
    assert decoded == stored and seq == 7
    ttl = entry_ttl(stored, 1010.0, DEFAULT_POLICY, revalidate_grace=30.0)
    assert ttl == 50 + int(DEFAULT_POLICY.stale_if_error_default)


async def test_an_entry_written_before_a_purge_the_reader_applied_is_invalidated(
        redis_url: str) -> None:
    prefix = f"t-{uuid.uuid4().hex}:"
    writer = SharedStore(redis_url, prefix=prefix, policy=DEFAULT_POLICY, clock=lambda: 1000.0)
    reader = SharedStore(redis_url, prefix=prefix, policy=DEFAULT_POLICY, clock=lambda: 1000.0)
    await writer.put(entry("/red", ("red",)))
    await writer.put(entry("/blue", ("blue",)))
    reader.begin_purge(1)
    reader._recent.append((1, "tag", "red"))  # applied here, not yet at the writer
    red = await reader.get("/red", Fields())
    blue = await reader.get("/blue", Fields())
    assert red is not None and red.invalidated
    assert blue is not None and not blue.invalidated
    assert await reader.purge("tag", "red") == 1
    assert await reader.get("/red", Fields()) is None
    await writer.aclose()
    await reader.aclose()


async def test_an_entry_offered_before_a_purge_is_dated_before_it(redis_url: str) -> None:
    """A response fetched before purge 1 is offered to the shared tier (``put_later``), and
    purge 1 is applied before the background write has run (the purge subscriber ran in
    between): the entry must be dated before purge 1, not by the sequence when it is
    written. Otherwise it claims to postdate a purge that names it, and outlives that purge
    (the delete ran before the write added it to the tag index), so every process served it
    as valid until its TTL."""
    prefix = f"t-{uuid.uuid4().hex}:"
    writer = SharedStore(redis_url, prefix=prefix, policy=DEFAULT_POLICY, clock=lambda: 1000.0)
    reader = SharedStore(redis_url, prefix=prefix, policy=DEFAULT_POLICY, clock=lambda: 1000.0)
    reader.begin_purge(1)  # another process applied purge 1 first: nothing to delete yet
    reader.purge_later("tag", "red")
    await reader.drain()
    writer.put_later(entry("/red", ("red",)))
    writer.begin_purge(1)
    writer.purge_later("tag", "red")
    await writer.drain()
    red = await reader.get("/red", Fields())
    assert red is None or red.invalidated
    await writer.aclose()
    await reader.aclose()


def shared_tier(redis_url: str, prefix: str) -> SharedStore:
    """One process's shared tier; a test's processes share ``prefix``."""
    return SharedStore(redis_url, prefix=prefix, policy=DEFAULT_POLICY, clock=lambda: 1000.0)


def applied(store: SharedStore, seq: int, *tags: str, through: int | None) -> None:
    """What the purge subscriber does with event ``seq`` naming ``tags``; ``through``: the
    sequence it then knows every purge up to is applied (``None``: a gap, nothing new)."""
    store.begin_purge(seq)
    for tag in tags:
        store.purge_later("tag", tag)
    if through is not None:
        store.applied_through(through)


async def test_an_entry_written_across_a_gap_is_dated_before_the_purge_the_writer_missed(
        redis_url: str) -> None:
    """The writer missed purge 1 (tag U) and applied purge 2 (tag T): a gap, until its
    catch-up from the purge log. Its memory tier may still hold what purge 1 removed, so
    what it writes meanwhile must be dated before 1, and a reader that applied 1 checks it
    against 1. Dated by the writer's latest purge (2), every process took it as valid until
    its TTL: purge 1's delete had run everywhere else before the write."""
    prefix = f"t-{uuid.uuid4().hex}:"
    writer, reader = shared_tier(redis_url, prefix), shared_tier(redis_url, prefix)
    applied(reader, 1, "U", through=1)
    applied(reader, 2, "T", through=2)
    await reader.drain()  # its deletes ran: nothing to delete yet
    applied(writer, 2, "T", through=None)
    writer.put_later(entry("/u", ("U",)))
    writer.put_later(entry("/v", ("V",)))
    await writer.drain()
    stale = await reader.get("/u", Fields())
    assert stale is not None and stale.invalidated
    unnamed = await reader.get("/v", Fields())
    assert unnamed is not None and not unnamed.invalidated  # neither purge names V

    applied(writer, 1, "U", through=2)  # the catch-up brings purge 1
    await writer.drain()
    assert await reader.get("/u", Fields()) is None
    writer.put_later(entry("/u", ("U",)))  # fetched anew, now dated 2
    await writer.drain()
    fresh = await reader.get("/u", Fields())
    assert fresh is not None and not fresh.invalidated
    await writer.aclose()
    await reader.aclose()


async def test_a_reader_with_a_gap_does_not_vouch_for_entries_dated_before_it(
        redis_url: str) -> None:
    """A reader that applied purges 1 and 3 but not 2 cannot tell whether purge 2 named an
    entry dated 1; one dated 2 reflects purge 2, and is checked against 3 alone."""
    prefix = f"t-{uuid.uuid4().hex}:"
    writer, reader = shared_tier(redis_url, prefix), shared_tier(redis_url, prefix)
    applied(writer, 1, "X", through=1)
    writer.put_later(entry("/a", ("A",)))
    applied(writer, 2, "Y", through=2)
    writer.put_later(entry("/b", ("B",)))
    await writer.drain()
    applied(reader, 1, "X", through=1)
    applied(reader, 3, "T", through=None)
    await reader.drain()
    before = await reader.get("/a", Fields())
    assert before is not None and before.invalidated
    after = await reader.get("/b", Fields())
    assert after is not None and not after.invalidated

    applied(reader, 2, "Y", through=3)  # caught up: purge 2 named neither
    await reader.drain()
    vouched = await reader.get("/a", Fields())
    assert vouched is not None and not vouched.invalidated
    await writer.aclose()
    await reader.aclose()


async def test_purges_a_catch_up_applies_out_of_order_are_all_checked(redis_url: str) -> None:
    """The reader applied purge 2 (tag T), then purge 1 from its catch-up; an entry dated 1
    and tagged T must still meet purge 2 (a newest-first scan of purges in the order they
    were applied stopped at purge 1, the first at or before the entry's date)."""
    prefix = f"t-{uuid.uuid4().hex}:"
    writer, reader = shared_tier(redis_url, prefix), shared_tier(redis_url, prefix)
    applied(reader, 2, "T", through=None)
    await reader.drain()
    applied(writer, 1, "U", through=1)  # purge 2 has not reached it yet
    writer.put_later(entry("/t", ("T",)))
    await writer.drain()
    applied(reader, 1, "U", through=2)
    await reader.drain()
    stale = await reader.get("/t", Fields())
    assert stale is not None and stale.invalidated
    await writer.aclose()
    await reader.aclose()


async def test_a_purge_dropped_from_a_full_history_is_assumed_to_match(redis_url: str) -> None:
    """Event 1 named tags a and b; room for two purges drops its ``a`` when event 2 comes.
    What remains of event 1 must not make the history look as if it reached back to it."""
    prefix = f"t-{uuid.uuid4().hex}:"
    writer, reader = shared_tier(redis_url, prefix), shared_tier(redis_url, prefix)
    reader._recent = deque(maxlen=2)
    applied(reader, 1, "a", "b", through=1)
    applied(reader, 2, "c", through=2)
    await reader.drain()
    writer.put_later(entry("/a", ("a",)))  # a writer that has applied no purge yet
    await writer.drain()
    forgotten = await reader.get("/a", Fields())
    assert forgotten is not None and forgotten.invalidated
    await writer.aclose()
    await reader.aclose()


async def test_an_entry_older_than_purges_known_only_from_the_log_is_not_vouched_for(
        redis_url: str) -> None:
    """A process starting after the purge log was trimmed learns only that purges up to 5
    were made: it cannot check an entry dated 3 against 4 and 5, so does not vouch for it."""
    prefix = f"t-{uuid.uuid4().hex}:"
    writer, reader = shared_tier(redis_url, prefix), shared_tier(redis_url, prefix)
    await writer.put(entry("/old"), 3)
    await writer.put(entry("/new"), 5)
    reader.applied_through(5)
    old = await reader.get("/old", Fields())
    assert old is not None and old.invalidated
    new = await reader.get("/new", Fields())
    assert new is not None and not new.invalidated
    await writer.aclose()
    await reader.aclose()


async def test_without_a_purge_log_entries_are_dated_0_and_valid(redis_url: str) -> None:
    """No purge subscriber (no Redis URL for purges, but a shared tier): nothing ever
    applies a purge or says it has, and entries are trusted as before."""
    prefix = f"t-{uuid.uuid4().hex}:"
    writer, reader = shared_tier(redis_url, prefix), shared_tier(redis_url, prefix)
    writer.put_later(entry("/k", ("red",)))
    await writer.drain()
    raw = await writer.cache.get("e:/k")
    assert raw is not None and decode_entry(raw)[1] == 0
    got = await reader.get("/k", Fields())
    assert got is not None and not got.invalidated
    await writer.aclose()
    await reader.aclose()


async def test_keys_sit_under_the_prefix_with_one_separator(redis_url: str) -> None:
    """``cdn:cache:`` (the configured default) gives ``cdn:cache:e:<key>``, not
    ``cdn:cache::e:<key>``; a prefix purge's SCAN pattern finds them."""
    prefix = f"t-{uuid.uuid4().hex}:"
    store = shared_tier(redis_url, prefix)
    await store.put(entry("/k/1", ("red",)))
    client = aioredis.from_url(redis_url)
    names = sorted([name async for name in client.scan_iter(match=f"{prefix}*")])
    assert names == [f"{prefix}{n}".encode() for n in ("e:/k/1", "p:/k/1", "t:red")]
    assert await store.purge("prefix", "/k/") == 1
    assert await store.get("/k/1", Fields()) is None
    await client.aclose()
    await store.aclose()


async def test_writes_beyond_the_pending_bound_are_dropped_and_counted_but_purges_are_not(
        redis_url: str) -> None:
    prefix = f"t-{uuid.uuid4().hex}:"
    dropped: list[int] = []
    store = SharedStore(redis_url, prefix=prefix, policy=DEFAULT_POLICY, clock=lambda: 1000.0,
                        on_drop=lambda: dropped.append(1))
    store.max_pending = 2
    await store.put(entry("/red", ("red",)))  # written before Redis "slows down"
    for key in ("/a", "/b", "/c"):
        store.put_later(entry(key, ("blue",)))  # no await between: all pending at once
    store.purge_later("tag", "red")  # over the bound too, yet made
    await store.drain()
    client = aioredis.from_url(redis_url)
    try:
        names = {k.decode().removeprefix(prefix) async for k in client.scan_iter(f"{prefix}*")}
    finally:
        await client.aclose()
    assert len(dropped) == 1  # /c
    assert "e:/a" in names and "e:/b" in names and "e:/c" not in names
    assert "e:/red" not in names and "t:red" not in names  # the purge's delete ran
    await store.aclose()
