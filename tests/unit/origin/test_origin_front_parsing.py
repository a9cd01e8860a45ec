"""``origin.api.front.FrontProtocol`` driven with plain bytes in every split: plain object GETs
and PUTs reach the handler whole, one at a time, and aiohttp is handed exactly the bytes from
the first request the front does not take (or one whose answer must stream) on; and the
answer's serialisation (``serialise``, ``is_object_path``)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from origin.api.front import FrontProtocol, OriginFront, is_object_path, serialise
from origin.api.front_request import FrontRequest, StreamingNeeded
from tests.unit.origin.front_doubles import RawSink, RecordingTransport, feed


class _Front(OriginFront):
    """Answers ``GET`` with the path and ``PUT`` with the body; paths under ``/big/`` need a
    streamed answer."""

    def __init__(self, keepalive_timeout: float = 75.0) -> None:
        self.seen: list[tuple[str, str, bytes]] = []
        self.handed: list[RawSink] = []
        super().__init__(web.Application(), self._app_server, max_body=1000,
                         keepalive_timeout=keepalive_timeout)

    def _app_server(self) -> asyncio.Protocol:
        self.handed.append(RawSink())
        return self.handed[-1]

    async def run(self, request: FrontRequest) -> web.StreamResponse:
        body = await request.content.read()
        await asyncio.sleep(0)
        if request.raw_path.startswith("/big/"):
            raise StreamingNeeded
        self.seen.append((request.method, request.raw_path, body))
        return web.Response(body=request.raw_path.encode() if request.method == "GET" else body)


def _get(path: bytes, *extra: bytes) -> bytes:
    return b"\r\n".join([b"GET " + path + b" HTTP/1.1", b"Host: o", *extra]) + b"\r\n\r\n"


def _put(path: bytes, body: bytes) -> bytes:
    return b"\r\n".join([b"PUT " + path + b" HTTP/1.1", b"Host: o",
                         b"Content-Length: %d" % len(body)]) + b"\r\n\r\n" + body


async def _run(chunks: list[bytes]) -> tuple[_Front, bytes, bytes | None, bool]:
    """(the front, bytes written, bytes handed to aiohttp or None, closed)"""
    front = _Front()
    transport = RecordingTransport()
    conn: FrontProtocol = front()
    await feed(conn, transport, chunks, turns=20)
    conn.close()
    return front, bytes(transport.out), bytes(front.handed[0].raw) if front.handed else None, \
        transport.closed


def _bodies(out: bytes) -> list[bytes]:
    found = []
    while out:
        head, _sep, rest = out.partition(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        found.append(rest[:length])
        out = rest[length:]
    return found


def _splits(raw: bytes) -> list[list[bytes]]:
    return [[raw]] + [[raw[:i], raw[i:]] for i in range(1, len(raw))]


@pytest.mark.parametrize("split", range(0, 200, 7))
async def test_plain_requests_answered_in_order_in_any_split(split: int) -> None:
    raw = _get(b"/b/one") + _put(b"/b/two", b"x" * 50) + _get(b"/b/three")
    chunks = _splits(raw)[min(split, len(raw) - 1)]
    front, out, handed, _closed = await _run(chunks)
    assert handed is None
    assert [s[:2] for s in front.seen] == [("GET", "/b/one"), ("PUT", "/b/two"),
                                           ("GET", "/b/three")]
    assert _bodies(out) == [b"/b/one", b"x" * 50, b"/b/three"]


@pytest.mark.parametrize("refused", [
    b"HEAD /b/k HTTP/1.1\r\nHost: o\r\n\r\n",
    b"GET /b/k?versionId=1 HTTP/1.1\r\nHost: o\r\n\r\n",
    b"GET /b HTTP/1.1\r\nHost: o\r\n\r\n",
    b"GET /b/ HTTP/1.1\r\nHost: o\r\n\r\n",
    b"DELETE /b/k HTTP/1.1\r\nHost: o\r\n\r\n",
    b"GET /b/k HTTP/1.0\r\nHost: o\r\n\r\n",
    b"PUT /b/k HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"PUT /b/k HTTP/1.1\r\nHost: o\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
    b"PUT /b/k HTTP/1.1\r\nHost: o\r\nContent-Length: 1001\r\n\r\n" + b"y" * 1001,
    b"GET /b/k HTTP/1.1\r\nHost: o\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /b/k HTTP/1.1\nHost: o\n\n",
    b"GET /b/k HTTP/1.1\r\nHost: o\r\nx-long: " + b"v" * 8191 + b"\r\n\r\n",
    b"GET /b/" + b"k" * 8190 + b" HTTP/1.1\r\nHost: o\r\n\r\n",
])
async def test_what_the_front_does_not_take_goes_to_aiohttp_from_its_first_byte(
        refused: bytes) -> None:
    before, after = _get(b"/b/first"), _get(b"/b/after")
    raw = before + refused + after
    for chunks in (_splits(raw)[0], _splits(raw)[len(before)], _splits(raw)[len(before) + 5]):
        front, out, handed, _closed = await _run(chunks)
        assert [s[1] for s in front.seen] == ["/b/first"]
        assert _bodies(out) == [b"/b/first"]
        assert handed == refused + after


async def test_a_get_that_must_stream_is_handed_over_with_what_follows() -> None:
    raw = _get(b"/b/a") + _get(b"/big/x") + _put(b"/b/c", b"zz")
    for chunks in _splits(raw)[::9]:
        front, out, handed, _closed = await _run(chunks)
        assert [s[1] for s in front.seen] == ["/b/a"]
        assert _bodies(out) == [b"/b/a"]
        assert handed == _get(b"/big/x") + _put(b"/b/c", b"zz")


async def test_a_put_is_never_run_twice() -> None:
    front, out, handed, closed = await _run([_put(b"/big/x", b"data") + _get(b"/b/a")])
    assert handed is None and closed
    assert out.startswith(b"HTTP/1.1 500 ")
    assert not front.seen


async def test_connection_close_is_the_last_answer() -> None:
    front, out, handed, closed = await _run([_get(b"/b/a", b"Connection: close")
                                             + _get(b"/b/b")])
    assert [s[1] for s in front.seen] == ["/b/a"] and handed is None and closed
    assert b"\r\nConnection: close\r\n" in out


async def test_idle_connections_are_closed_busy_ones_kept() -> None:
    front = _Front(keepalive_timeout=0.05)
    idle, busy = RecordingTransport(), RecordingTransport()
    idle_conn, busy_conn = front(), front()
    idle_conn.connection_made(idle)
    busy_conn.connection_made(busy)
    for i in range(8):
        busy_conn.data_received(_get(b"/b/%d" % i))
        await asyncio.sleep(0.02)
    assert idle.closed and not busy.closed
    await asyncio.sleep(0.15)
    assert busy.closed
    assert len(_bodies(bytes(busy.out))) == 8


def test_object_paths() -> None:
    assert is_object_path(b"/b/k") and is_object_path(b"/b/k/deeper/")
    for url in (b"/", b"/b", b"/b/", b"//k", b"/b/k?x", b"/b/k#f", b"b/k", b"*"):
        assert not is_object_path(url), url


def test_serialise_like_aiohttp() -> None:
    plain = serialise(web.Response(body=b"abc", headers={"ETag": '"e"'}), "RID", False)
    head, _sep, body = plain.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK" and body == b"abc"
    for line in (b'ETag: "e"', b"Content-Length: 3", b"Content-Type: application/octet-stream",
                 b"x-amz-request-id: RID"):
        assert line in lines
    assert any(x.startswith(b"Date: ") for x in lines)
    assert any(x.startswith(b"Server: ") for x in lines)
    assert b"Connection" not in head
    not_modified = serialise(web.Response(status=304, headers={"ETag": '"e"'}), None, True)
    assert b"Content-Length" not in not_modified and b"Content-Type" not in not_modified
    assert not_modified.endswith(b"Connection: close\r\n\r\n")
    empty = serialise(web.Response(status=200), None, False)
    assert b"Content-Length: 0\r\n" in empty and b"Content-Type" not in empty


def test_serialise_refuses_a_value_that_would_split_the_head() -> None:
    response = web.Response(body=b"x")
    response.headers["x-amz-meta-a"] = "1"
    response.headers["x-amz-meta-b"] = "2\r\nInjected: yes"
    with pytest.raises(ValueError):
        serialise(response, None, False)
