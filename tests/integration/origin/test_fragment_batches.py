"""Batch endpoints of the storage node and the origin's coalescing client, on real files and
loopback sockets (the node app in-process, the client through a real aiohttp session)."""

from __future__ import annotations

import asyncio
import os
import re
import zlib
from pathlib import Path

import aiohttp
import pytest

from cdn.processes import free_port
from origin import batch_wire as bw
from origin.config import NodeSpec, StorageNodeConfig
from origin.layout import FragmentLocation
from origin.nodeclient import BATCH_FRAGMENT_LIMIT, NodeClient, NodeRequestError
from origin.storagenode import batches
from origin.storagenode.metrics import NodeMetrics
from origin.storagenode.server import build_app
from origin.storagenode.volume import VolumeSet
from tests.integration.origin.node_disk import numbered_from_one


def _app(tmp_path: Path):  # noqa: ANN202
    numbered_from_one(tmp_path)
    return build_app(StorageNodeConfig(node_id="n1", zone="z1", data_dir=str(tmp_path)))


def _metric(text: str, name: str, kind: str | None = None) -> float:
    label = f'{{kind="{kind}"}}' if kind else ""
    found = re.search(rf"^{name}{re.escape(label)} ([\d.e+]+)", text, re.M)
    return float(found[1]) if found else 0.0


async def _store(client, items: list[bw.StoreItem]) -> list[bw.StoredItem]:  # noqa: ANN001
    resp = await client.post("/fragments/batch", data=b"".join(bw.encode_store(items)))
    assert resp.status == 200, await resp.text()
    return bw.decode_stored(await resp.read(), len(items))


