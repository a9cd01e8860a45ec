"""End to end through the real topology that ``cdn up`` starts: embedded PostgreSQL and Redis
(or the external ones from the environment), 9 storage-node processes, origin, control plane,
2 shields and 3 edges, all on loopback.

The tests run in file order against one topology; the ones that stop storage nodes and the
supervisor itself come last.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.signing import sign_url
from origin.client import S3Client, S3ClientError
from tests.conftest import scratch_database

pytestmark = pytest.mark.slow

SIZES = [0, 1, 1024, 1024 * 1024 + 1, 20 * 1024 * 1024]


def _start_up(data_dir: Path, timeout: float = 120) -> tuple[subprocess.Popen, dict[str, Any]]:
    log = open(data_dir.parent / f"{data_dir.name}-up.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdn.cli", "up", "--data-dir", str(data_dir), "--base-port", "0"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    topo_path = data_dir / "topology.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            up_log = (data_dir.parent / f"{data_dir.name}-up.log").read_text()
            raise AssertionError(f"cdn up exited {proc.returncode}:\n{up_log[-4000:]}")
        if topo_path.exists():
            topo = json.loads(topo_path.read_text())
            if topo.get("status") == "running" and topo.get("supervisor_pid") == proc.pid:
                return proc, topo
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("cdn up did not write a running topology.json in time")


def _stop_up(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is not running.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_all_gone(pids: list[int], timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


@pytest.fixture(scope="module")
def data_dir(shared_tmp: Path) -> Path:
    return shared_tmp / "cdn-data"


@pytest.fixture(scope="module")
def up_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """With an external PostgreSQL (``CDN_DATABASE_URL``), this module's ``cdn up`` and the
    tools its tests run get a database of their own. One shared with earlier runs still holds
    their objects, whose storage nodes' data dirs are gone: fsck rightly calls those lost."""
    external = os.environ.get("CDN_DATABASE_URL")
    if not external:
        yield
        return
    # The session's ``database_url`` reads the variable once: made now, it keeps the real
    # server's URL, not the scratch one this module sets (dropped when the module ends).
    request.getfixturevalue("database_url")
    with scratch_database(external) as url:
        os.environ["CDN_DATABASE_URL"] = url
        try:
            yield
        finally:
            os.environ["CDN_DATABASE_URL"] = external


