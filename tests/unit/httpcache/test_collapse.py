"""Request collapsing with an in-test fetcher: one fetch, exact bytes, streamed."""

from __future__ import annotations

import asyncio

import pytest

from httpcache import collapse
from httpcache.collapse import (
    FIRST_PIECE,
    Collapser,
    Flight,
    FlightHead,
    FlightReader,
    NotShareable,
)
from httpcache.errors import UpstreamError
from httpcache.headers import Fields

HEADERS = Fields([("Content-Type", "text/plain")])


async def test_hundred_concurrent_readers_share_one_streamed_fetch() -> None:
    collapser = Collapser()
    fetches = 0
    gate = asyncio.Event()
    chunks = [bytes([i]) * 1000 for i in range(10)]
    first_chunk_seen = asyncio.Event()

    async def fetch(flight: Flight) -> None:
        nonlocal fetches
        fetches += 1
        flight.publish_head(FlightHead(200, HEADERS, HEADERS))
        for i, chunk in enumerate(chunks):
            if i == len(chunks) - 1:
                await gate.wait()  # the last chunk only after readers saw the first
            flight.feed(chunk)
            await asyncio.sleep(0)

    async def reader() -> bytes:
        flight, owner = collapser.join("/k", fetch)
        await flight.head(owner=owner)
        got = []
        async for chunk in flight.chunks():
            got.append(chunk)
            first_chunk_seen.set()
        return b"".join(got)

    readers = [asyncio.create_task(reader()) for _ in range(100)]
    await asyncio.wait_for(first_chunk_seen.wait(), 2)
    assert not any(r.done() for r in readers)  # streaming: still waiting for the rest
    gate.set()
    bodies = await asyncio.gather(*readers)
    assert fetches == 1
    assert all(body == b"".join(chunks) for body in bodies)
    assert len(collapser) == 0  # finished flights leave the table


async def test_non_shareable_response_releases_waiters() -> None:
    collapser = Collapser()
    release = asyncio.Event()

    async def fetch(flight: Flight) -> None:
        await release.wait()
        flight.publish_head(FlightHead(200, HEADERS, None))
        flight.feed(b"mine")

    owner_flight, owner = collapser.join("/k", fetch)
    waiter_flight, waiter_owner = collapser.join("/k", fetch)
    assert owner and not waiter_owner and owner_flight.flight is waiter_flight.flight
    release.set()
    assert (await owner_flight.head(owner=True)).status == 200
    assert await owner_flight.body() == b"mine"
    with pytest.raises(NotShareable):
        await waiter_flight.head(owner=False)


async def test_fetch_error_reaches_every_reader() -> None:
    collapser = Collapser()

    async def fetch(flight: Flight) -> None:
        await asyncio.sleep(0)
        raise UpstreamError("origin down")

    flights = [collapser.join("/k", fetch)[0] for _ in range(3)]
    for flight in flights:
        with pytest.raises(UpstreamError, match="origin down"):
            await flight.head(owner=False)


async def test_error_after_head_is_raised_from_the_body() -> None:
    collapser = Collapser()

    async def fetch(flight: Flight) -> None:
        flight.publish_head(FlightHead(200, HEADERS, HEADERS))
        flight.feed(b"part")
        await asyncio.sleep(0)
        raise UpstreamError("cut")

    flight, _ = collapser.join("/k", fetch)
    await flight.head(owner=True)
    got = []
    with pytest.raises(UpstreamError):
        async for chunk in flight.chunks():
            got.append(chunk)
    assert got == [b"part"]


async def test_private_flights_are_not_joined() -> None:
    collapser = Collapser()
    calls = 0

    async def fetch(flight: Flight) -> None:
        nonlocal calls
        calls += 1
        flight.publish_head(FlightHead(200, HEADERS, HEADERS))

    a, _ = collapser.join("/k", fetch, shared=False)
    b, _ = collapser.join("/k", fetch, shared=False)
    await a.body()
    await b.body()
    assert a.flight is not b.flight and calls == 2


async def test_aclose_cancels_running_fetches() -> None:
    collapser = Collapser()

    async def fetch(flight: Flight) -> None:
        await asyncio.sleep(60)

    reader, _ = collapser.join("/k", fetch)
    await asyncio.sleep(0)
    await collapser.aclose()
    assert reader.flight.done


