"""The storage node's maintenance endpoints: record walk with verification, seal, relocate,
delete, and sealing by age."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from origin.config import StorageNodeConfig
from origin.storagenode.server import build_app
from origin.storagenode.volume import RecordNotFound, VolumeSet
from tests.integration.origin.node_disk import numbered_from_one


def _app(tmp_path: Path):  # noqa: ANN202
    numbered_from_one(tmp_path)
    return build_app(StorageNodeConfig(node_id="n1", zone="z1", data_dir=str(tmp_path),
                                       fsync=False))


async def _post(client, fragment_id: str, payload: bytes) -> dict:  # noqa: ANN001
    resp = await client.post("/fragments", data=payload, headers={"X-Fragment-Id": fragment_id})
    assert resp.status == 200
    return await resp.json()


async def _stored_with_damage(client, tmp_path: Path, count: int, *, broken_header: int,  # noqa: ANN001
                              rotten_payload: int) -> list[dict]:
    """``count`` records in volume 1, one with an unreadable header and one whose payload
    rotted; their addresses."""
    addrs = [await _post(client, f"o/0/{i}", bytes([i]) * 1000) for i in range(count)]
    path = tmp_path / "volumes" / "000001.vol"
    data = bytearray(path.read_bytes())
    data[addrs[broken_header]["offset"] + 2] ^= 0xFF
    data[addrs[rotten_payload]["offset"] + 24 + 5 + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    return addrs


async def test_scan_finds_rot_and_resynchronises_after_a_broken_header(
    aiohttp_client, tmp_path: Path
) -> None:
    client = await aiohttp_client(_app(tmp_path))
    addrs = await _stored_with_damage(client, tmp_path, 4, broken_header=1, rotten_payload=2)
    page = await (await client.get("/volumes/1/records?verify=1")).json()
    errors = [(r["offset"], r["error"]) for r in page["records"]]
    assert errors == [(addrs[0]["offset"], None), (addrs[1]["offset"], "corrupt-record"),
                      (addrs[2]["offset"], "checksum-mismatch"), (addrs[3]["offset"], None)]
    assert page["next_offset"] is None
    assert (page["walked"], page["walked_bytes"]) == (4, sum(r["length"] for r in page["records"]))
    quick = await (await client.get("/volumes/1/records?max_bytes=1")).json()
    assert len(quick["records"]) == 1 and quick["next_offset"] == addrs[1]["offset"]


async def test_an_errors_only_scan_lists_the_failed_records_and_counts_every_one(
    aiohttp_client, tmp_path: Path
) -> None:
    """The scrubber's walk (``errors_only=1``) answers only what failed, with the same
    counts and the same next offset as the full listing, page by page."""
    client = await aiohttp_client(_app(tmp_path))
    addrs = await _stored_with_damage(client, tmp_path, 6, broken_header=1, rotten_payload=4)
    for max_bytes in (1 << 20, 2500):
        full, short, offset = [], [], 0
        while offset is not None:
            query = f"/volumes/1/records?verify=1&offset={offset}&max_bytes={max_bytes}"
            whole = await (await client.get(query)).json()
            page = await (await client.get(query + "&errors_only=1")).json()
            assert page["next_offset"] == whole["next_offset"]
            assert (page["walked"], page["walked_bytes"]) == \
                (whole["walked"], whole["walked_bytes"])
            full += whole["records"]
            short += page["records"]
            offset = page["next_offset"]
        assert short == [r for r in full if r["error"]]
        assert [(r["offset"], r["error"]) for r in short] == [
            (addrs[1]["offset"], "corrupt-record"), (addrs[4]["offset"], "checksum-mismatch")]
        assert len(full) == 6  # the unreadable header's span stands for record 1
    clean = await (await client.get("/volumes/1/records?verify=1&errors_only=1"
                                    f"&offset={addrs[5]['offset']}")).json()
    assert clean == {"records": [], "next_offset": None, "walked": 1, "walked_bytes": 1000}


async def test_seal_relocate_and_delete(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(_app(tmp_path))
    keep = await _post(client, "k/0/0", b"keep" * 100)
    await _post(client, "g/0/0", b"garbage" * 100)
    assert (await client.post("/volumes/1/relocate", json={"records": []})).status == 409
    assert (await client.delete("/volumes/1")).status == 409  # active
    assert (await (await client.post("/volumes/seal")).json())["active"] == 2
    resp = await client.post("/volumes/1/relocate", json={"records": [
        {"offset": keep["offset"], "length": keep["length"], "fragment_id": "k/0/0"},
        {"offset": 5, "length": 3, "fragment_id": "x/0/0"}]})
    answer = await resp.json()
    assert [m["volume"] for m in answer["moved"]] == [2] and len(answer["failed"]) == 1
    moved = answer["moved"][0]
    got = await client.get(f"/volumes/2/{moved['offset']}/{moved['length']}",
                           headers={"X-Fragment-Id": "k/0/0"})
    assert await got.read() == b"keep" * 100
    freed = await (await client.delete("/volumes/1")).json()
    assert freed["freed"] > 0
    assert (await client.get(f"/volumes/1/{keep['offset']}/{keep['length']}")).status == 404
    listing = await (await client.get("/volumes")).json()
    assert [v["volume"] for v in listing["volumes"]] == [2]
    assert listing["volumes"][0]["age"] >= 0


def test_an_old_active_volume_is_sealed_before_the_next_append(tmp_path: Path) -> None:
    now = [0.0]
    volumes = VolumeSet(tmp_path, 1 << 20, fsync=False, max_age=10, clock=lambda: now[0])
    volumes.open()
    assert volumes.append_batch([(b"a/0/0", b"x")])[0].volume == 1
    now[0] = 5
    assert volumes.append_batch([(b"a/0/1", b"x")])[0].volume == 1
    now[0] = 16
    assert volumes.append_batch([(b"a/0/2", b"x")])[0].volume == 2
    volumes.close()


def test_a_volume_deleted_under_a_read_is_closed_by_that_read_not_before(
        tmp_path: Path) -> None:
    """A scan (or read) holds its volume's fd: a delete meanwhile unlinks the file but
    leaves the fd open until the holder lets go, so the walk neither fails with EBADF nor
    reads whatever file reused the number (the GC, compactor and scrubber of several
    origins walk and delete volumes concurrently)."""
    volumes = VolumeSet(tmp_path, 1 << 20, fsync=False)
    volumes.open()
    try:
        address = volumes.append_batch([(b"o/0/0", b"payload")])[0]
        volumes.seal()
        fd = volumes._hold_fd(address.volume)  # a scan under way
        assert volumes.delete(address.volume) > 0
        assert not (tmp_path / "000001.vol").exists()
        reused = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT)
        assert reused != fd
        os.close(reused)
        assert os.pread(fd, 64, address.offset).endswith(b"o/0/0payload")
        volumes._let_go(fd)
        with pytest.raises(OSError):
            os.fstat(fd)  # closed by its last holder
        with pytest.raises(RecordNotFound):
            volumes.scan(address.volume, 0, 1 << 20, verify=True)
        other = volumes.append_batch([(b"o/0/1", b"x")])[0]
        held = volumes._hold_fd(other.volume)
        volumes._let_go(held)
        os.fstat(held)  # a volume still there keeps its fd after the read
    finally:
        volumes.close()