@pytest.fixture(scope="module")
def topology(data_dir: Path, up_database: None) -> Iterator[dict[str, Any]]:
    proc, topo = _start_up(data_dir)
    topo["_proc"] = proc
    try:
        yield topo
    finally:
        _stop_up(proc)


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    import urllib.request

    with urllib.request.urlopen(url + "/_metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def origin_gets(topo: dict[str, Any]) -> float:
    return metric(topo["origin"]["endpoint"], "origin_requests_total", method="GET")


async def quiet_origin_gets(topo: dict[str, Any], quiet: float = 0.5, bound: float = 10) -> float:
    """The origin's GET count once it has stopped moving (earlier tests' background fetches,
    e.g. slice read-ahead, may still land), so a delta counts only what a test caused."""
    deadline = time.monotonic() + bound
    last = origin_gets(topo)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        now = origin_gets(topo)
        if now == last:
            return now
        last = now
    return last


def shield_requests(topo: dict[str, Any]) -> float:
    return sum(metric(s["url"], "cdn_requests_total") for s in topo["shields"])


def client(topo: dict[str, Any]) -> S3Client:
    o = topo["origin"]
    return S3Client(o["endpoint"], o["access_key"], o["secret_key"])


def payload(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def edge_result(headers: Any) -> str:
    """The edge's own verdict: the last member of Cache-Status (RFC 9211 order)."""
    last = headers.get("Cache-Status", "").split(",")[-1]
    return "hit" if "; hit" in last or last.strip().endswith(";hit") else "miss"


def test_topology_json_lists_every_process(topology):
    roles = [p["role"] for p in topology["processes"]]
    assert roles.count("storage-node") == 9
    assert roles.count("shield") == 2 and roles.count("edge") == 3 and "origin" in roles
    zones = {p["zone"] for p in topology["processes"] if p["role"] == "storage-node"}
    assert len(zones) == 3
    assert {e["region"] for e in topology["edges"]} == {"us-east", "eu-west", "ap-south"}
    assert all(_alive(p["pid"]) for p in topology["processes"])


async def test_demo_object_is_served_by_every_edge(topology):
    async with aiohttp.ClientSession() as http:
        for edge in topology["edges"]:
            async with http.get(edge["demo_url"]) as resp:
                assert resp.status == 200
                assert b"Hello from the CDN" in await resp.read()
            async with http.get(edge["signed_demo_url"]) as resp:
                assert resp.status == 200, await resp.text()
                assert b"Only signed URLs" in await resp.read()
        # The private bucket is closed at the origin: only the shields' SigV4 key reads it.
        async with http.get(topology["origin"]["endpoint"] + "/private/secret.txt") as resp:
            assert resp.status == 403
            assert "<Code>AccessDenied</Code>" in await resp.text()


@pytest.mark.parametrize("size", SIZES)
async def test_put_at_origin_then_miss_then_hit_at_every_edge(topology, size):
    body = payload(size, f"size-{size}")
    key = f"e2e/size-{size}.bin"
    async with client(topology) as s3:
        await s3.create_bucket("e2e", public=True)
        await s3.put_object("e2e", key, body, cache_control="public, max-age=300",
                            surrogate_keys=("sizes",))
    async with aiohttp.ClientSession() as http:
        for edge in topology["edges"]:
            url = f"{edge['url']}/e2e/{key}"
            async with http.get(url) as resp:
                assert resp.status == 200
                assert edge_result(resp.headers) == "miss"
                got = await resp.read()
                assert len(got) == size and got == body
            async with http.get(url) as resp:
                assert resp.status == 200
                assert edge_result(resp.headers) == "hit", resp.headers.get("Cache-Status")
                assert "Age" in resp.headers
                assert await resp.read() == body


async def test_range_read_through_an_edge(topology):
    body = payload(3 * 1024 * 1024 + 17, "range")
    async with client(topology) as s3:
        await s3.create_bucket("e2e", public=True)
        await s3.put_object("e2e", "range.bin", body, cache_control="public, max-age=300")
    edge = topology["edges"][1]["url"]
    async with aiohttp.ClientSession() as http:
        for header, expected in [("bytes=1048570-2097160", body[1048570:2097161]),
                                 ("bytes=-100", body[-100:]), ("bytes=5-", body[5:])]:
            async with http.get(f"{edge}/e2e/range.bin", headers={"Range": header}) as resp:
                assert resp.status == 206, header
                assert await resp.read() == expected


async def test_one_hundred_concurrent_cold_requests_make_one_origin_get(topology):
    body = payload(256 * 1024, "crowd")
    async with client(topology) as s3:
        await s3.create_bucket("e2e", public=True)
        await s3.put_object("e2e", "crowd.bin", body, cache_control="public, max-age=300")
    before = await quiet_origin_gets(topology)
    edges = [e["url"] for e in topology["edges"]]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:

        async def one(i: int) -> bytes:
            async with http.get(f"{edges[i % len(edges)]}/e2e/crowd.bin") as resp:
                assert resp.status == 200
                return await resp.read()

        results = await asyncio.gather(*(one(i) for i in range(100)))
    assert all(r == body for r in results)
    assert await quiet_origin_gets(topology) - before == 1


async def test_tag_purge_makes_every_edge_miss_next_time(topology):
    async with client(topology) as s3:
        await s3.create_bucket("e2e", public=True)
        await s3.put_object("e2e", "tagged.txt", b"v1", cache_control="public, max-age=300",
                            surrogate_keys=("purge-me", "other"))
    async with aiohttp.ClientSession() as http:
        for edge in topology["edges"]:
            async with http.get(f"{edge['url']}/e2e/tagged.txt") as resp:
                assert await resp.read() == b"v1"
            async with http.get(f"{edge['url']}/e2e/tagged.txt") as resp:
                assert edge_result(resp.headers) == "hit"
        async with client(topology) as s3:
            await s3.put_object("e2e", "tagged.txt", b"v2", cache_control="public, max-age=300",
                                surrogate_keys=("purge-me",))
        control = topology["control"]
        caches = [e["url"] for e in topology["edges"]] + [s["url"] for s in topology["shields"]]

        def propagation(url: str) -> tuple[float, float]:
            return (metric(url, "cdn_purge_propagation_seconds_count"),
                    metric(url, "cdn_purge_propagation_seconds_sum"))

        before = {url: propagation(url) for url in caches}
        async with http.post(f"{control['url']}/purge", json={"tags": ["purge-me"]},
                             headers={"Authorization": f"Bearer {control['purge_token']}"}) as r:
            assert r.status == 200, await r.text()
            seq = (await r.json())["seq"]
        # Propagation is asynchronous (Redis pub/sub): allow a short, bounded wait.
        for edge in topology["edges"]:
            deadline = time.monotonic() + 5
            while True:
                async with http.get(f"{edge['url']}/e2e/tagged.txt") as resp:
                    got = await resp.read()
                    if got == b"v2":
                        break
                assert time.monotonic() < deadline, f"{edge['region']} still serves v1"
                await asyncio.sleep(0.05)
    # Every cache applied this purge and measured how long it took to arrive (logged ->
    # applied); only this test's purges count (a shared database may replay old ones).
    for url in caches:
        assert metric(url, "cdn_purge_last_seq") >= seq
        count, total = propagation(url)
        applied = count - before[url][0]
        assert applied >= 1
        assert (total - before[url][1]) / applied < 5.0


async def test_bad_signature_is_403_at_the_edge_with_no_shield_request(topology):
    edge = topology["edges"][0]["url"]
    good = topology["edges"][0]["signed_demo_url"]
    parts = urllib.parse.urlsplit(good)
    query = dict(urllib.parse.parse_qsl(parts.query))
    flipped = "AA" if query["sig"][-2:] != "AA" else "BB"
    tampered_sig = {**query, "sig": query["sig"][:-2] + flipped}
    expired = sign_url(edge + "/private/secret.txt", key_id=topology["signing"]["key_id"],
                       secret=topology["signing"]["secret"], expires_at=int(time.time()) - 10)
    before = shield_requests(topology)
    async with aiohttp.ClientSession() as http:
        for url in [
            f"{edge}/private/secret.txt",  # unsigned
            f"{edge}{parts.path}?{urllib.parse.urlencode(tampered_sig)}",
            f"{edge}/private/other.txt?{parts.query}",  # signature for another path
            expired,
        ]:
            async with http.get(url) as resp:
                assert resp.status == 403, url
                assert (await resp.text()).strip()
    assert shield_requests(topology) == before


async def test_bad_input_answers_4xx_with_a_clear_body(topology):
    edge = topology["edges"][0]["url"]
    origin = topology["origin"]["endpoint"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{edge}/no-such-bucket-xyz/key") as resp:
            assert resp.status == 404
            assert "NoSuchBucket" in await resp.text()
        async with http.get(f"{origin}/no-such-bucket-xyz/key") as resp:
            assert resp.status == 404
            text = await resp.text()
            assert "<Code>NoSuchBucket</Code>" in text and "<RequestId>" in text
        async with http.get(f"{edge}/demo/no-such-key") as resp:
            assert resp.status == 404
            assert "NoSuchKey" in await resp.text()
        async with http.get(f"{edge}/demo/hello.txt", headers={"Range": "bytes=999999-"}) as resp:
            assert resp.status == 416
        async with http.get(f"{origin}/demo/hello.txt", headers={"Range": "bytes=999999-"}) as r:
            assert r.status == 416
            assert "InvalidRange" in await r.text()
    async with client(topology) as s3:
        with pytest.raises(S3ClientError) as bad_name:
            await s3.create_bucket("Bad_Bucket!")
        assert (bad_name.value.status, bad_name.value.code) == (400, "InvalidBucketName")
        assert bad_name.value.request_id
        with pytest.raises(S3ClientError) as long_key:
            await s3.put_object("e2e", "k" * 1100, b"x")
        assert (long_key.value.status, long_key.value.code) == (400, "KeyTooLongError")


def test_cdn_user_create_makes_working_credentials(topology, data_dir):
    out = subprocess.run(
        [sys.executable, "-m", "cdn.cli", "user", "create", "alice", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    creds = json.loads(out.stdout)
    assert set(creds) >= {"access_key", "secret_key"}

    async def check() -> None:
        endpoint = topology["origin"]["endpoint"]
        async with S3Client(endpoint, creds["access_key"], creds["secret_key"]) as alice:
            await alice.create_bucket("alice-bucket")
            await alice.put_object("alice-bucket", "a.txt", b"mine")
            assert await alice.get_object("alice-bucket", "a.txt") == b"mine"
            with pytest.raises(S3ClientError) as denied:
                await alice.get_object("private", "secret.txt")
            assert (denied.value.status, denied.value.code) == (403, "AccessDenied")

    asyncio.run(check())


async def test_load_test_catalogue_seeds_and_is_served_by_every_edge(topology):
    from loadtests.catalogue import Catalogue, body_for
    from loadtests.seed import seed

    catalogue = Catalogue(count=12)
    assert await seed(topology, catalogue, concurrency=4) == 12
    async with aiohttp.ClientSession() as http:
        for rank in (1, 7, 12):
            for edge in topology["edges"]:
                async with http.get(edge["url"] + catalogue.path(rank)) as resp:
                    assert resp.status == 200
                    assert await resp.read() == body_for(rank, catalogue.size(rank))
                    assert catalogue.tag(rank) not in resp.headers.get("Surrogate-Key", "")


def test_cdn_fsck_reports_a_healthy_topology_clean(topology, data_dir):
    # No URL given: the tool finds the database through cdn up's topology.json.
    env = {k: v for k, v in os.environ.items() if k != "CDN_DATABASE_URL"}
    out = subprocess.run(
        [sys.executable, "-m", "cdn.cli", "fsck", "--json", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    # Earlier tests stored dozens of objects; every one is at full redundancy, none lost.
    assert report["objects"] >= 10
    assert report["full"] == report["objects"]
    assert report["degraded"] == 0 and report["lost"] == 0
    assert report["unusable_nodes"] == []


def _node_pids(topology: dict[str, Any]) -> list[int]:
    return [p["pid"] for p in topology["processes"] if p["role"] == "storage-node"]


async def test_three_nodes_down_reads_exact_four_down_clear_503(topology):
    bodies = {f"degraded-{i}.bin": payload(1024 * 1024 * 2 + i, f"deg{i}") for i in range(3)}
    async with client(topology) as s3:
        await s3.create_bucket("e2e", public=True)
        for key, body in bodies.items():
            await s3.put_object("e2e", key, body, cache_control="public, max-age=300")
    pids = _node_pids(topology)
    for pid in pids[:3]:
        os.kill(pid, signal.SIGKILL)
    assert not _wait_all_gone(pids[:3])
    edges = [e["url"] for e in topology["edges"]]
    async with aiohttp.ClientSession() as http:
        # Cold at every tier: each read is decoded at the origin from 6 surviving fragments.
        for i, (key, body) in enumerate(bodies.items()):
            async with http.get(f"{edges[i % 3]}/e2e/{key}") as resp:
                assert resp.status == 200
                assert await resp.read() == body
        os.kill(pids[3], signal.SIGKILL)
        assert not _wait_all_gone(pids[3:4])
        async with http.get(f"{topology['origin']['endpoint']}/e2e/degraded-0.bin") as resp:
            assert resp.status == 503
            assert "<Code>" in await resp.text()
        async with client(topology) as s3:
            with pytest.raises(S3ClientError) as unavailable:
                await s3.put_object("e2e", "never.bin", b"x" * 1000)
            assert unavailable.value.status == 503
            assert unavailable.value.code in ("ServiceUnavailable", "SlowDown")
        async with http.get(f"{topology['origin']['endpoint']}/e2e/never.bin") as resp:
            assert resp.status == 404


def test_sigterm_stops_every_process_and_state_survives_restart(topology, data_dir):
    proc: subprocess.Popen = topology["_proc"]
    pids = [p["pid"] for p in topology["processes"]]
    assert _stop_up(proc) == 0
    assert _wait_all_gone(pids) == []
    assert json.loads((data_dir / "topology.json").read_text())["status"] == "stopped"

    proc2, topo2 = _start_up(data_dir)
    try:
        import urllib.request

        url = f"{topo2['edges'][2]['url']}/e2e/degraded-1.bin"
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.read() == payload(1024 * 1024 * 2 + 1, "deg1")
        assert topo2["origin"]["access_key"] == topology["origin"]["access_key"]
    finally:
        pids2 = [p["pid"] for p in topo2["processes"]]
        # kill -9 of the supervisor: its children get SIGTERM from the kernel (parent-death).
        _stop_up(proc2, signal.SIGKILL)
        assert _wait_all_gone(pids2, timeout=30) == []
