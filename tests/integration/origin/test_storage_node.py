"""The storage node's HTTP API on real files (in-process app on a loopback port)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

from origin.config import StorageNodeConfig
from origin.storagenode.committer import GroupCommitter
from origin.storagenode.record import HEADER_SIZE
from origin.storagenode.server import build_app
from origin.storagenode.volume import VolumeSet
from tests.integration.origin.node_disk import numbered_from_one


def _app(tmp_path: Path, **overrides: object):  # noqa: ANN202
    numbered_from_one(tmp_path)
    return build_app(StorageNodeConfig(node_id="n1", zone="z1", data_dir=str(tmp_path),
                                       **overrides))  # type: ignore[arg-type]


async def _post(client, fragment_id: str, payload: bytes) -> dict:  # noqa: ANN001
    resp = await client.post("/fragments", data=payload, headers={"X-Fragment-Id": fragment_id})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_append_then_read_back(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(_app(tmp_path))
    first = await _post(client, "obj/0/0", b"hello")
    second = await _post(client, "obj/0/1", b"world!")
    assert first == {"volume": 1, "offset": 0, "length": 5}
    assert second["offset"] == HEADER_SIZE + len("obj/0/0") + 5
    resp = await client.get("/volumes/1/{offset}/{length}".format(**second),
                            headers={"X-Fragment-Id": "obj/0/1"})
    assert resp.status == 200
    assert await resp.read() == b"world!"
    assert resp.headers["X-Fragment-Id"] == "obj/0/1"
    assert (tmp_path / "volumes" / "000001.vol").exists()


async def test_read_errors_are_explicit(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(_app(tmp_path))
    addr = await _post(client, "obj/0/0", b"x" * 100)
    resp = await client.get("/volumes/9/0/100")
    assert resp.status == 404 and resp.headers["X-Fragment-Error"] == "not-found"
    resp = await client.get("/volumes/1/0/99")  # wrong length: not the record we wrote
    assert resp.status == 409 and resp.headers["X-Fragment-Error"] == "corrupt-record"
    resp = await client.get("/volumes/1/0/100", headers={"X-Fragment-Id": "other/0/0"})
    assert resp.status == 409 and resp.headers["X-Fragment-Error"] == "fragment-id-mismatch"
    path = tmp_path / "volumes" / "000001.vol"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # bit rot in the payload
    path.write_bytes(bytes(data))
    resp = await client.get("/volumes/1/{offset}/{length}".format(**addr))
    assert resp.status == 409
    assert resp.headers["X-Fragment-Error"] == "checksum-mismatch"
    assert (await resp.json())["error"] == "checksum-mismatch"
    resp = await client.post("/fragments", data=b"no id")
    assert resp.status == 400


async def test_concurrent_appends_share_fsyncs(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(_app(tmp_path))
    payloads = [os.urandom(1000 + i) for i in range(64)]
    addresses = await asyncio.gather(*(
        _post(client, f"o/{i}/0", p) for i, p in enumerate(payloads)))
    offsets = sorted(a["offset"] for a in addresses)
    assert len(set(offsets)) == 64
    for address, payload in zip(addresses, payloads, strict=True):
        resp = await client.get("/volumes/1/{offset}/{length}".format(**address))
        assert await resp.read() == payload
    metrics = await (await client.get("/_metrics")).text()
    appends = float(re.search(r"^storage_node_appends_total ([\d.]+)", metrics, re.M)[1])
    commits = float(re.search(r"^storage_node_commits_total ([\d.]+)", metrics, re.M)[1])
    assert appends == 64
    assert commits < appends  # group commit batched some of them


async def test_volumes_roll_over_and_survive_restart(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(_app(tmp_path, volume_max_bytes=1 << 16))
    written = [await _post(client, f"o/{i}/0", bytes([i]) * 20_000) for i in range(5)]
    assert [w["volume"] for w in written] == [1, 1, 1, 2, 2]
    volumes = (await (await client.get("/volumes")).json())["volumes"]
    assert [v["volume"] for v in volumes] == [1, 2] and volumes[1]["active"]
    await client.close()

    # A torn record at the end of the active volume (crash before fsync) is cut off.
    active = tmp_path / "volumes" / "000002.vol"
    size_before = active.stat().st_size
    with active.open("ab") as fh:
        fh.write(b"CDNF\x01garbage")
    client = await aiohttp_client(_app(tmp_path, volume_max_bytes=1 << 16))
    assert active.stat().st_size == size_before
    for i, address in enumerate(written):
        resp = await client.get("/volumes/{volume}/{offset}/{length}".format(**address))
        assert await resp.read() == bytes([i]) * 20_000
    nxt = await _post(client, "o/5/0", b"after restart")
    assert (nxt["volume"], nxt["offset"]) == (2, size_before)


async def test_health_and_metrics(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(_app(tmp_path))
    health = await (await client.get("/_health")).json()
    disk = json.loads((tmp_path / "disk-identity.json").read_text())
    assert health == {"status": "ok", "node_id": "n1", "zone": "z1",
                      "disk_id": disk["disk_id"], "volume_base": disk["volume_base"]}
    resp = await client.get("/_metrics")
    assert resp.status == 200 and "storage_node_reads_total" in await resp.text()


async def test_inline_and_threaded_passes_and_a_seal_keep_their_order(tmp_path: Path) -> None:
    """Small passes are written on the loop, large ones on the writer thread; a seal queued
    between appends runs after the ones before it and before the ones after it."""
    volumes = VolumeSet(tmp_path, 1 << 20, fsync=True)
    volumes.open()
    committer = GroupCommitter(volumes, inline_max_bytes=4096)
    committer.start()
    try:
        small = [asyncio.ensure_future(committer.append(f"s/0/{i}".encode(), b"x" * 100))
                 for i in range(5)]
        big = asyncio.ensure_future(committer.append(b"b/0/0", b"y" * 20000))  # threaded
        sealed = asyncio.ensure_future(committer.run_exclusive(volumes.seal))
        after = asyncio.ensure_future(committer.append(b"a/0/0", b"z" * 100))
        before = await asyncio.gather(*small, big)
        assert {a.volume for a in before} == {1}
        assert await sealed == 2
        assert (await after).volume == 2
        assert volumes.read(before[-1], b"b/0/0")[1] == b"y" * 20000
        assert volumes.read(await after, b"a/0/0")[1] == b"z" * 100
    finally:
        await committer.stop()
        volumes.close()
