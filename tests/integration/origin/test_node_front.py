"""The storage node's protocol-level front (``storagenode.front``) in a real node process, and
the origin's lean batch connections (``batch_connections``) against it, on loopback sockets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from origin import batch_wire as bw
from origin.batch_connections import BatchConnections
from origin.config import NodeSpec
from origin.nodeclient import NodeClient, NodeRequestError
from tests.integration.origin.cluster_parts import storage_node
from tests.procs import RoleProcess


@pytest.fixture(scope="module")
def node_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoleProcess]:
    root = tmp_path_factory.mktemp("node-front")
    proc = storage_node("n1", "z1", root / "data", root, "--max-fragment-bytes", "100000")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _metric(url: str, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(url + "/_metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(rf"^{name}{re.escape(labels)} ([\d.e+]+)", text, re.M)
    return float(found[1]) if found else 0.0


def _post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: node", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _answers(reader: asyncio.StreamReader, count: int) -> list[tuple[int, dict, bytes]]:
    """``count`` HTTP answers read off one connection, in order."""
    out = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        fields = {k.lower(): v.strip() for k, _c, v in (x.partition(":") for x in lines[1:] if x)}
        body = await reader.readexactly(int(fields["content-length"]))
        out.append((status, fields, body))
    return out


def _store_body(items: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(bw.encode_store(bw.StoreItem(i, p, zlib.crc32(p)) for i, p in items))


async def test_pipelined_batches_are_answered_in_order_then_aiohttp_takes_over(
    node_proc: RoleProcess,
) -> None:
    before = _metric(node_proc.url, "storage_node_front_connections_total",
                     '{served_by="front"}')
    reader, writer = await asyncio.open_connection("127.0.0.1", node_proc.port)
    a, b = os.urandom(700), os.urandom(900)
    # Two stores and a read of nothing pipelined in one write, then a health check that
    # the front does not serve: the three batch answers come first, in order, then aiohttp's.
    writer.write(_post("/fragments/batch", _store_body([(b"p/0/0", a)]))
                 + _post("/fragments/batch", _store_body([(b"p/0/1", b), (b"p/0/2", a)]))
                 + _post("/fragments/read", bw.encode_fetch([bw.FetchItem(7, 0, 5, b"")]))
                 + b"GET /_health HTTP/1.1\r\nHost: node\r\n\r\n")
    got = await _answers(reader, 4)
    assert [g[0] for g in got] == [200, 200, 200, 200]
    first = bw.decode_stored(got[0][2], 1)
    second = bw.decode_stored(got[1][2], 2)
    assert first[0].ok and [s.ok for s in second] == [True, True]
    assert bw.KIND[bw.decode_fetched(got[2][2], 1)[0].status] == "not-found"
    assert json.loads(got[3][2])["node_id"] == "n1"
    # The connection is aiohttp's now and stays usable for anything, batches included.
    writer.write(_post("/fragments/read", bw.encode_fetch(
        [bw.FetchItem(second[0].volume, second[0].offset, second[0].length, b"p/0/1")])))
    (status, _f, body), = await _answers(reader, 1)
    assert status == 200 and bw.decode_fetched(body, 1)[0].body == b
    writer.close()
    await writer.wait_closed()
    assert _metric(node_proc.url, "storage_node_front_connections_total",
                   '{served_by="front"}') == before + 1


async def test_what_the_front_does_not_answer_is_answered_by_aiohttp(
    node_proc: RoleProcess,
) -> None:
    cases = [
        (b"GET /nothing-here HTTP/1.1\r\nHost: node\r\n\r\n", 404),
        # larger than --max-fragment-bytes: aiohttp's 413 (the body is never read here)
        (b"POST /fragments/batch HTTP/1.1\r\nHost: node\r\nContent-Length: 200000\r\n\r\n",
         413),
        # a malformed body is the shared handler's 400, with the node's error document
        (_post("/fragments/batch", b"\x00\x05\x00"), 400),
        # chunked: handed over, and aiohttp's handler reads it
        (b"POST /fragments/read HTTP/1.1\r\nHost: node\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"0\r\n\r\n", 200),
    ]
    for raw, status in cases:
        reader, writer = await asyncio.open_connection("127.0.0.1", node_proc.port)
        writer.write(raw)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert int(head.split(b" ")[1]) == status, (raw[:60], head)
        if status == 400:
            assert b"X-Fragment-Error: bad-request" in head
        writer.close()
        await writer.wait_closed()


async def test_a_head_llhttp_rejects_is_answered_400_by_aiohttp_after_the_answers_before_it(
    node_proc: RoleProcess,
) -> None:
    malformed = [
        b"POST /fragments/read HTTP/1.1\r\nHost node\r\nContent-Length: 0\r\n\r\n",
        b"POST /fragments/read HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
        b"POST /fragments/read HTTP/1.1\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n",
        b"POST /fragments/read HTTP/1.1\nContent-Length: 0\n\n",
    ]
    for raw in malformed:
        reader, writer = await asyncio.open_connection("127.0.0.1", node_proc.port)
        writer.write(_post("/fragments/read", b"") + raw)
        (status, _f, body), = await _answers(reader, 1)  # the front's, before the bad one
        assert status == 200 and body == b""
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert int(head.split(b" ")[1]) == 400, (raw, head)
        writer.close()
        await writer.wait_closed()
    # a head larger than MAX_HEAD_BYTES (in one read or several) is aiohttp's to answer too
    for pieces in (1, 40):
        before = _metric(node_proc.url, "storage_node_front_connections_total",
                         '{served_by="aiohttp"}')
        reader, writer = await asyncio.open_connection("127.0.0.1", node_proc.port)
        raw = _post("/fragments/read", b"", *(f"X-Pad-{i}: {'p' * 3000}" for i in range(4)))
        step = -(-len(raw) // pieces)
        for start in range(0, len(raw), step):
            writer.write(raw[start:start + step])
            await writer.drain()
            await asyncio.sleep(0.001)
        (status, _f, body), = await _answers(reader, 1)
        assert status == 200 and body == b""
        writer.close()
        await writer.wait_closed()
        # this connection, and the one reading /_metrics (handed over too)
        assert _metric(node_proc.url, "storage_node_front_connections_total",
                       '{served_by="aiohttp"}') == before + 2


async def test_requests_split_across_many_small_writes_are_answered_by_the_front(
    node_proc: RoleProcess,
) -> None:
    """Heads and bodies arriving a few bytes at a time (the head's CRLF CRLF split between
    reads), and a read holding one request's end and the next one's start."""
    before = _metric(node_proc.url, "storage_node_front_connections_total",
                     '{served_by="front"}')
    payloads = [os.urandom(300 + i) for i in range(3)]
    stream = b"".join(_post("/fragments/batch", _store_body([(f"s/{i}/0".encode(), p)]))
                      for i, p in enumerate(payloads))
    reader, writer = await asyncio.open_connection("127.0.0.1", node_proc.port)
    for size in (1, 2, 3, 5, 7, 64):
        cut = 0
        for start in range(0, len(stream), size):
            writer.write(stream[start:start + size])
            await writer.drain()
            cut += 1
            if cut < 200:  # the first few hundred pieces arrive as reads of their own
                await asyncio.sleep(0.0005)
        got = await _answers(reader, len(payloads))
        assert [g[0] for g in got] == [200] * len(payloads)
        assert all(bw.decode_stored(g[2], 1)[0].ok for g in got)
    writer.close()
    await writer.wait_closed()
    assert _metric(node_proc.url, "storage_node_front_connections_total",
                   '{served_by="front"}') == before + 1


async def test_connection_close_is_honoured(node_proc: RoleProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node_proc.port)
    writer.write(_post("/fragments/read", b"", "Connection: close")
                 + _post("/fragments/read", b""))
    (status, fields, body), = await _answers(reader, 1)
    assert status == 200 and body == b"" and fields["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed; 2nd never answered
    writer.close()


async def test_node_client_round_trip_and_reconnect_after_node_restart(
    node_proc: RoleProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        nodes = NodeClient(session, {"n1": NodeSpec("n1", "z1", node_proc.url)}, 5.0)
        payloads = [os.urandom(600 + i) for i in range(40)]
        locations = await asyncio.gather(*(nodes.put_fragment("n1", f"r{i}/0/0", p)
                                           for i, p in enumerate(payloads)))
        # The node restarts: the idle kept connection is dead; the next batch goes out on
        # a new one and nothing fails.
        node_proc.stop()
        node_proc.start()
        got = await asyncio.gather(*(nodes.get_fragment(loc, f"r{i}/0/0")
                                     for i, loc in enumerate(locations)))
        assert got == payloads
        node_proc.stop()
        with pytest.raises(NodeRequestError) as failed:
            await nodes.get_fragment(locations[0], "r0/0/0")
        assert failed.value.kind == "unreachable"
        node_proc.start()
        await nodes.close()


async def test_batch_connections_refuse_answers_without_length_and_time_out(
    tmp_path: Path,
) -> None:
    """Against a scripted server of our own: an answer framed by closing the connection is
    refused as malformed; a server that never answers times out."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
        await reader.readexactly(length)
        if b"/silent" in head:
            await asyncio.sleep(10)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nno length")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conns = BatchConnections(connect_timeout=2.0)
    try:
        with pytest.raises(ValueError, match="Content-Length"):
            await conns.post("127.0.0.1", port, "/x", [b"abc"], 5.0)
        with pytest.raises(TimeoutError):
            await conns.post("127.0.0.1", port, "/silent", [b"abc"], 0.3)
    finally:
        conns.close()
        server.close()
        await server.wait_closed()
