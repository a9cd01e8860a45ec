"""The lean upstream client against a scripted raw-socket server: framing, keep-alive reuse,
the retry on a stale connection, timeouts and broken bodies mapped to our errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from httpcache.errors import (
    UpstreamBodyError,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from httpcache.headers import Fields, end_to_end
from httpcache.lean_client import HIGH_WATER, LeanPools, _Slots

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], "asyncio.Future[None]"]


class RawServer:
    """Accepts connections; for each request head read, ``answer(n)`` gives the bytes to send
    (``None``: close the connection instead; an answer with ``Connection: close`` closes it
    after). Counts connections and requests."""

    def __init__(self, answer: Callable[[int, bytes], bytes | None]) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                out = self.answer(len(self.requests), head)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if b"\r\nConnection: close\r\n" in out.split(b"\r\n\r\n", 1)[0] + b"\r\n":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def ok(body: bytes, extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nX-A: 1\r\nX-A: 2\r\n{extra}"
            "\r\n").encode() + body


async def fetch(pools: LeanPools, port: int, target: str = "/x",
                fields: list[tuple[str, str]] | None = None) -> tuple[int, list, bytes]:
    async with pools.pool("127.0.0.1", port).get(target, fields or []) as (head, chunks):
        body = b"".join([c async for c in chunks])
        return head.status, head.headers, body


@pytest.fixture(params=[0, 1 << 30], ids=["parsed-bodies", "direct-bodies"])
async def pools(request: pytest.FixtureRequest) -> AsyncIterator[LeanPools]:
    """Every test runs with bodies fed through the parser and with bodies of declared length
    read straight into their buffer (``direct_max``)."""
    p = LeanPools(read_timeout=2.0, connect_timeout=2.0, direct_max=request.param)
    yield p
    p.close()


async def test_keep_alive_connection_is_reused_for_sequential_gets(pools: LeanPools) -> None:
    server = await RawServer(lambda n, _h: ok(b"body%d" % n)).start()
    try:
        for n in range(1, 6):
            status, headers, body = await fetch(pools, server.port)
            assert (status, body) == (200, b"body%d" % n)
            assert headers[-2:] == [("X-A", "1"), ("X-A", "2")]  # order and duplicates kept
        assert server.connections == 1
        first = server.requests[0].decode()
        assert first.startswith("GET /x HTTP/1.1\r\nHost: 127.0.0.1:")
    finally:
        await server.stop()


async def test_request_fields_are_sent_and_crlf_injection_is_refused(pools: LeanPools) -> None:
    server = await RawServer(lambda n, _h: ok(b"")).start()
    try:
        await fetch(pools, server.port, fields=[("Via", "1.1 edge"), ("X-Y", "z")])
        assert b"\r\nVia: 1.1 edge\r\nX-Y: z\r\n\r\n" in server.requests[0]
        with pytest.raises(UpstreamError):
            await fetch(pools, server.port, fields=[("X-Y", "a\r\nX-Evil: 1")])
        with pytest.raises(UpstreamError):
            await fetch(pools, server.port, target="/a b")
    finally:
        await server.stop()


async def test_chunked_and_close_delimited_bodies(pools: LeanPools) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    until_close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    answers = {1: chunked, 2: until_close}

    def answer(n: int, _h: bytes) -> bytes | None:
        return answers.get(n)

    server = await RawServer(answer).start()
    try:
        assert (await fetch(pools, server.port))[2] == b"abcde"
        # the close-delimited body ends when the server closes after writing it
        assert (await fetch(pools, server.port))[2] == b"all of it"
    finally:
        await server.stop()


async def test_informational_response_is_skipped(pools: LeanPools) -> None:
    server = await RawServer(
        lambda n, _h: b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"x")).start()
    try:
        status, headers, body = await fetch(pools, server.port)
        assert (status, body) == (200, b"x")
        assert ("Link", "</a>") not in headers
    finally:
        await server.stop()


async def test_stale_idle_connection_is_retried_once_on_a_new_one(pools: LeanPools) -> None:
    # the server answers one request per connection, then closes without saying so
    server = await RawServer(lambda n, _h: ok(b"r%d" % n)).start()
    server.answer = lambda n, _h: ok(b"r%d" % n) if n % 2 else None
    try:
        assert (await fetch(pools, server.port))[2] == b"r1"
        # the pooled connection gets request 2 and is closed: sent again on a new one
        assert (await fetch(pools, server.port))[2] == b"r3"
        assert server.connections == 2
    finally:
        await server.stop()


async def test_errors_are_ours(pools: LeanPools) -> None:
    server = await RawServer(lambda n, _h: None).start()
    port = server.port
    try:
        with pytest.raises(UpstreamDisconnected):
            await fetch(pools, port)  # closed before any head (a new connection: no retry)
        server.answer = lambda n, _h: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
        # the server then waits for another request; the body never completes
        short = LeanPools(read_timeout=0.2)
        try:
            with pytest.raises(UpstreamTimeout):
                await fetch(short, port)
        finally:
            short.close()
        server.answer = lambda n, _h: b"NOT HTTP\r\n\r\n"
        with pytest.raises(UpstreamError):
            await fetch(pools, port)
    finally:
        await server.stop()
    with pytest.raises(UpstreamUnavailable):
        await fetch(pools, port)  # nobody listens any more


async def test_body_broken_off_after_the_head(pools: LeanPools) -> None:
    def answer(n: int, _h: bytes) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"

    server = await RawServer(answer).start()
    try:
        async with pools.pool("127.0.0.1", server.port).get("/x", []) as (head, chunks):
            assert head.status == 200
            assert await chunks.__anext__() == b"abc"
            await server.stop()  # the listener, then the open connection
            for conn in list(pools.pool("127.0.0.1", server.port)._open):
                conn.transport.abort()  # type: ignore[union-attr]  # as if the peer reset
            with pytest.raises(UpstreamBodyError):
                await chunks.__anext__()
    finally:
        if server.server is not None and server.server.is_serving():
            await server.stop()


async def test_large_body_streams_with_backpressure_and_unread_body_closes(
        pools: LeanPools) -> None:
    size = HIGH_WATER * 4
    server = await RawServer(lambda n, _h: ok(b"z" * size)).start()
    try:
        got = 0
        async with pools.pool("127.0.0.1", server.port).get("/x", []) as (_head, chunks):
            async for chunk in chunks:
                got += len(chunk)
                await asyncio.sleep(0)  # a slow reader
        assert got == size
        # a body left unread: the connection is not reused
        async with pools.pool("127.0.0.1", server.port).get("/x", []) as (_head, chunks):
            await chunks.__anext__()
        await fetch(pools, server.port)
        assert server.connections == 2
    finally:
        await server.stop()


async def test_host_field_is_the_one_aiohttp_sends() -> None:
    """SigV4 signs Host: the lean client must send what aiohttp would for the base URL."""
    from aiohttp import ClientSession

    from httpcache.headers import Fields
    from httpcache.upstream import HttpUpstream

    server = await RawServer(lambda n, _h: ok(b"")).start()
    pools = LeanPools()
    try:
        async with ClientSession() as session:
            for base in (f"http://127.0.0.1:{server.port}", f"http://localhost:{server.port}/"):
                upstream = HttpUpstream(session, base, lean=pools)
                async with upstream.open("GET", "/p", Fields()) as up:
                    assert [c async for c in up.chunks] == []
                async with session.get(base.rstrip("/") + "/p") as resp:
                    await resp.read()
        lean_host, aiohttp_host = (
            [line for line in r.split(b"\r\n") if line.lower().startswith(b"host:")]
            for r in (server.requests[0], server.requests[1]))
        assert lean_host == aiohttp_host
        assert len(server.requests) == 4
    finally:
        pools.close()
        await server.stop()


async def test_reading_pauses_after_the_first_piece_until_its_readers_ran(
        pools: LeanPools) -> None:
    """A body that is not complete in its first read: nothing more is read until the first
    piece was taken and the tasks it woke had their turn (the time to first byte must not
    wait for later pieces); a body complete in one read never pauses."""
    size = HIGH_WATER * 2
    server = await RawServer(lambda n, _h: ok(b"z" * (size if n == 1 else 10))).start()
    try:
        pool = pools.pool("127.0.0.1", server.port)
        async with pool.get("/x", []) as (_head, chunks):
            conn = next(iter(pool._open))
            await asyncio.sleep(0.05)  # the server has sent everything by now
            assert conn.paused and conn.queued < size
            first = await chunks.__anext__()
            assert conn.paused  # the resume waits behind the tasks this piece woke
            await asyncio.sleep(0)
            assert not conn.paused
            rest = b"".join([c async for c in chunks])
        assert len(first) + len(rest) == size
        async with pool.get("/x", []) as (_head, chunks):
            conn = next(iter(pool._open))
            await asyncio.sleep(0.05)
            assert not conn.paused and conn.complete
            assert b"".join([c async for c in chunks]) == b"z" * 10
        assert server.connections == 1
    finally:
        await server.stop()


async def test_a_declared_body_is_read_into_one_buffer_and_is_whole() -> None:
    """With ``direct_max``: a body of declared length up to it arrives, after its first
    piece, as views of one buffer, which ``whole()`` then is, first piece included (a body
    complete in its first piece has no buffer: it is the parser's piece, as without). The
    connection is reused afterwards (a fresh parser for a chunked answer), and bodies that
    are longer, chunked or of unknown length are fed through the parser as before."""
    big = bytes(range(256)) * (HIGH_WATER // 64)  # several reads
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    answers = {1: ok(big), 2: chunked, 3: ok(b"x" * 100), 4: ok(big)}
    server = await RawServer(lambda n, _h: answers[n]).start()
    pools = LeanPools(read_timeout=2.0, connect_timeout=2.0, direct_max=len(big))
    try:
        pool = pools.pool("127.0.0.1", server.port)
        async with pool.get("/x", []) as (_head, chunks):
            pieces = [c async for c in chunks]
            whole = chunks.whole()
        assert isinstance(whole, bytearray) and whole == big
        # the first piece is the parser's (the buffer is made after it went out), the rest
        # are views of the buffer
        assert len(pieces) > 1 and isinstance(pieces[0], bytes)
        assert all(isinstance(c, memoryview) and c.obj is whole for c in pieces[1:])
        async with pool.get("/x", []) as (_head, chunks):
            assert b"".join([c async for c in chunks]) == b"abc"
            assert chunks.whole() is None
        async with pool.get("/x", []) as (_head, chunks):
            assert b"".join([c async for c in chunks]) == b"x" * 100
            # complete in the read of its head: the parser's one copy, no buffer of its own
            assert chunks.whole() is None
        conn = next(iter(pool._open))
        assert conn.early == []  # the idle connection holds none of the body
        assert server.connections == 1
        pools.close()
        pools = LeanPools(read_timeout=2.0, connect_timeout=2.0, direct_max=len(big) - 1)
        async with pools.pool("127.0.0.1", server.port).get("/x", []) as (_head, chunks):
            assert b"".join([c async for c in chunks]) == big
            assert chunks.whole() is None  # longer than direct_max: parsed
    finally:
        pools.close()
        await server.stop()


async def test_framing_fields_are_dropped_and_other_connection_options_kept(
        pools: LeanPools) -> None:
    """``Connection: keep-alive``/``close`` and ``Keep-Alive`` only frame the connection and
    are not kept; a ``Connection`` naming another option is kept, so that ``end_to_end`` drops
    the field it names (RFC 9110 §7.6.1). Keep-alive itself still follows them."""
    answers = {
        1: ok(b"a", "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n"),
        2: ok(b"b", "connection: Keep-Alive, X-A\r\n"),
        3: ok(b"c", "Connection: close\r\n"),
        4: ok(b"d"),
    }
    server = await RawServer(lambda n, _h: answers[n]).start()
    try:
        status, headers, body = await fetch(pools, server.port)
        assert (status, body) == (200, b"a")
        assert [k for k, _ in headers] == ["Content-Length", "X-A", "X-A"]
        _status, headers, _body = await fetch(pools, server.port)
        assert ("connection", "Keep-Alive, X-A") in headers
        up = end_to_end(Fields.of(headers))
        assert up.names() == {"content-length"}  # X-A was a connection option
        _status, headers, _body = await fetch(pools, server.port)
        assert "connection" not in {k.lower() for k, _ in headers}
        assert server.connections == 1
        assert (await fetch(pools, server.port))[2] == b"d"
        assert server.connections == 2  # "close" was obeyed though not kept
    finally:
        await server.stop()


async def test_the_pool_limit_queues_exchanges_in_order(pools: LeanPools) -> None:
    """At most ``limit`` exchanges run at once; the others wait in arrival order, and one
    cancelled while waiting takes no slot with it."""
    release = asyncio.Event()
    started: list[str] = []

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                started.append(head.split()[1].decode())
                await release.wait()
                writer.write(ok(b"x"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the test is over
        finally:
            writer.close()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pools.limit = 1
    try:
        first = asyncio.ensure_future(fetch(pools, port, "/1"))
        second = asyncio.ensure_future(fetch(pools, port, "/2"))
        third = asyncio.ensure_future(fetch(pools, port, "/3"))
        for _ in range(50):
            await asyncio.sleep(0.01)
            if started:
                break
        assert started == ["/1"]  # the others wait for the one slot
        slots = pools.pool("127.0.0.1", port)._slots
        assert (slots.free, len(slots.waiters)) == (0, 2)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        release.set()
        assert (await first)[2] == b"x"
        assert (await third)[2] == b"x"
        assert started == ["/1", "/3"]
        assert (slots.free, len(slots.waiters)) == (1, 0)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_waiter_cancelled_as_it_is_handed_the_slot_passes_it_on() -> None:
    slots = _Slots(1)
    slots.free -= 1  # taken
    waiter = asyncio.ensure_future(slots.wait())
    await asyncio.sleep(0)
    slots.release()  # handed to the waiter, which has not run yet ...
    waiter.cancel()  # ... and is cancelled before it does
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (slots.free, len(slots.waiters)) == (1, 0)


async def test_a_long_body_is_read_into_one_buffer_only_when_kept_whole() -> None:
    """Above ``direct_unasked`` a body is read into one buffer only when the consumer said it
    keeps it whole before taking the first piece; otherwise it streams through in pieces
    (bounded by the backpressure), as a body longer than ``direct_max`` does."""
    big = bytes(range(256)) * (HIGH_WATER // 64)  # 1 MiB: several reads
    server = await RawServer(lambda n, _h: ok(big)).start()
    pools = LeanPools(read_timeout=2.0, connect_timeout=2.0, direct_max=len(big),
                      direct_unasked=64 * 1024)
    try:
        pool = pools.pool("127.0.0.1", server.port)
        async with pool.get("/x", []) as (_head, chunks):
            pieces = [c async for c in chunks]
            assert b"".join(pieces) == big and chunks.whole() is None
            assert not any(isinstance(c, memoryview) for c in pieces)
        async with pool.get("/x", []) as (_head, chunks):
            chunks.keep_whole()
            pieces = [c async for c in chunks]
            whole = chunks.whole()
        assert isinstance(whole, bytearray) and whole == big
        assert all(isinstance(c, memoryview) and c.obj is whole for c in pieces[1:])
        async with pool.get("/x", []) as (_head, chunks):  # the wish ends with its exchange
            assert b"".join([c async for c in chunks]) == big and chunks.whole() is None
        assert server.connections == 1
    finally:
        pools.close()
        await server.stop()