async def test_batch_store_then_batch_read_round_trips(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(_app(tmp_path))
    payloads = [os.urandom(500 + i) for i in range(20)]
    stored = await _store(client, [bw.StoreItem(f"o/0/{i}".encode(), p, zlib.crc32(p))
                                   for i, p in enumerate(payloads)])
    assert all(s.ok for s in stored)
    assert [s.length for s in stored] == [len(p) for p in payloads]
    assert len({s.offset for s in stored}) == 20
    metrics = await (await client.get("/_metrics")).text()
    # Answered once durable, and all twenty in one write+fsync pass.
    assert _metric(metrics, "storage_node_commits_total") == 1
    assert _metric(metrics, "storage_node_batch_fragments_total", "store") == 20
    want = [bw.FetchItem(s.volume, s.offset, s.length, f"o/0/{i}".encode())
            for i, s in enumerate(stored)]
    resp = await client.post("/fragments/read", data=bw.encode_fetch(want))
    assert resp.status == 200
    fetched = bw.decode_fetched(await resp.read(), len(want))
    assert [f.body for f in fetched] == payloads
    # The single-fragment endpoint reads a batch-stored record like any other.
    single = await client.get(f"/volumes/{stored[3].volume}/{stored[3].offset}/"
                              f"{stored[3].length}", headers={"X-Fragment-Id": "o/0/3"})
    assert await single.read() == payloads[3]


async def test_a_fragment_damaged_on_the_way_is_refused_alone(
    aiohttp_client, tmp_path: Path
) -> None:
    client = await aiohttp_client(_app(tmp_path))
    good, bad = b"good fragment", b"bad fragment"
    stored = await _store(client, [bw.StoreItem(b"o/0/0", good, zlib.crc32(good)),
                                   bw.StoreItem(b"o/0/1", bad, zlib.crc32(bad) ^ 1)])
    assert stored[0].ok
    assert bw.KIND[stored[1].status] == "checksum-mismatch"
    metrics = await (await client.get("/_metrics")).text()
    assert _metric(metrics, "storage_node_appends_total") == 1


async def test_batch_read_answers_each_fragment_with_its_own_outcome(
    aiohttp_client, tmp_path: Path
) -> None:
    client = await aiohttp_client(_app(tmp_path))
    a, b = os.urandom(300), os.urandom(400)
    sa, sb = await _store(client, [bw.StoreItem(b"o/0/0", a, zlib.crc32(a)),
                                   bw.StoreItem(b"o/0/1", b, zlib.crc32(b))])
    path = tmp_path / "volumes" / "000001.vol"
    data = bytearray(path.read_bytes())
    data[sb.offset + sb.length + 24 + len(b"o/0/1") - 1] ^= 0x01  # rot in b's last byte
    path.write_bytes(bytes(data))
    want = [bw.FetchItem(sa.volume, sa.offset, sa.length, b"o/0/0"),
            bw.FetchItem(sb.volume, sb.offset, sb.length, b"o/0/1"),
            bw.FetchItem(9, 0, 10, b"o/0/2"),
            bw.FetchItem(sa.volume, sa.offset, sa.length, b"other/0/0"),
            bw.FetchItem(sa.volume, sa.offset, sa.length - 1, b"")]
    resp = await client.post("/fragments/read", data=bw.encode_fetch(want))
    fetched = bw.decode_fetched(await resp.read(), len(want))
    assert fetched[0].ok and fetched[0].body == a
    assert [bw.KIND[f.status] for f in fetched[1:]] == [
        "checksum-mismatch", "not-found", "fragment-id-mismatch", "corrupt-record"]


async def test_malformed_or_oversized_batches_are_refused(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(build_app(StorageNodeConfig(
        node_id="n1", zone="z1", data_dir=str(tmp_path), max_fragment_bytes=1000)))
    body = b"".join(bw.encode_store([bw.StoreItem(b"o/0/0", b"x" * 10, 0)]))
    resp = await client.post("/fragments/batch", data=body[:-3])
    assert resp.status == 400 and resp.headers["X-Fragment-Error"] == "bad-request"
    resp = await client.post("/fragments/batch", data=b"".join(bw.encode_store(
        [bw.StoreItem(b"o/0/0", b"x" * 600, 0), bw.StoreItem(b"o/0/1", b"x" * 600, 0)])))
    assert resp.status == 413
    resp = await client.post("/fragments/read", data=b"\x00\x01")
    assert resp.status == 400


@pytest.fixture
async def node(aiohttp_server, tmp_path: Path):  # noqa: ANN201
    server = await aiohttp_server(_app(tmp_path))
    return server


async def _node_client(url: str, session: aiohttp.ClientSession, **kw: int) -> NodeClient:
    return NodeClient(session, {"n1": NodeSpec("n1", "z1", url)}, 5.0, **kw)


async def test_client_coalesces_concurrent_small_fragments(node) -> None:  # noqa: ANN001
    url = str(node.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        nodes = await _node_client(url, session)
        # A lone fragment leaves at once, in a batch of one.
        alone = await asyncio.wait_for(nodes.put_fragment("n1", "lone/0/0", b"solo"), 2.0)
        assert await nodes.get_fragment(alone, "lone/0/0") == b"solo"
        payloads = [os.urandom(700) for _ in range(200)]
        locations = await asyncio.gather(*(
            nodes.put_fragment("n1", f"o{i}/0/0", p) for i, p in enumerate(payloads)))
        assert all(loc.checksum == zlib.crc32(p) for loc, p in zip(locations, payloads,
                                                                   strict=True))
        got = await asyncio.gather(*(nodes.get_fragment(loc, f"o{i}/0/0")
                                     for i, loc in enumerate(locations)))
        assert got == payloads
        # Larger fragments go one request each, to the single endpoints.
        big = os.urandom(BATCH_FRAGMENT_LIMIT + 1)
        where = await nodes.put_fragment("n1", "big/0/0", big)
        assert await nodes.get_fragment(where, "big/0/0") == big
        metrics = await (await session.get(url + "/_metrics")).text()
        await nodes.close()
    stores = _metric(metrics, "storage_node_batch_requests_total", "store")
    reads = _metric(metrics, "storage_node_batch_requests_total", "read")
    assert _metric(metrics, "storage_node_batch_fragments_total", "store") == 201
    assert _metric(metrics, "storage_node_batch_fragments_total", "read") == 201
    assert stores < 20 and reads < 20, (stores, reads)  # 200 fragments in a few requests
    assert _metric(metrics, "storage_node_appends_total") == 202


async def test_client_reports_per_fragment_failures_and_checks_crc(node) -> None:  # noqa: ANN001
    url = str(node.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        nodes = await _node_client(url, session)
        where = await nodes.put_fragment("n1", "o/0/0", b"payload")
        results = await asyncio.gather(
            nodes.get_fragment(where, "o/0/0"),
            nodes.get_fragment(FragmentLocation("n1", 7, 0, 7, where.checksum), "o/0/1"),
            nodes.get_fragment(where, "someone-else/0/0"),
            # The metadata's CRC differs from what comes back: the origin's own check.
            nodes.get_fragment(FragmentLocation("n1", where.volume, where.offset,
                                                where.length, where.checksum ^ 1), "o/0/0"),
            return_exceptions=True)
        await nodes.close()
    assert results[0] == b"payload"
    assert isinstance(results[1], NodeRequestError) and results[1].kind == "not-found"
    assert isinstance(results[2], NodeRequestError) and results[2].kind == "corrupt"
    assert results[2].detail == "fragment-id-mismatch"
    assert isinstance(results[3], NodeRequestError) and results[3].kind == "corrupt"
    assert not any(isinstance(r, NodeRequestError) and r.node_is_down for r in results)


async def test_a_node_that_is_not_there_fails_every_fragment_of_the_batch() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    async with aiohttp.ClientSession() as session:
        nodes = await _node_client(url, session)
        results = await asyncio.gather(*(nodes.put_fragment("n1", f"o/0/{i}", b"x" * 10)
                                         for i in range(5)), return_exceptions=True)
        await nodes.close()
    assert all(isinstance(r, NodeRequestError) and r.kind == "unreachable" and r.node_is_down
               for r in results), results


async def test_batching_can_be_switched_off(node) -> None:  # noqa: ANN001
    url = str(node.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        nodes = await _node_client(url, session, batch_inflight=0)
        where = await asyncio.gather(*(nodes.put_fragment("n1", f"o/0/{i}", b"abc")
                                       for i in range(3)))
        assert [await nodes.get_fragment(w, f"o/0/{i}") for i, w in enumerate(where)] == \
            [b"abc"] * 3
        metrics = await (await session.get(url + "/_metrics")).text()
    assert _metric(metrics, "storage_node_batch_requests_total", "store") == 0
    assert _metric(metrics, "storage_node_appends_total") == 3


def test_a_commit_pass_that_fills_a_volume_writes_both_sides_of_the_seal(tmp_path: Path) -> None:
    """Records before the roll-over go to the sealed volume, the rest to the new one, each
    written in one go per volume; every one reads back, and the sizes match the files."""
    volumes = VolumeSet(tmp_path, max_bytes=10_000)
    volumes.open()
    try:
        records = [(f"o/0/{i}".encode(), os.urandom(900 + i)) for i in range(30)]
        addresses = volumes.append_batch(records)
        used = sorted({a.volume for a in addresses})
        assert len(used) >= 3
        for (fragment_id, payload), address in zip(records, addresses, strict=True):
            assert volumes.read(address, fragment_id) == (fragment_id, payload)
        for info in volumes.volumes():
            assert info.size == (tmp_path / f"{info.volume:06d}.vol").stat().st_size
        page = volumes.scan(used[0], 0, 1 << 20, verify=True)
        assert page.records and all(r.error is None for r in page.records)
    finally:
        volumes.close()


async def test_a_read_batch_in_the_page_cache_is_answered_on_the_spot_as_from_disk(
        tmp_path: Path) -> None:
    """``read_batch_cached`` (the node front's task-free read) gives ``read_batch``'s very
    answer, per-fragment failures included; a fragment too large to read on the loop leaves
    the whole batch to ``read_batch``."""
    if not hasattr(os, "RWF_NOWAIT"):
        pytest.skip("no preadv(RWF_NOWAIT) here: every read goes to the thread")
    volumes = VolumeSet(tmp_path, max_bytes=1 << 20)
    volumes.open()
    try:
        small, large = os.urandom(700), os.urandom(batches.INLINE_READ_LIMIT + 1)
        at_small, at_large = volumes.append_batch([(b"o/0/0", small), (b"o/0/1", large)])
        body = bw.encode_fetch([
            bw.FetchItem(at_small.volume, at_small.offset, at_small.length, b"o/0/0"),
            bw.FetchItem(at_small.volume, at_small.offset, at_small.length, b"other/0/0")])
        quick = batches.read_batch_cached(volumes, NodeMetrics(), body)
        assert quick is not None  # just written: in the page cache
        assert quick == await batches.read_batch(volumes, NodeMetrics(), body)
        fetched = bw.decode_fetched(quick.body, 2)
        assert fetched[0].body == small
        assert bw.KIND[fetched[1].status] == "fragment-id-mismatch"
        too_large = bw.encode_fetch([
            bw.FetchItem(at_small.volume, at_small.offset, at_small.length, b"o/0/0"),
            bw.FetchItem(at_large.volume, at_large.offset, at_large.length, b"o/0/1")])
        assert batches.read_batch_cached(volumes, NodeMetrics(), too_large) is None
    finally:
        volumes.close()