async def test_not_retaining_drops_chunks_every_reader_has_passed() -> None:
    collapser = Collapser()
    step = asyncio.Event()

    async def fetch(flight: Flight) -> None:
        flight.publish_head(FlightHead(200, HEADERS, HEADERS))
        collapser.close_to_newcomers(flight)
        flight.stop_retaining()
        for _ in range(5):
            flight.feed(b"x" * 1000)
            await step.wait()

    fast, _ = collapser.join("/k", fetch)
    slow, _ = collapser.join("/k", fetch)
    await fast.head(owner=True)
    fast_chunks = fast.chunks()
    await anext(fast_chunks)
    assert fast.flight.retained_bytes == 1000  # the slow reader still needs it
    slow_chunks = slow.chunks()
    await anext(slow_chunks)
    step.set()
    fast_body = b"x" * 1000 + b"".join([c async for c in fast_chunks])
    slow_body = b"x" * 1000 + b"".join([c async for c in slow_chunks])
    assert fast_body == slow_body == b"x" * 5000
    fast.close()
    slow.close()
    assert fast.flight.retained_bytes == 0
    late, owner = collapser.join("/k", fetch)
    assert owner and late.flight is not fast.flight  # closed to newcomers


async def test_every_reader_gets_its_first_chunk_before_anyone_gets_a_second() -> None:
    """A reader with many chunks at hand must not write them all while other readers still
    wait for their first byte (the flash crowd's time to first byte)."""
    collapser = Collapser()
    chunks = [bytes([i]) * 100 for i in range(8)]
    ready = asyncio.Event()

    async def fetch(flight: Flight) -> None:
        flight.publish_head(FlightHead(200, HEADERS, HEADERS))
        for chunk in chunks:
            flight.feed(chunk)
        await ready.wait()  # every chunk is at hand before anyone reads

    log: list[tuple[int, int]] = []

    async def read(n: int) -> bytes:
        reader, owner = collapser.join("/k", fetch)
        await ready.wait()
        await reader.head(owner=owner)
        got = []
        with reader:
            async for chunk in reader.chunks():
                log.append((n, len(got)))
                got.append(chunk)
        return b"".join(got)

    tasks = [asyncio.create_task(read(n)) for n in range(50)]
    await asyncio.sleep(0)
    ready.set()
    bodies = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert all(body == b"".join(chunks) for body in bodies)
    firsts = [i for i, (_n, index) in enumerate(log) if index == 0]
    seconds = [i for i, (_n, index) in enumerate(log) if index == 1]
    assert max(firsts) < min(seconds)


async def test_a_reader_that_never_reads_does_not_hold_the_others() -> None:
    """A reader that holds the flight without reading (a HEAD request, say) only makes the
    others yield between chunks; they still get everything."""
    collapser = Collapser()

    async def fetch(flight: Flight) -> None:
        flight.publish_head(FlightHead(200, HEADERS, HEADERS))
        for i in range(20):
            flight.feed(bytes([i]) * 10)
            if i % 5 == 0:
                await asyncio.sleep(0)

    idle, _ = collapser.join("/k", fetch)
    readers = [collapser.join("/k", fetch)[0] for _ in range(3)]
    bodies = await asyncio.wait_for(asyncio.gather(*(r.body() for r in readers)), 5)
    assert bodies == [b"".join(bytes([i]) * 10 for i in range(20))] * 3
    await idle.head(owner=True)
    idle.close()


async def test_a_shared_flights_first_chunk_is_cut_so_every_reader_starts_small() -> None:
    """With several readers, each one's first write is small (head + FIRST_PIECE), not the
    whole first chunk the upstream delivered; the bytes are the same."""
    collapser = Collapser()
    big = bytes(range(256)) * 1024  # 256 KiB: what the upstream client hands over at once
    ready = asyncio.Event()

    async def fetch(flight: Flight) -> None:
        flight.publish_head(FlightHead(200, HEADERS, HEADERS))
        flight.feed(big)
        flight.feed(b"tail")
        await ready.wait()

    readers = [collapser.join("/k", fetch)[0] for _ in range(5)]
    await asyncio.sleep(0)
    ready.set()
    firsts = []

    async def read(reader: FlightReader) -> bytes:
        got = []
        async for chunk in reader.chunks():
            got.append(chunk)
        firsts.append(len(got[0]))
        return b"".join(got)

    bodies = await asyncio.wait_for(asyncio.gather(*(read(r) for r in readers)), 5)
    assert bodies == [big + b"tail"] * 5
    assert firsts == [FIRST_PIECE] * 5


