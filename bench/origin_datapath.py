"""The origin's data path against this machine's own limits.

    python bench/origin_datapath.py [--dir /tmp] [--seconds 5] [--objects 200000]

Starts its own cluster under a temporary folder in ``--dir``: an embedded PostgreSQL, 9
storage nodes (3 zones, fsync on) and the origin (6+3 by default). Prints, side by side:

* raw disk: sequential write of ``--raw-mib`` MiB with fsync at the end, then a read of the
  same file after dropping its pages (``posix_fadvise(DONTNEED)``), an ``O_DIRECT`` read,
  and a page-cache read;
* pyeclib alone: encode and decode (from data fragments, and with 3 data fragments lost)
  of 1 MiB segments, MB/s of segment bytes;
* PUT and GET throughput (MB/s of object bytes) for 4 KiB, 1 MiB and 256 MiB objects;
* 4 KiB PUT and GET ops/s at several concurrency levels (``--client lean``, the default:
  ``bench/lean_s3.py``, every request SigV4-signed; ``--client aiohttp``: ``S3Client``);
* the issue's goals as ratios;
* with ``--objects N``: 4 KiB PUT/GET ops/s as the store grows (10 k … N objects);
* with ``--callgrind OPS``, instead of all that: the instructions the origin process runs per
  4 KiB GET and PUT, counted by valgrind's callgrind (user space only; steady to ±1 % on a
  shared machine where CPU time per op swings by 2x).

Clients sign every request (SigV4) in this process and share the 2 cores with the servers;
server CPU (origin + nodes + PostgreSQL) per MB is printed so the client's share can be told.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import mmap
import os
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.lean_s3 import LeanS3  # noqa: E402
from bench.procs import Proc, cdn_role, tree_cpu_seconds  # noqa: E402
from cdn.embedded import EmbeddedPostgres  # noqa: E402
from cdn.processes import free_port  # noqa: E402

KiB, MiB = 1024, 1024 * 1024
ZONES = ("zone-a", "zone-b", "zone-c")
ACCESS, SECRET = "benchadmin", "bench-secret-key-0123456789"


# -- the machine's own limits ------------------------------------------------------------------

def raw_disk(folder: Path, mib: int) -> dict[str, float]:
    path = folder / "raw-disk-probe"
    block = os.urandom(MiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    start = time.perf_counter()
    for _ in range(mib):
        os.write(fd, block)
    os.fsync(fd)
    write_s = time.perf_counter() - start
    os.close(fd)
    out = {"write_fsync_MBps": mib * MiB / write_s / 1e6}

    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    start = time.perf_counter()
    while os.read(fd, MiB):
        pass
    out["read_dropped_MBps"] = mib * MiB / (time.perf_counter() - start) / 1e6
    start = time.perf_counter()
    os.lseek(fd, 0, os.SEEK_SET)
    while os.read(fd, MiB):
        pass
    out["read_cached_MBps"] = mib * MiB / (time.perf_counter() - start) / 1e6
    os.close(fd)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, MiB)  # page aligned, as O_DIRECT wants
        start = time.perf_counter()
        while os.readv(fd, [buf]):
            pass
        out["read_direct_MBps"] = mib * MiB / (time.perf_counter() - start) / 1e6
        os.close(fd)
    except OSError as exc:
        print(f"# O_DIRECT read not possible here: {exc}")
    path.unlink()
    return out


def pyeclib_rates(ndata: int, nparity: int, ec_type: str, seconds: float = 2.0
                  ) -> dict[str, float]:
    from pyeclib.ec_iface import ECDriver

    driver = ECDriver(k=ndata, m=nparity, ec_type=ec_type)
    segment = os.urandom(MiB)
    out: dict[str, float] = {}

    def rate(fn: Callable[[], object]) -> float:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            n += 1
        return n * MiB / (time.perf_counter() - start) / 1e6

    fragments = driver.encode(segment)
    out["encode_MBps"] = rate(lambda: driver.encode(segment))
    out["decode_data_MBps"] = rate(lambda: driver.decode(fragments[:ndata]))
    lost = fragments[nparity:]  # first nparity (data) fragments missing
    out["decode_parity_MBps"] = rate(lambda: driver.decode(lost[:ndata]))
    assert driver.decode(lost[:ndata]) == segment
    # The origin's own wrapper (origin.erasure.ECScheme) on the same buffers: what the data
    # path adds around pyeclib (list/dict shuffling, length checks, any copy).
    from origin.erasure import cached_scheme

    scheme = cached_scheme(ndata, nparity, MiB, ec_type)
    by_index = dict(enumerate(fragments))
    out["origin_encode_MBps"] = rate(lambda: scheme.encode(segment))
    out["origin_decode_data_MBps"] = rate(
        lambda: scheme.decode({i: by_index[i] for i in range(ndata)}, MiB))
    assert scheme.decode({i: by_index[i] for i in range(nparity, nparity + ndata)},
                         MiB) == segment
    return out


# -- the cluster -------------------------------------------------------------------------------

class Cluster:
    def __init__(self, root: Path, nodes: int) -> None:
        self.root = root
        self.nodes: list[Proc] = []
        self.origin: Proc | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.node_count = nodes
        self.url = ""

    def start(self, extra_origin_args: list[str], origin_prefix: list[str] | None = None
              ) -> None:
        """``origin_prefix``: a command the origin runs under (``--callgrind``: valgrind)."""
        logs = self.root / "logs"
        logs.mkdir()
        self.postgres = EmbeddedPostgres(self.root / "pg" / "data", free_port())
        db_url = self.postgres.start()
        specs = []
        for i in range(self.node_count):
            port, zone = free_port(), ZONES[i % len(ZONES)]
            proc = cdn_role(f"node-{i + 1}", "storage-node", [
                "--node-id", f"node-{i + 1}", "--zone", zone, "--port", str(port),
                "--data-dir", str(self.root / "nodes" / f"node-{i + 1}"),
                "--log-level", "WARNING"], logs).start()
            self.nodes.append(proc)
            specs.append((f"node-{i + 1}@{zone}", f"http://127.0.0.1:{port}", proc))
        for _name, url, proc in specs:
            proc.ready(url + "/_health")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.origin = cdn_role("origin", "origin", [
            "--port", str(port), "--database-url", db_url,
            "--nodes", ",".join(f"{n}={u}" for n, u, _p in specs),
            "--admin-access-key", ACCESS, "--admin-secret-key", SECRET,
            "--log-level", "WARNING", *extra_origin_args], logs)
        if origin_prefix:
            self.origin.argv = [*origin_prefix, *self.origin.argv]
        self.origin.start()
        self.origin.ready(self.url + "/_health", timeout=300 if origin_prefix else 30)
        self._wait_nodes_up(timeout=120 if origin_prefix else 30)

    def _wait_nodes_up(self, timeout: float = 30.0) -> None:
        import json
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(self.url + "/_health", timeout=2) as resp:
                if json.load(resp).get("storage_nodes_up") == self.node_count:
                    return
            time.sleep(0.2)
        raise RuntimeError("the origin does not see every storage node up")

    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_role().values())

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds so far of the origin, all nodes together, and PostgreSQL."""
        out = {"origin": tree_cpu_seconds(self.origin.pid) if self.origin else 0.0,
               "nodes": sum(tree_cpu_seconds(p.pid) for p in self.nodes), "pg": 0.0}
        if self.postgres and self.postgres.pid:
            out["pg"] = tree_cpu_seconds(self.postgres.pid)
        return out

    def node_disk_read_bytes(self) -> int:
        """Bytes the storage nodes made the kernel fetch from the disk so far (``read_bytes``
        of ``/proc/PID/io``: page-cache misses, not reads served from the cache)."""
        total = 0
        for node in self.nodes:
            try:
                with open(f"/proc/{node.pid}/io") as f:
                    total += next(int(line.split()[1]) for line in f
                                  if line.startswith("read_bytes:"))
            except (OSError, StopIteration):
                pass
        return total

    def stop(self) -> None:
        if self.origin:
            self.origin.stop()
        for node in self.nodes:
            node.stop()
        if self.postgres:
            self.postgres.stop()


