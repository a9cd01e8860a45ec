"""Kill, corrupt and restart real processes; nothing acknowledged may be lost.

Each test prints the numbers it measured (objects written/verified, faults, lost objects,
repair MB/s); run with ``-s`` to see them."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import asyncpg
import pytest

from origin.client import S3Client, S3ClientError
from origin.fsck import fsck
from origin.layout import fragment_id
from origin.metadata.fragments import referenced_offsets
from origin.workers.base import ClusterContext
from origin.workers.compactor import Compactor
from origin.workers.gc import GarbageCollector, volume_records
from origin.workers.planning import Redundancy
from origin.workers.reconstructor import Reconstructor
from origin.workers.scrubber import Scrubber
from tests.faults.cluster import GRACE, NDATA, NPARITY, SEGMENT_SIZE, FaultCluster


def _body(rng: random.Random) -> bytes:
    size = rng.choice([1, 100, 1024, 5000, 64 << 10, SEGMENT_SIZE * 3 + 17, 300_000])
    return os.urandom(size)


class Traffic:
    """Writers and readers in a loop; ``acked`` holds every PUT that answered 200."""

    def __init__(self, s3: S3Client, bucket: str, seed: int = 7) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.rng = random.Random(seed)
        self.acked: dict[str, bytes] = {}
        self.write_errors: list[str] = []
        self.read_errors: list[str] = []
        self.mismatches: list[str] = []
        self.reads = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _writer(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            key = f"w{n}-{i}"
            i += 1
            body = _body(self.rng)
            try:
                await self.s3.put_object(self.bucket, key, body)
                self.acked[key] = body
            except (TimeoutError, S3ClientError, OSError) as exc:
                self.write_errors.append(f"{key}: {exc!r}"[:200])
                await asyncio.sleep(0.05)

    async def _reader(self) -> None:
        while not self._stop.is_set():
            if not self.acked:
                await asyncio.sleep(0.05)
                continue
            key = self.rng.choice(list(self.acked))
            try:
                got = await self.s3.get_object(self.bucket, key)
                self.reads += 1
                if got != self.acked[key]:
                    self.mismatches.append(key)
            except (TimeoutError, S3ClientError, OSError) as exc:
                self.read_errors.append(f"{key}: {exc!r}"[:200])
                await asyncio.sleep(0.05)

    def start(self, writers: int = 2, readers: int = 2) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._writer(n)) for n in range(writers)]
        self._tasks += [loop.create_task(self._reader()) for _ in range(readers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def verify_all(self) -> int:
        for key, body in self.acked.items():
            assert await self.s3.get_object(self.bucket, key) == body, key
        return len(self.acked)


@pytest.fixture
async def bucket(s3: S3Client) -> AsyncIterator[str]:
    name = f"f-{uuid.uuid4().hex[:10]}"
    await s3.create_bucket(name)
    yield name


async def _in_thread(fn, *args):  # noqa: ANN001, ANN202 - blocking process control
    return await asyncio.to_thread(fn, *args)


async def test_kill_up_to_m_nodes_during_puts_and_gets(
    faults: FaultCluster, s3: S3Client, bucket: str
) -> None:
    traffic = Traffic(s3, bucket)
    traffic.start()
    victims = ["node-2", "node-6"][:NPARITY]
    try:
        for victim in victims:
            await asyncio.sleep(1.5)
            await _in_thread(faults.kill_node, victim)
        await asyncio.sleep(2.5)  # traffic with m nodes down
    finally:
        await traffic.stop()
    await _in_thread(faults.restore_nodes)
    verified = await traffic.verify_all()
    print(f"\n[kill {len(victims)} nodes] objects acked={verified} reads={traffic.reads} "
          f"write errors={len(traffic.write_errors)} read errors={len(traffic.read_errors)} "
          f"mismatches={len(traffic.mismatches)}")
    assert verified > 10
    assert not traffic.mismatches
    assert not traffic.read_errors, traffic.read_errors[:3]
    assert not traffic.write_errors, traffic.write_errors[:3]  # 5 of 7 up: quorum 5 holds


async def test_more_than_m_down_writes_fail_503_and_nothing_half_written_is_visible(
    faults: FaultCluster, s3: S3Client, bucket: str
) -> None:
    await s3.put_object(bucket, "before", b"kept" * 1000)
    victims = ["node-1", "node-4", "node-7"]  # m + 1
    for victim in victims:
        await _in_thread(faults.kill_node, victim)
    try:
        for i in range(5):
            with pytest.raises(S3ClientError) as err:
                await s3.put_object(bucket, f"refused-{i}", os.urandom(200_000))
            assert err.value.status == 503 and err.value.code == "ServiceUnavailable"
    finally:
        await _in_thread(faults.restore_nodes)
    for i in range(5):
        with pytest.raises(S3ClientError) as err:
            await s3.head_object(bucket, f"refused-{i}")
        assert err.value.status == 404
    assert await s3.get_object(bucket, "before") == b"kept" * 1000


async def _fragment_rows(pool: asyncpg.Pool, bucket: str, key: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT f.* FROM fragments f JOIN objects o ON o.id = f.object_id
           WHERE o.bucket = $1 AND o.key = $2 AND o.is_latest ORDER BY segment, frag_index""",
        bucket, key)


