"""Disk tier start-up wipe and body placement, and the shared tier's purge-sequence check
(against the real Redis of the ``redis_url`` fixture, one key prefix per test)."""

from __future__ import annotations

import fcntl
import uuid
from pathlib import Path

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