# -- load ----------------------------------------------------------------------------------------

async def chunks_of(data: memoryview, step: int = MiB) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), step):
        yield bytes(data[offset:offset + step])


async def run_for(seconds: float, concurrency: int,
                  op: Callable[[int], Awaitable[None]]) -> tuple[int, float]:
    """Run ``op(i)`` with ``concurrency`` workers for ``seconds``; (ops done, elapsed)."""
    counter = iter(range(10**12))
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await op(next(counter))
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - start


async def run_count(count: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> float:
    counter = iter(range(count))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


class Load:
    """PUTs and GETs of slices of ``data``; with ``lean``, objects under 1 MiB go through the
    lean client (``bench/lean_s3.py``: still SigV4-signed, cheaper per request)."""

    def __init__(self, client: object, bucket: str, data: bytes,
                 lean: LeanS3 | None = None) -> None:
        self.s3 = client
        self.bucket = bucket
        self.data = memoryview(data)
        self.lean = lean

    async def put(self, key: str, size: int) -> None:
        if self.lean is not None and size < MiB:
            await self.lean.put(self.bucket, key, bytes(self.data[:size]))
        elif size < MiB:
            await self.s3.put_object(self.bucket, key, bytes(self.data[:size]))  # type: ignore[attr-defined]
        else:
            await self.s3.put_object(self.bucket, key, chunks_of(self.data[:size]),  # type: ignore[attr-defined]
                                     content_length=size)

    async def get(self, key: str, size: int, verify: bool = False) -> None:
        if self.lean is not None and size < MiB and not verify:
            body = await self.lean.get(self.bucket, key)
            if len(body) != size:
                raise RuntimeError(f"GET {key}: {len(body)} bytes (wanted {size})")
            return
        got, crc = 0, 0
        async for chunk in self.s3.iter_object(self.bucket, key):  # type: ignore[attr-defined]
            got += len(chunk)
            if verify:
                crc = zlib.crc32(chunk, crc)
        if got != size or (verify and crc != zlib.crc32(self.data[:size])):
            raise RuntimeError(f"GET {key}: {got} bytes (wanted {size}), content ok: "
                               f"{not verify or crc == zlib.crc32(self.data[:size])}")


async def throughput(load: Load, cluster: Cluster, size: int, count: int, concurrency: int
                     ) -> dict[str, float]:
    tag = f"t{size}-{time.time_ns()}"
    cpu0 = cluster.cpu_seconds()
    put_s = await run_count(count, concurrency, lambda i: load.put(f"{tag}/{i}", size))
    cpu1 = cluster.cpu_seconds()
    await load.get(f"{tag}/0", size, verify=True)
    cpu2 = cluster.cpu_seconds()
    get_s = await run_count(count, concurrency, lambda i: load.get(f"{tag}/{i}", size))
    cpu3 = cluster.cpu_seconds()
    mb = size * count / 1e6
    return {"put_MBps": mb / put_s, "get_MBps": mb / get_s, "put_ops": count / put_s,
            "get_ops": count / get_s, "put_cpu_s_per_GB": (cpu1 - cpu0) / mb * 1e3,
            "get_cpu_s_per_GB": (cpu3 - cpu2) / mb * 1e3}


@dataclass(frozen=True)
class SmallOps:
    """4 KiB ops/s and the CPU they cost per operation: servers (origin, nodes, PostgreSQL)
    and this client process (signing, HTTP), in milliseconds."""

    puts: float
    gets: float
    put_server_ms: float
    get_server_ms: float
    put_client_ms: float
    get_client_ms: float
    put_roles_ms: dict[str, float]
    get_roles_ms: dict[str, float]
    get_disk_kib: float = 0.0  # read from the disk by the nodes per GET (page-cache misses)

    def describe(self) -> str:
        def roles(ms: dict[str, float]) -> str:
            return "/".join(f"{v:.2f}" for v in ms.values())

        return (f"{self.puts:7.0f} PUT/s  {self.gets:7.0f} GET/s  (CPU ms/op server+client: "
                f"PUT {self.put_server_ms:.2f}+{self.put_client_ms:.2f}, "
                f"GET {self.get_server_ms:.2f}+{self.get_client_ms:.2f}; "
                f"origin/nodes/pg PUT {roles(self.put_roles_ms)} GET {roles(self.get_roles_ms)}; "
                f"node disk reads {self.get_disk_kib:.1f} KiB/GET)")


async def small_ops(load: Load, cluster: Cluster, seconds: float, concurrency: int,
                    keys: list[str], *, puts_too: bool = True) -> SmallOps:
    tag = f"o{concurrency}-{time.time_ns()}"
    cpu0, own0 = cluster.cpu_by_role(), time.process_time()
    puts, took = 0, 1.0
    if puts_too:
        puts, took = await run_for(seconds, concurrency,
                                   lambda i: load.put(f"{tag}/{i}", 4 * KiB))
    cpu1, own1 = cluster.cpu_by_role(), time.process_time()
    disk1 = cluster.node_disk_read_bytes()
    gets, took_get = await run_for(seconds, concurrency,
                                   lambda i: load.get(keys[i % len(keys)], 4 * KiB))
    cpu2, own2 = cluster.cpu_by_role(), time.process_time()
    disk_kib = (cluster.node_disk_read_bytes() - disk1) / max(gets, 1) / KiB

    def per_op(after: dict[str, float], before: dict[str, float], ops: int) -> dict[str, float]:
        return {role: (after[role] - before[role]) / max(ops, 1) * 1e3 for role in after}

    put_roles, get_roles = per_op(cpu1, cpu0, puts), per_op(cpu2, cpu1, gets)
    return SmallOps(puts / took, gets / took_get,
                    sum(put_roles.values()), sum(get_roles.values()),
                    (own1 - own0) / max(puts, 1) * 1e3, (own2 - own1) / max(gets, 1) * 1e3,
                    put_roles, get_roles, disk_kib)


async def bench_cluster(cluster: Cluster, args: argparse.Namespace) -> dict[str, object]:
    import aiohttp

    from origin.client import S3Client

    data = os.urandom(256 * MiB)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256), auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=600))
    results: dict[str, object] = {}
    async with S3Client(cluster.url, ACCESS, SECRET, session=session) as s3:
        await s3.create_bucket("bench")
        load = Load(s3, "bench", data)
        plan = [(4 * KiB, 2000, 16), (MiB, 96, 4), (256 * MiB, 2, 1)]
        if args.only_small:
            plan = plan[:1]
        for size, count, conc in plan:
            got = await throughput(load, cluster, size, count, conc)
            results[f"tp_{size}"] = got
            print(f"  {size:>10} B x{count} conc {conc}: PUT {got['put_MBps']:8.1f} MB/s "
                  f"({got['put_ops']:.0f} ops/s, server CPU {got['put_cpu_s_per_GB']:.1f} s/GB)"
                  f"  GET {got['get_MBps']:8.1f} MB/s ({got['get_ops']:.0f} ops/s, server CPU "
                  f"{got['get_cpu_s_per_GB']:.1f} s/GB)", flush=True)
        lean = None
        if args.client == "lean":
            host, _sep, port = cluster.url.removeprefix("http://").partition(":")
            lean = LeanS3(host, int(port), ACCESS, SECRET)
        small = Load(s3, "bench", data, lean)
        keys = [f"small/{i}" for i in range(500)]
        await run_count(len(keys), 32, lambda i: small.put(keys[i], 4 * KiB))
        await small.get(keys[0], 4 * KiB, verify=True)
        for conc in args.concurrency:
            got_ops = await small_ops(small, cluster, args.seconds, conc, keys)
            results[f"ops_{conc}"] = got_ops
            print(f"  4 KiB concurrency {conc:>3}: {got_ops.describe()}", flush=True)
        if args.objects:
            results["growth"] = await growth(small, cluster, args)
        if lean is not None:
            lean.close()
    await session.close()
    return results