async def test_flipped_bytes_read_exact_scrubber_finds_repair_heals(
    faults: FaultCluster, s3: S3Client, bucket: str, ctx: ClusterContext
) -> None:
    body = os.urandom(3 * SEGMENT_SIZE)
    await s3.put_object(bucket, "rot", body)
    victims = (await _fragment_rows(ctx.pool, bucket, "rot"))[:2]  # two fragments rot
    for row in victims:
        path = faults.data_dir(row["node_id"]) / "volumes" / f"{row['volume']:06d}.vol"
        with path.open("r+b") as fh:
            fh.seek(row["offset"] + row["length"])
            byte = fh.read(1)
            fh.seek(row["offset"] + row["length"])
            fh.write(bytes([byte[0] ^ 0xFF]))
    faults.faults.append("flip bytes in 2 volume records")
    scrub = await Scrubber(ctx, bytes_per_second=0).run_once(
        nodes=sorted({r["node_id"] for r in victims}))
    repair = await Reconstructor(ctx, bytes_per_second=0).run_once()
    rows = {(r["segment"], r["frag_index"]): r for r in
            await _fragment_rows(ctx.pool, bucket, "rot")}
    for old in victims:
        new = rows[(old["segment"], old["frag_index"])]
        assert (new["node_id"], new["volume"], new["offset"]) != \
            (old["node_id"], old["volume"], old["offset"])  # rebuilt elsewhere
    assert await s3.get_object(bucket, "rot") == body
    print(f"\n[bit rot] scrub found {scrub.corrupt_records} corrupt records "
          f"(background workers may have been first), repaired {repair.fragments_rebuilt}")
    assert scrub.corrupt_records >= 1 or repair.fragments_rebuilt == 0


async def _wait_full_redundancy(ctx: ClusterContext, rounds: int = 10) -> Redundancy | None:
    for _ in range(rounds):
        await ctx.health.probe_all(ctx.nodes.probe)
        report = await fsck(ctx)
        if set(report.counts) <= {Redundancy.FULL}:
            return None
        await Scrubber(ctx, bytes_per_second=0).run_once()
        await Reconstructor(ctx, bytes_per_second=0).run_once()
    return Redundancy.DEGRADED


