"""``storagenode.front.FrontProtocol`` driven with plain bytes in every split: where each
request begins is known however the bytes arrive, so the front answers the batch requests
and hands aiohttp exactly the bytes from the first request it does not answer."""

from __future__ import annotations

import asyncio

import pytest

from origin.storagenode.batches import Answer
from origin.storagenode.front import NodeFront
from origin.storagenode.metrics import NodeMetrics
from tests.unit.origin.front_doubles import RawSink, RecordingTransport, feed


def _post(path: bytes, body: bytes, *extra: bytes) -> bytes:
    return b"\r\n".join([b"POST " + path + b" HTTP/1.1", b"Host: n",
                         b"Content-Length: %d" % len(body), *extra]) + b"\r\n\r\n" + body


def _front(seen: list[bytes], handed: list[RawSink]) -> NodeFront:
    async def echo(body: bytes) -> Answer:
        seen.append(body)
        return Answer(200, body)

    def app_server() -> asyncio.Protocol:
        handed.append(RawSink())
        return handed[-1]

    return NodeFront({b"/fragments/batch": echo, b"/fragments/read": echo}, app_server,
                     max_body=1000, metrics=NodeMetrics())


async def _run(chunks: list[bytes]) -> tuple[list[bytes], bytes, bytes | None, bool]:
    """(bodies answered, bytes written, bytes handed to aiohttp or None, closed)"""
    seen: list[bytes] = []
    handed: list[RawSink] = []
    transport = RecordingTransport()
    await feed(_front(seen, handed)(), transport, chunks, turns=5)
    return seen, bytes(transport.out), bytes(handed[0].raw) if handed else None, \
        transport.closed


def _splits(stream: bytes) -> list[list[bytes]]:
    out = [[stream]]
    for size in (1, 2, 3, 4, 5, 7, 13):
        out.append([stream[i:i + size] for i in range(0, len(stream), size)])
    for cut in range(1, len(stream), max(1, len(stream) // 400)):
        out.append([stream[:cut], stream[cut:]])
    return out


BODIES = [b"a" * 40, b"", b"\r\n\r\nPOST /x HTTP/1.1\r\n\r\n"]  # bodies may look like heads
BATCHES = b"".join(_post(b"/fragments/batch", b) for b in BODIES)


async def test_pipelined_requests_in_any_split_are_answered_in_order() -> None:
    for chunks in _splits(BATCHES):
        seen, written, handed, _closed = await _run(chunks)
        assert seen == BODIES and handed is None
        assert written.count(b"HTTP/1.1 200 OK") == 3
        assert written.endswith(BODIES[-1])


@pytest.mark.parametrize("theirs", [
    b"GET /_health HTTP/1.1\r\nHost: n\r\n\r\n",
    b"POST /fragments/read HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
    b"POST /fragments/read HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /fragments/read HTTP/1.1\r\nContent-Length: 1001\r\n\r\n",
    b"POST /fragments/read HTTP/1.1\r\nHost n\r\nContent-Length: 0\r\n\r\n",  # malformed
    b"POST /fragments/read HTTP/1.1\nContent-Length: 0\n\n",  # LF only: llhttp refuses
    _post(b"/fragments/read", b"", b"X-Pad: " + b"p" * 9000),  # head > MAX_HEAD_BYTES
])
async def test_aiohttp_gets_the_bytes_from_the_first_request_it_answers(theirs: bytes) -> None:
    stream = BATCHES + theirs + _post(b"/fragments/read", b"later")
    for chunks in _splits(stream):
        seen, written, handed, _closed = await _run(chunks)
        assert seen == BODIES, chunks
        assert written.count(b"HTTP/1.1 200 OK") == 3
        assert handed == theirs + _post(b"/fragments/read", b"later"), chunks


async def test_connection_close_is_answered_and_nothing_after_it_is_read() -> None:
    stream = _post(b"/fragments/read", b"x", b"Connection: close") + BATCHES
    for chunks in _splits(stream)[:10]:
        seen, written, handed, closed = await _run(chunks)
        assert seen == [b"x"] and handed is None and closed
        assert b"Connection: close\r\n" in written


def _quick_front(asked: list[bytes]) -> NodeFront:
    """Reads answered by a quick handler (``slow…`` bodies left to the coroutine), batches
    by a coroutine."""
    async def echo(body: bytes) -> Answer:
        return Answer(200, b"task:" + body)

    def quick(body: bytes) -> Answer | None:
        asked.append(body)
        return None if body.startswith(b"slow") else Answer(200, b"quick:" + body)

    return NodeFront({b"/fragments/batch": echo, b"/fragments/read": echo}, RawSink,
                     max_body=1000, metrics=NodeMetrics(), quick={b"/fragments/read": quick})


async def test_a_quick_answer_is_written_without_waiting_for_the_loop() -> None:
    asked: list[bytes] = []
    transport = RecordingTransport()
    conn = _quick_front(asked)()
    conn.connection_made(transport)
    conn.data_received(_post(b"/fragments/read", b"abc"))
    assert bytes(transport.out).endswith(b"\r\n\r\nquick:abc")  # no await in between
    conn.data_received(_post(b"/fragments/read", b"slow"))
    assert not bytes(transport.out).endswith(b"slow")  # the coroutine answers it later
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert bytes(transport.out).endswith(b"\r\n\r\ntask:slow")
    assert asked == [b"abc", b"slow"]


async def test_quick_answers_never_overtake_an_answer_still_being_worked_out() -> None:
    bodies = [b"first", b"second", b"slow-third", b"fourth"]
    stream = _post(b"/fragments/batch", bodies[0]) + b"".join(
        _post(b"/fragments/read", b) for b in bodies[1:])
    for chunks in _splits(stream):
        asked: list[bytes] = []
        transport = RecordingTransport()
        await feed(_quick_front(asked)(), transport, chunks, turns=5)
        written = bytes(transport.out)
        assert written.count(b"HTTP/1.1 200 OK") == 4, chunks
        places = [written.find(b":" + b) for b in bodies]
        assert -1 not in places and places == sorted(places), (chunks, written)


async def test_a_quick_future_is_answered_when_it_resolves_and_in_request_order() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Answer]] = []

    async def echo(body: bytes) -> Answer:
        return Answer(200, b"task:" + body)

    def later(body: bytes) -> asyncio.Future[Answer]:
        futures.append(loop.create_future())
        return futures[-1]

    front = NodeFront({b"/fragments/batch": echo, b"/fragments/read": echo}, RawSink,
                      max_body=1000, metrics=NodeMetrics(), quick={b"/fragments/batch": later})
    transport = RecordingTransport()
    conn = front()
    conn.connection_made(transport)
    conn.data_received(_post(b"/fragments/batch", b"one") + _post(b"/fragments/read", b"two"))
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(futures) == 1 and transport.out == b""  # "two" waits behind "one"
    futures[0].set_result(Answer(200, b"stored:one"))
    for _ in range(3):
        await asyncio.sleep(0)
    written = bytes(transport.out)
    assert 0 < written.find(b"stored:one") < written.find(b"task:two")
    # A future that fails is answered 500, and the connection closed after it.
    conn.data_received(_post(b"/fragments/batch", b"three"))
    futures[1].set_exception(RuntimeError("bug"))
    for _ in range(3):
        await asyncio.sleep(0)
    assert bytes(transport.out).endswith(b"500 Internal Server Error") and transport.closed