async def fill_one(load: Load, base: int, i: int) -> None:
    await load.put(f"fill/{base + i}", 4 * KiB)


async def growth(load: Load, cluster: Cluster, args: argparse.Namespace
                 ) -> list[tuple[int, float, float]]:
    """4 KiB ops/s at concurrency 32 as the store fills up to ``--objects``."""
    marks = sorted({m for m in (10_000, 50_000, 100_000, 200_000, args.objects)
                    if m <= args.objects})
    stored, rows = 0, []
    fill_conc = 64
    for mark in marks:
        start = time.perf_counter()
        await run_count(mark - stored, fill_conc, functools.partial(fill_one, load, stored))
        fill_rate = (mark - stored) / (time.perf_counter() - start)
        stored = mark
        keys = [f"fill/{i}" for i in range(0, stored, max(1, stored // 5000))]
        got = await small_ops(load, cluster, args.seconds, 32, keys)
        rows.append((stored, got.puts, got.gets))
        print(f"  {stored:>7} objects: fill {fill_rate:6.0f} PUT/s (conc {fill_conc}); "
              f"conc 32: {got.describe()}", flush=True)
        if args.gets_again:
            # The same keys once more, now that the first pass read them: whether a drop
            # with the store's size is the page cache (gone here) or per-op work (stays).
            again = await small_ops(load, cluster, args.seconds, 32, keys, puts_too=False)
            print(f"  {stored:>7} objects, same keys again: {again.gets:7.0f} GET/s (GET CPU "
                  f"ms server {again.get_server_ms:.2f}, origin/nodes/pg "
                  f"{'/'.join(f'{v:.2f}' for v in again.get_roles_ms.values())}; node disk "
                  f"reads {again.get_disk_kib:.1f} KiB/GET)", flush=True)
    return rows


async def count_instructions(cluster: Cluster, ops: int, clients: int = 8) -> dict[str, float]:
    """Instructions the origin executes per 4 KiB GET and per PUT (``--callgrind``): counting
    is on (``callgrind_control -i on``) only around ``ops`` operations at ``clients`` clients
    (8 by default), after 300
    objects were written and read once, and each phase is dumped on its own (``-d``). On a
    shared machine user-space instructions per op are steady where CPU time is not."""
    from origin.client import S3Client

    assert cluster.origin is not None
    pid = str(cluster.origin.pid)
    async with S3Client(cluster.url, ACCESS, SECRET) as s3:
        await s3.create_bucket("bench")
    host, _sep, port = cluster.url.removeprefix("http://").partition(":")
    lean = LeanS3(host, int(port), ACCESS, SECRET)
    data = os.urandom(4 * KiB)
    keys = [f"small/{i}" for i in range(300)]
    await run_count(len(keys), 8, lambda i: lean.put("bench", keys[i], data))
    await run_count(len(keys), 8, lambda i: lean.get("bench", keys[i]))
    counted: dict[str, float] = {}
    for mode in ("get", "put"):
        dumps = set(cluster.root.glob("callgrind.out*"))
        await callgrind_control("-i", "on", pid)
        if mode == "get":
            await run_count(ops, clients, lambda i: lean.get("bench", keys[i % len(keys)]))
        else:
            await run_count(ops, clients, lambda i: lean.put("bench", f"counted/{i}", data))
        await callgrind_control("-i", "off", pid)
        await callgrind_control("-d", pid)
        new = set(cluster.root.glob("callgrind.out*")) - dumps
        counted[mode] = sum(_dump_total(d) for d in new) / ops
    lean.close()
    return counted


async def callgrind_control(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("callgrind_control", *args,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    if await proc.wait() != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)} failed")


def callgrind_only(cluster: Cluster, args: argparse.Namespace) -> int:
    """``--callgrind OPS``: instructions per op of the origin process, nothing else."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("# valgrind is not installed (apt-get install valgrind): nothing counted")
        return 1
    prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
              f"--callgrind-out-file={cluster.root / 'callgrind.out'}"]
    try:
        # Under valgrind the origin is ~50x slower: no background work, patient node calls.
        cluster.start(["--ec-ndata", str(args.ndata), "--ec-nparity", str(args.nparity),
                       "--ec-type", args.ec_type, "--no-background-workers",
                       "--node-timeout", "60", *args.origin_args.split()], prefix)
        counted = asyncio.run(count_instructions(cluster, args.callgrind,
                                                 args.callgrind_clients))
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(cluster.root, ignore_errors=True)
    print(f"origin instructions per 4 KiB op ({args.callgrind} each, "
          f"{args.callgrind_clients} clients): "
          f"GET {counted['get']:,.0f}, PUT {counted['put']:,.0f}")
    return 0


def _dump_total(dump: Path) -> int:
    """The event total of one callgrind dump (its ``totals:`` or ``summary:`` line)."""
    total = 0
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            total = max(total, int(line.split()[1]))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the cluster's data (and the raw-disk probe) goes")
    parser.add_argument("--raw-mib", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=5.0, help="per ops/s measurement")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--objects", type=int, default=0,
                        help="also fill to this many 4 KiB objects, measuring on the way")
    parser.add_argument("--gets-again", action="store_true",
                        help="with --objects: at each mark read the same keys a second time")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument("--only-small", action="store_true",
                        help="4 KiB objects only: no raw-disk probe, no pyeclib rates, no "
                             "1 MiB / 256 MiB throughput, no goal ratios for them")
    parser.add_argument("--ndata", type=int, default=6)
    parser.add_argument("--nparity", type=int, default=3)
    parser.add_argument("--ec-type", default="isa_l_rs_cauchy")
    parser.add_argument("--client", choices=("lean", "aiohttp"), default="lean",
                        help="client of the 4 KiB ops/s part: bench/lean_s3.py (SigV4-signed "
                             "like the other, less CPU per request) or origin.client.S3Client")
    parser.add_argument("--callgrind", type=int, default=0, metavar="OPS",
                        help="only count the origin's instructions per 4 KiB GET and PUT over "
                             "OPS operations each, the origin under valgrind's callgrind")
    parser.add_argument("--callgrind-clients", type=int, default=8, metavar="N",
                        help="clients during the --callgrind count (more clients: bigger node "
                             "batches, fewer batch requests per op)")
    parser.add_argument("--origin-args", default="",
                        help="extra flags for the origin, e.g. '--node-batch-inflight 2'")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    root = Path(tempfile.mkdtemp(prefix="bench-origin-", dir=args.dir))
    root.chmod(0o755)  # PostgreSQL runs as an unprivileged user when we are root
    print(f"# data under {root}")
    disk: dict[str, float] = {}
    ec: dict[str, float] = {}
    if not args.only_small:
        disk = raw_disk(root, args.raw_mib)
        print(f"raw disk ({args.raw_mib} MiB): write+fsync "
              f"{disk['write_fsync_MBps']:.0f} MB/s; read after fadvise(DONTNEED) "
              f"{disk['read_dropped_MBps']:.0f} MB/s, O_DIRECT "
              f"{disk.get('read_direct_MBps', float('nan')):.0f} MB/s, page cache "
              f"{disk['read_cached_MBps']:.0f} MB/s", flush=True)
        ec = pyeclib_rates(args.ndata, args.nparity, args.ec_type)
        print(f"pyeclib {args.ec_type} {args.ndata}+{args.nparity}, 1 MiB segments: encode "
              f"{ec['encode_MBps']:.0f} MB/s, decode from data {ec['decode_data_MBps']:.0f} MB/s, "
              f"with {args.nparity} data fragments lost {ec['decode_parity_MBps']:.0f} MB/s",
              flush=True)
        print(f"origin.erasure.ECScheme around it: encode {ec['origin_encode_MBps']:.0f} MB/s "
              f"({ec['origin_encode_MBps'] / ec['encode_MBps']:.2f}x of pyeclib), decode from data "
              f"{ec['origin_decode_data_MBps']:.0f} MB/s "
              f"({ec['origin_decode_data_MBps'] / ec['decode_data_MBps']:.2f}x; goal >= 0.80x)",
              flush=True)
    cluster = Cluster(root, args.ndata + args.nparity)
    if args.callgrind:
        return callgrind_only(cluster, args)
    try:
        cluster.start(["--ec-ndata", str(args.ndata), "--ec-nparity", str(args.nparity),
                       "--ec-type", args.ec_type, *args.origin_args.split()])
        print(f"# cluster up: origin {cluster.url}, {len(cluster.nodes)} nodes", flush=True)
        results = asyncio.run(bench_cluster(cluster, args))
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    ops = [results[f"ops_{c}"] for c in args.concurrency]
    best_put = max(o.puts for o in ops)  # type: ignore[attr-defined]
    best_get = max(o.gets for o in ops)  # type: ignore[attr-defined]
    print("\ngoals:")
    if not args.only_small:
        print_big_goals(args, results, disk, ec)
    print(f"  4 KiB: best {best_put:.0f} PUT/s (goal 1000), best {best_get:.0f} GET/s "
          f"(goal 3000)")
    if results.get("growth"):
        rows = results["growth"]
        assert isinstance(rows, list)
        print("  growth: " + ", ".join(f"{n}: {p:.0f} PUT/s {g:.0f} GET/s" for n, p, g in rows))
    print("# one pass: run it again to see the noise")
    return 0


def print_big_goals(args: argparse.Namespace, results: dict[str, object],
                    disk: dict[str, float], ec: dict[str, float]) -> None:
    overhead = (args.ndata + args.nparity) / args.ndata
    big = results[f"tp_{256 * MiB}"]
    assert isinstance(big, dict)
    put_goal = 0.5 * disk["write_fsync_MBps"] / overhead
    read_ref = disk.get("read_direct_MBps", disk["read_dropped_MBps"])
    print(f"  256 MiB PUT {big['put_MBps']:.0f} MB/s vs goal 50% of raw write / EC overhead "
          f"{overhead:.2f} = {put_goal:.0f} MB/s -> {big['put_MBps'] / put_goal:.2f}x of goal; "
          f"EC encode alone {ec['encode_MBps']:.0f} MB/s")
    print(f"  256 MiB GET {big['get_MBps']:.0f} MB/s vs goal 60% of raw read ({read_ref:.0f} "
          f"MB/s uncached) = {0.6 * read_ref:.0f} MB/s -> "
          f"{big['get_MBps'] / (0.6 * read_ref):.2f}x of goal (page-cache read "
          f"{disk['read_cached_MBps']:.0f} MB/s)")


if __name__ == "__main__":
    sys.exit(main())