async def _rows_without_their_record(ctx: ClusterContext, node_id: str) -> list[str]:
    """Fragment rows on ``node_id`` whose (volume, offset) does not start a record with their
    fragment id. fsck trusts the rows, so it cannot see these; a wiped node numbers its
    volumes from 1 again, and rows of the old disk then point inside new volumes."""
    headers: dict[tuple[int, int], str] = {}
    for raw in await ctx.nodes.list_volumes(node_id):
        volume = int(raw["volume"])
        for rec in await volume_records(ctx, node_id, volume) or []:
            headers[(volume, rec.offset)] = rec.fragment_id
    rows = await ctx.pool.fetch(
        'SELECT object_id, segment, frag_index, volume, "offset" FROM fragments'
        " WHERE node_id = $1", node_id)
    wanted = {(r["volume"], r["offset"]): fragment_id(str(r["object_id"]), r["segment"],
                                                      r["frag_index"]) for r in rows}
    return sorted(fid for place, fid in wanted.items() if headers.get(place) != fid)


async def test_wiped_data_dir_is_rebuilt_to_full_redundancy(
    faults: FaultCluster, s3: S3Client, bucket: str, ctx: ClusterContext
) -> None:
    bodies = {f"o{i}": os.urandom(random.randint(1, 200_000)) for i in range(20)}
    for key, body in bodies.items():
        await s3.put_object(bucket, key, body)
    await _in_thread(faults.wipe_node, "node-3")
    await _in_thread(faults.wait_nodes_up)
    for key, body in bodies.items():  # still exact while degraded
        assert await s3.get_object(bucket, key) == body
    await ctx.health.probe_all(ctx.nodes.probe)
    scrub = await Scrubber(ctx, bytes_per_second=0).run_once(nodes=["node-3"])
    repair = await Reconstructor(ctx, bytes_per_second=0).run_once()
    assert await _wait_full_redundancy(ctx) is None
    report = await fsck(ctx)
    print(f"\n[wiped disk] {scrub.missing_fragments} fragments found missing, "
          f"{repair.fragments_rebuilt} rebuilt at {repair.throughput_mb_s:.1f} MB/s; "
          f"fsck {report.as_dict()['full']} full, {report.as_dict()['lost']} lost")
    assert report.counts.get(Redundancy.LOST, 0) == 0
    for key, body in bodies.items():
        assert await s3.get_object(bucket, key) == body
    # Every row on the wiped node names a record of its own; a volume number of the old disk
    # reused by the new one must not hide a lost fragment (nor keep GC off that volume).
    stale = await _rows_without_their_record(ctx, "node-3")
    for _ in range(10):
        if not stale:
            break
        await Scrubber(ctx, bytes_per_second=0).run_once(nodes=["node-3"])
        await Reconstructor(ctx, bytes_per_second=0).run_once()
        stale = await _rows_without_their_record(ctx, "node-3")
    assert stale == [], f"{len(stale)} rows on node-3 point at no record of theirs"