async def test_a_lone_readers_first_chunk_is_not_cut() -> None:
    collapser = Collapser()
    big = b"z" * (4 * FIRST_PIECE)

    async def fetch(flight: Flight) -> None:
        flight.publish_head(FlightHead(200, HEADERS, HEADERS))
        flight.feed(big)

    reader, _ = collapser.join("/k", fetch)
    await reader.head(owner=True)
    assert [bytes(c) async for c in reader.chunks()] == [big]


async def test_a_flight_run_by_its_owner_writes_through_its_listener() -> None:
    """``start`` + ``run``: no task of the flight's own; the listener sees each change and
    ``take`` reads what is at hand; a newcomer joins the running flight (no second fetch)."""
    collapser = Collapser()
    flight = collapser.start("/k")
    assert flight is not None and collapser.start("/k") is None  # one is running
    owner = flight.reader()
    seen: list[bytes | memoryview] = []
    joined: list[FlightReader] = []

    def listener() -> None:
        while (chunk := owner.take()) is not None:
            seen.append(chunk)

    async def fetch(f: Flight) -> None:
        f.publish_head(FlightHead(200, HEADERS, HEADERS, content_length=6))
        f.feed(b"abc")
        reader, is_owner = collapser.join("/k", fetch)
        assert not is_owner
        joined.append(reader)
        f.feed(b"def")

    flight.listener = listener
    await collapser.run(flight, fetch)
    assert seen == [b"abc", b"def"] and flight.done and not collapser.busy("/k")
    assert await joined[0].body() == b"abcdef"


async def test_started_readers_wait_for_the_crowd_to_settle_before_the_bulk(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While readers keep joining (less than ``SETTLE`` apart), one that has had its first
    chunk gets nothing more; once nobody has joined for ``SETTLE`` it gets the rest, before
    the body is complete. A lone reader never waits."""
    settle = 1.0  # long, so a loaded machine's late timers cannot look like a settled crowd
    monkeypatch.setattr(collapse, "SETTLE", settle)
    collapser = Collapser()
    release = asyncio.Event()

    async def fetch(flight: Flight) -> None:
        flight.publish_head(FlightHead(200, HEADERS, HEADERS))
        for i in range(4):
            flight.feed(bytes([i]) * 100)
        await release.wait()

    early, owner = collapser.join("/k", fetch)
    assert owner
    await early.head(owner=True)
    chunks = early.chunks()
    assert await anext(chunks) == b"\x00" * 100  # alone so far: no waiting
    late = [collapser.join("/k", fetch)[0]]
    got: list[bytes] = []
    three = asyncio.Event()

    async def rest() -> None:
        async for chunk in chunks:
            got.append(chunk)
            if len(got) == 3:
                three.set()

    task = asyncio.create_task(rest())
    for _ in range(10):  # readers keep joining, 100 ms apart
        await asyncio.sleep(settle / 10)
        assert got == []
        late.append(collapser.join("/k", fetch)[0])
    # settled: the rest flows though the body is not complete
    await asyncio.wait_for(three.wait(), 5)
    assert got == [bytes([i]) * 100 for i in range(1, 4)] and not task.done()
    release.set()
    await asyncio.wait_for(task, 5)
    for reader in [early, *late]:
        reader.close()

    lone, _ = collapser.join("/lone", fetch)
    await lone.head(owner=True)
    release.clear()
    lone_chunks = lone.chunks()
    for i in range(4):  # everything at hand, without waiting for any timer
        assert await asyncio.wait_for(anext(lone_chunks), settle / 2) == bytes([i]) * 100
    release.set()
    lone.close()