async def test_node_lost_for_good_every_object_returns_to_full_redundancy(
    faults: FaultCluster, s3: S3Client, bucket: str, ctx: ClusterContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bodies = {f"big{i}": os.urandom(1 << 20) for i in range(12)}
    for key, body in bodies.items():
        await s3.put_object(bucket, key, body)
    await _in_thread(faults.kill_node, "node-5")
    from origin.repair_cli import main as repair_main

    started = time.monotonic()
    # cdn repair --mark-lost node-5: the node is gone for good (rate-capped, so that it
    # runs long enough to print progress as it goes)
    code = await asyncio.to_thread(repair_main, [
        "--database-url", faults.database_url, "--mark-lost", "node-5", "--rate", "10e6",
        "--progress", "0.2"])
    elapsed = time.monotonic() - started
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    progress = [line for line in printed if line.startswith("repair: ")]
    assert progress and all(" objects, " in line and " MB/s" in line for line in progress)
    assert any(line.startswith("repair done: ") and " MB/s" in line for line in printed)
    await ctx.health.probe_all(ctx.nodes.probe)
    report = await fsck(ctx)
    assert report.counts.get(Redundancy.LOST, 0) == 0
    assert report.counts.get(Redundancy.DEGRADED, 0) == 0, report.degraded[:5]
    moved = await ctx.pool.fetchval("SELECT count(*) FROM fragments WHERE node_id = 'node-5'")
    assert moved == 0
    stats = await Reconstructor(ctx, bytes_per_second=0).run_once()  # nothing left to do
    assert stats.fragments_rebuilt == 0
    for key, body in bodies.items():
        assert await s3.get_object(bucket, key) == body
    print(f"\n[node lost] cdn repair took {elapsed:.1f} s; fsck: {report.as_dict()}")
    # Put the node back as a fresh, active member for the tests that follow.
    await ctx.pool.execute("UPDATE nodes SET state = 'active' WHERE id = 'node-5'")
    shutil.rmtree(faults.data_dir("node-5"))
    await _in_thread(faults.start_node, "node-5")
    await _in_thread(faults.wait_nodes_up)


async def test_repair_throughput(
    faults: FaultCluster, s3: S3Client, bucket: str, ctx: ClusterContext
) -> None:
    """Rebuild one node's share of ~16 MB of objects; report MB/s of rebuilt fragments."""
    for i in range(16):
        await s3.put_object(bucket, f"t{i}", os.urandom(1 << 20))
    await _in_thread(faults.wipe_node, "node-2")
    await _in_thread(faults.wait_nodes_up)
    await ctx.health.probe_all(ctx.nodes.probe)
    await Scrubber(ctx, bytes_per_second=0).run_once(nodes=["node-2"])
    stats = await Reconstructor(ctx, bytes_per_second=0, concurrency=8).run_once()
    print(f"\n[repair throughput] {stats.fragments_rebuilt} fragments, "
          f"{stats.bytes_written / 1e6:.1f} MB written in {stats.seconds:.2f} s = "
          f"{stats.throughput_mb_s:.1f} MB/s (read {stats.bytes_read / 1e6:.1f} MB)")
    assert stats.fragments_rebuilt > 0
    # One fragment per segment was lost: k fragments are read to rebuild it, not all k+m-1
    # survivors (a little slack: the origin's own reconstructor runs meanwhile).
    assert stats.bytes_read <= (NDATA + 0.5) * stats.bytes_written, stats


async def _unreferenced_old_records(faults: FaultCluster, ctx: ClusterContext) -> int:
    """Unreferenced records in sealed volumes older than the grace period. The cluster's own
    collector and compactor run meanwhile: a volume they delete after it was listed here
    holds none."""
    count = 0
    for node_id in faults.nodes:
        for raw in await ctx.nodes.list_volumes(node_id):
            if float(raw["age"]) <= GRACE or raw["active"]:
                continue
            refs = await referenced_offsets(ctx.pool, node_id, int(raw["volume"]))
            records = await volume_records(ctx, node_id, int(raw["volume"]))
            if records is None:
                continue
            dead = sum(1 for r in records if r.offset not in refs)
            if dead:
                print(f"\n  {node_id} volume {raw}: {dead} of {len(records)} unreferenced")
            count += dead
    return count


async def _initiate_multipart(s3: S3Client, bucket: str, key: str) -> str:
    async with await s3.request("POST", bucket, key, query=[("uploads", "")]) as resp:
        assert resp.status == 200, await resp.text()
        doc = ET.fromstring(await resp.read())
    return next(e.text for e in doc.iter() if e.tag.endswith("UploadId"))  # type: ignore[return-value]


async def test_kill_origin_mid_put_and_mid_multipart_no_torn_object_orphans_collected(
    faults: FaultCluster, s3: S3Client, bucket: str, ctx: ClusterContext
) -> None:
    await s3.put_object(bucket, "stable", b"stable" * 999)
    upload_id = await _initiate_multipart(s3, bucket, "multi")
    part1 = os.urandom(5 << 20)
    async with await s3.request("PUT", bucket, "multi", data=part1, query=[
            ("partNumber", "1"), ("uploadId", upload_id)]) as resp:
        assert resp.status == 200

    async def slow_body() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield os.urandom(SEGMENT_SIZE)
            await asyncio.sleep(0.05)

    async def slow_put() -> None:
        await s3.put_object(bucket, "torn", slow_body())

    async def slow_part() -> None:
        async with await s3.request("PUT", bucket, "multi", data=slow_body(), query=[
                ("partNumber", "2"), ("uploadId", upload_id)]) as resp:
            await resp.read()

    tasks = [asyncio.ensure_future(slow_put()), asyncio.ensure_future(slow_part())]
    await asyncio.sleep(0.8)  # both are mid-body: fragments of several segments are stored
    await _in_thread(faults.kill_origin)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    await _in_thread(faults.restart_origin)
    async with S3Client(faults.endpoint, s3.access_key, s3.secret_key) as fresh:
        with pytest.raises(S3ClientError) as err:
            await fresh.head_object(bucket, "torn")
        assert err.value.status == 404  # no torn object
        with pytest.raises(S3ClientError) as err:
            await fresh.head_object(bucket, "multi")
        assert err.value.status == 404  # never completed
        async with await fresh.request("GET", bucket, "multi",
                                       query=[("uploadId", upload_id)]) as resp:
            listing = await resp.text()
        assert "<PartNumber>1</PartNumber>" in listing
        assert "<PartNumber>2</PartNumber>" not in listing  # the torn part is not listed
        assert await fresh.get_object(bucket, "stable") == b"stable" * 999
        async with await fresh.request("DELETE", bucket, "multi",
                                       query=[("uploadId", upload_id)]) as resp:
            assert resp.status == 204
    # Collection is eventual: the cluster's own background workers (shared with the other
    # fault tests) may write into volumes meanwhile, so allow a few bounded rounds.
    for _round in range(3):
        await asyncio.sleep(GRACE + 0.5)
        await ctx.health.probe_all(ctx.nodes.probe)
        gc = await GarbageCollector(ctx, grace=GRACE, dead_ratio=0.0).run_once()
        compaction = await Compactor(ctx, grace=GRACE, dead_ratio=0.0, drain=0.2,
                                     bytes_per_second=0).run_once()
        await GarbageCollector(ctx, grace=GRACE, dead_ratio=0.0).run_once()  # sealed by pass 1
        leftovers = await _unreferenced_old_records(faults, ctx)
        if leftovers == 0:
            break
    print(f"\n[origin killed] gc freed {gc.bytes_freed} B in {gc.volumes_deleted} volumes, "
          f"compaction moved {compaction.records_moved} live records and freed "
          f"{compaction.bytes_freed} B; old unreferenced records left: {leftovers}")
    # seen once in a full-suite run: 80 records left on node-3 while GC checked and compaction
    # moved nothing. Explained (and fixed in the scrubber): rows of node-3's wiped disk still
    # pointed inside its reused volume numbers, so a volume of nothing but garbage still
    # counted as referenced and was never deleted. Say what the workers saw if it recurs.
    assert leftovers == 0, (f"usable nodes {sorted(await ctx.usable_nodes())}; gc {gc}; "
                            f"compaction {compaction}")
    async with S3Client(faults.endpoint, s3.access_key, s3.secret_key) as fresh:
        assert await fresh.get_object(bucket, "stable") == b"stable" * 999


async def test_restart_postgres_under_load_origin_reconnects_by_itself(
    faults: FaultCluster, s3: S3Client, bucket: str
) -> None:
    traffic = Traffic(s3, bucket, seed=11)
    traffic.start(writers=2, readers=1)
    try:
        await asyncio.sleep(1.0)
        await _in_thread(faults.stop_postgres)  # traffic keeps going into the outage
        await asyncio.sleep(1.0)
        faults.start_postgres()
        recovered_after = None
        started = time.monotonic()
        for _ in range(200):
            try:
                await s3.put_object(bucket, "probe", b"after restart")
                assert await s3.get_object(bucket, "probe") == b"after restart"
                recovered_after = time.monotonic() - started
                break
            except S3ClientError as exc:
                assert exc.status == 503, exc
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
    finally:
        await traffic.stop()
    assert recovered_after is not None
    verified = await traffic.verify_all()
    print(f"\n[postgres restart] serving again {recovered_after:.2f} s after PostgreSQL was "
          f"back; {verified} acked objects verified; {len(traffic.write_errors)} writes "
          f"refused during the outage")
    assert not traffic.mismatches


async def test_a_node_that_registers_is_eligible_for_writes_at_once(
    faults: FaultCluster, s3: S3Client, bucket: str, ctx: ClusterContext
) -> None:
    """node-8 is started with only the database URL: it registers itself, the origin picks it
    up on its next health round (no reconfiguration, no restart) and places on it."""
    await _in_thread(faults.add_node, "node-8", "zone-b")
    started = time.monotonic()
    for _ in range(100):
        if faults.up_count() >= len(faults.nodes):
            break
        await asyncio.sleep(0.1)
    joined_after = time.monotonic() - started
    for i in range(30):
        await s3.put_object(bucket, f"n{i}", os.urandom(5000))
    placed = await ctx.pool.fetchval(
        """SELECT count(*) FROM fragments f JOIN objects o ON o.id = f.object_id
           WHERE o.bucket = $1 AND f.node_id = 'node-8'""", bucket)
    print(f"\n[node joins] eligible {joined_after:.1f} s after start; {placed} of "
          f"{30 * 6} fragments placed on it")
    assert placed > 0


async def _repair_now(ctx: ClusterContext, node_id: str) -> None:
    """Data-destroying faults (wiped disk, flipped byte) are repaired before the next one: the
    failure model is "at most m fragments of a segment lost before repair catches up". The
    soak without this wait overlapped three such faults within seconds (> m = 2) and lost an
    object, which 4+2 cannot survive."""
    await ctx.health.probe_all(ctx.nodes.probe)
    await Scrubber(ctx, bytes_per_second=0).run_once(nodes=[node_id])
    await Reconstructor(ctx, bytes_per_second=0).run_once()


@pytest.mark.skipif(os.environ.get("CDN_SOAK") != "1", reason="soak: set CDN_SOAK=1")
async def test_soak_mixing_every_fault(
    faults: FaultCluster, s3: S3Client, bucket: str, ctx: ClusterContext
) -> None:
    duration = float(os.environ.get("CDN_SOAK_SECONDS", "60"))
    rng = random.Random(2024)
    traffic = Traffic(s3, bucket, seed=99)
    traffic.start(writers=3, readers=2)
    deadline = time.monotonic() + duration
    injected = 0
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(2.0, 4.0))
            fault = rng.choice(["node", "node", "wipe", "flip", "pg"])
            if fault == "node":
                victim = rng.choice(sorted(faults.nodes))
                await _in_thread(faults.kill_node, victim)
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                await _in_thread(faults.start_node, victim)
            elif fault == "wipe":
                node = rng.choice(sorted(faults.nodes))
                await _in_thread(faults.wipe_node, node)
                await _repair_now(ctx, node)
            elif fault == "flip":
                node = rng.choice(sorted(faults.nodes))
                vols = sorted((faults.data_dir(node) / "volumes").glob("*.vol"))
                if vols and vols[0].stat().st_size > 1000:
                    with vols[0].open("r+b") as fh:
                        fh.seek(rng.randrange(vols[0].stat().st_size))
                        fh.write(b"\xff")
                    faults.faults.append(f"flip a byte on {node}")
                    await _repair_now(ctx, node)
            else:
                await _in_thread(faults.stop_postgres)
                await asyncio.sleep(0.5)
                faults.start_postgres()
            injected += 1
    finally:
        await traffic.stop()
    await _in_thread(faults.restore_nodes)
    await ctx.health.probe_all(ctx.nodes.probe)
    assert await _wait_full_redundancy(ctx) is None
    verified = await traffic.verify_all()
    report = await fsck(ctx)
    print(f"\n[soak {duration:.0f} s] faults injected={injected} objects written="
          f"{len(traffic.acked)} verified={verified} reads={traffic.reads} "
          f"lost={report.counts.get(Redundancy.LOST, 0)} fsck={report.as_dict()}")
    assert not traffic.mismatches
    assert report.counts.get(Redundancy.LOST, 0) == 0
