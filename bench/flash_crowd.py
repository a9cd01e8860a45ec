"""A flash crowd: 1,000 concurrent requests for one cold 10 MiB object through our edge.

    python bench/flash_crowd.py [--clients 1000] [--size 10m] [--origin-rate 200e6] [--repeat 3]
                                [--client-procs 2] [--via hit-path|app]

Reports the origin GETs the crowd caused (from the origin's own counter: the goal is exactly
1), whether every client got exactly the origin's bytes, the time to first byte of a lone
cold request vs each crowd member's (p50, p99, max), and the crowd's completion time vs the
same requests once the object is a cache hit.

The client is built to cost little next to the edge, so that what it measures is the edge:
``--client-procs`` processes, each a uvloop event loop of ``asyncio.BufferedProtocol``
connections reading into one preallocated buffer. A response head is parsed once; every body
read is checked in place against the expected bytes with ``bytes.startswith(view, offset)``,
which is a ``memcmp`` (a ``memoryview == bytes`` comparison goes item by item, ≈ 150 MB/s,
and made the former aiohttp client the bottleneck of its own measurement).

Every connection is opened, and has carried one request, before the clock starts, so the
figures are about the cache, not TCP setup. TTFB is from the moment a request is written to
the first byte of its response (the head); the first *body* byte is reported too. The
requests that open the connections are hits on a small object, so the connections stay on
the edge's hit path (``--via app``: a ``/_health`` round instead, which hands every connection
to the aiohttp application and measures the engine's aiohttp path).

The origin sends a body at ``--origin-rate`` bytes/s, so a waiter that only got its first
byte after the fetch completed would show it (10 MiB at 200 MB/s ≈ 52 ms). The crowd's TTFB
is also shown next to the TTFB of the same 1,000 requests as hits: both include the edge's
queue of 1,000 requests, which a lone request never sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge_vs_peers import parse_size  # noqa: E402
from bench.origins import start_origin  # noqa: E402
from bench.peers import start_edge  # noqa: E402
from bench.profile_edge import analyse  # noqa: E402
from bench.static_origin import body  # noqa: E402

LONE_SAMPLES = 5  # the lone request's TTFB is the median of this many cold fetches
LONE_GAP = 0.2  # seconds between two lone samples
WARM_SIZE = 16  # the small object whose hits open the connections
READ_BUFFER = 256 * 1024
MAX_HEAD = 64 * 1024
REQUEST_TIMEOUT = 300.0  # seconds for one burst of requests, all of them
REPLY_TIMEOUT = REQUEST_TIMEOUT + 60.0  # seconds the main process waits for a worker
SEND_BATCH = 25  # requests a client process writes between two looks at its sockets
START_DELAY = 0.3  # seconds between announcing a burst and its start (workers line up)


@dataclass(frozen=True, slots=True)
class Result:
    sent: float  # time.monotonic() when the request was written (one clock for all processes)
    first: float  # first byte of the response
    body_first: float  # first body byte (= done for an empty body)
    done: float  # last body byte
    status: int
    exact: bool  # status 200 and the body is exactly the expected bytes
    cache_status: str


class Client(asyncio.BufferedProtocol):
    """One keep-alive connection, one request at a time, verified as it streams in."""

    def __init__(self, expected: bytes, buffer: memoryview) -> None:
        self.expected = expected
        # one buffer for every connection of the process: each read is consumed (compared)
        # in buffer_updated before the loop reads into it again
        self.buffer = buffer
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.waiter: asyncio.Future[Result] | None = None
        self._reset(0.0)

    def _reset(self, sent: float) -> None:
        self.sent = sent
        self.first = 0.0
        self.body_first = 0.0
        self.head = bytearray()
        self.in_head = True
        self.length = 0
        self.offset = 0
        self.status = 0
        self.exact = True
        self.cache_status = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("closed by the edge")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def request(self, path: str) -> asyncio.Future[Result]:
        """Write one GET now; the future is its result once the whole body is in."""
        assert self.transport is not None and (self.waiter is None or self.waiter.done())
        if self.lost is not None:
            raise self.lost
        self.waiter = asyncio.get_running_loop().create_future()
        self._reset(time.monotonic())
        self.transport.write(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path.encode())
        return self.waiter

    def buffer_updated(self, nbytes: int) -> None:
        now = time.monotonic()
        data = self.buffer[:nbytes]
        if self.waiter is None or self.waiter.done():
            self._fail(ValueError(f"{nbytes} bytes nobody asked for"))
            return
        if not self.first:
            self.first = now
        if self.in_head:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEAD:
                    self._fail(ValueError("response head too large"))
                return
            if not self._parse_head(bytes(self.head[:end])):
                return
            data = memoryview(bytes(self.head[end + 4:]))
            self.in_head = False
            if not data and self.length:
                return
        if data:
            if not self.body_first:
                self.body_first = now
            if self.exact and (self.offset + len(data) > len(self.expected)
                               or not self.expected.startswith(data, self.offset)):
                self.exact = False
            self.offset += len(data)
        if self.offset > self.length:
            self._fail(ValueError("more body than Content-Length"))
        elif self.offset == self.length:
            self.waiter.set_result(Result(
                self.sent, self.first, self.body_first or now, now, self.status,
                self.exact and self.status == 200 and self.length == len(self.expected),
                self.cache_status))

    def _parse_head(self, head: bytes) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        try:
            self.status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            self._fail(ValueError(f"bad status line {lines[0]!r}"))
            return False
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "cache-status":
                self.cache_status = value.strip()
        if length is None:  # every answer here has a length (chunked would be a regression)
            self._fail(ValueError(f"no Content-Length in {head[:200]!r}"))
            return False
        self.length = length
        return True

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


# -- client processes ------------------------------------------------------------------------


class Worker:
    """The client side of one process: its connections and the commands it answers."""

    def __init__(self, host: str, port: int, expected: bytes) -> None:
        self.host, self.port = host, port
        self.expected = expected
        self.buffer = memoryview(bytearray(READ_BUFFER))
        self.clients: list[Client] = []

    async def open(self, n: int, warm_path: str) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):  # one at a time: no SYN-backlog storm to tell apart from the edge
            _transport, client = await asyncio.wait_for(loop.create_connection(
                lambda: Client(self.expected, self.buffer), self.host, self.port), 30)
            self.clients.append(client)
        # the warm-up answer is not the expected body: only its delivery matters
        await asyncio.wait_for(asyncio.gather(*(c.request(warm_path) for c in self.clients)),
                               REQUEST_TIMEOUT)

    async def lone(self, paths: list[str]) -> list[Result]:
        results = []
        for path in paths:
            # alone means alone: the previous sample's fill (joining and storing the body
            # after its last byte went out) must not be running still
            await asyncio.sleep(LONE_GAP)
            results.append(await asyncio.wait_for(self.clients[0].request(path),
                                                  REQUEST_TIMEOUT))
        return results

    async def burst(self, path: str, start: float) -> tuple[list[Result], float]:
        """Every connection asks for ``path`` at ``start`` (a monotonic time shared by the
        processes); the results and this process's CPU seconds for the burst."""
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpu = time.process_time()
        waiters = []
        for i in range(0, len(self.clients), SEND_BATCH):
            waiters += [c.request(path) for c in self.clients[i:i + SEND_BATCH]]
            # each write also runs the edge socket's loopback receive (≈ 20 µs): answers that
            # came meanwhile are read (timestamped) now, not after all 500 writes
            await asyncio.sleep(0)
        results = await asyncio.wait_for(asyncio.gather(*waiters), REQUEST_TIMEOUT)
        return results, time.process_time() - cpu

    def close(self) -> None:
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()
        self.clients = []


def worker_main(conn: multiprocessing.connection.Connection, host: str, port: int,
                expected: bytes) -> None:
    """A client process: answers commands from the main process until ``exit``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def serve() -> None:
        worker = Worker(host, port, expected)
        loop = asyncio.get_running_loop()
        while True:
            command, *args = await loop.run_in_executor(None, conn.recv)
            try:
                if command == "exit":
                    return
                reply: Any = None
                if command == "open":
                    await worker.open(*args)
                elif command == "lone":
                    reply = await worker.lone(*args)
                elif command == "burst":
                    reply = await worker.burst(*args)
                elif command == "close":
                    worker.close()
                else:
                    raise ValueError(command)
            except Exception as exc:  # the main process reports it and stops
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
            else:
                conn.send(("ok", reply))

    asyncio.run(serve())


class Crowd:
    """The client processes, driven in lock step."""

    def __init__(self, edge_url: str, procs: int, expected: bytes) -> None:
        host, port = edge_url.removeprefix("http://").rsplit(":", 1)
        context = multiprocessing.get_context("fork")  # the expected body is inherited
        self.conns: list[multiprocessing.connection.Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for _ in range(procs):
            mine, theirs = context.Pipe()
            proc = context.Process(target=worker_main, args=(theirs, host, int(port), expected),
                                   daemon=True)
            proc.start()
            self.conns.append(mine)
            self.procs.append(proc)

    def ask(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send one command per process (``[]``-free: same length as the processes)."""
        for conn, command in zip(self.conns, commands, strict=True):
            conn.send(command)
        replies = []
        for conn in self.conns:
            if not conn.poll(REPLY_TIMEOUT):
                raise TimeoutError("a client process did not answer")
            status, reply = conn.recv()
            if status != "ok":
                raise RuntimeError(f"client process: {reply}")
            replies.append(reply)
        return replies

    def stop(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("exit",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()  # one of ours, by its handle (its PID)
                proc.join(5)


# -- one round -------------------------------------------------------------------------------


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def burst(crowd: Crowd, path: str) -> tuple[list[Result], float, float]:
    """All connections of all processes ask for ``path`` at once: results, wall seconds from
    the first request written to the last byte received, client CPU seconds."""
    start = time.monotonic() + START_DELAY
    replies = crowd.ask([("burst", path, start)] * len(crowd.conns))
    results = [r for rs, _cpu in replies for r in rs]
    wall = max(r.done for r in results) - min(r.sent for r in results)
    return results, wall, sum(cpu for _rs, cpu in replies)


class Profiler:
    """py-spy sampling the edge while it serves the crowds (``--profile``)."""

    def __init__(self, py_spy: str, pid: int, work: Path, rate: int = 250) -> None:
        self.argv = [py_spy, "record", "--format", "raw", "-r", str(rate), "-p", str(pid)]
        self.work = work
        self.outputs: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.work / f"edge-{len(self.outputs)}.raw"
        self.outputs.append(out)
        self.proc = subprocess.Popen([*self.argv, "-o", str(out)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached before the burst

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # ours, by its handle
                self.proc.wait(5)
            self.proc = None

    def report(self) -> None:
        merged = self.work / "edge.raw"
        with open(merged, "w") as out:
            for raw in self.outputs:
                if raw.exists():
                    out.write(raw.read_text())
        print("\nedge under py-spy during the crowds:")
        analyse(merged, 25)


def crowd_round(crowd: Crowd, edge: str, origin: str, size: int, clients: int, tag: str,
                edge_cpu: Any, via: str, profiler: Profiler | None, dump: Path | None = None
                ) -> dict[str, float]:
    n = len(crowd.conns)
    shares = [clients // n + (i < clients % n) for i in range(n)]
    warm = f"/{WARM_SIZE}/warm" if via == "hit-path" else "/_health"
    if via == "hit-path":
        get(edge + warm)  # stored now: the connections' first requests are hits
    crowd.ask([("open", k, warm) for k in shares])
    try:
        # the edge's queue alone: the same number of requests, each a hit on a tiny object
        floor, _floor_s, _cpu = burst(crowd, f"/{WARM_SIZE}/warm")
        lones = crowd.ask([("lone", [f"/{size}/lone-{tag}-{i}" for i in range(LONE_SAMPLES)])]
                          + [("lone", [])] * (n - 1))[0]
        path = f"/{size}/crowd-{tag}"
        if profiler:
            profiler.start()
        cpu0 = edge_cpu()
        try:
            crowd_results, crowd_s, client_crowd = burst(crowd, path)
        finally:
            if profiler:
                profiler.stop()
        cpu1 = edge_cpu()
        hit_results, hits_s, client_hits = burst(crowd, path)
        cpu2 = edge_cpu()
    finally:
        crowd.ask([("close",)] * n)
    counts = json.loads(get(origin + "/_count"))
    if dump is not None:  # every request's timings, for a closer look
        with open(dump, "a") as out:
            for kind, results in (("crowd", crowd_results), ("hits", hit_results),
                                  ("floor", floor), ("lone", lones)):
                out.write(json.dumps({"round": tag, "kind": kind, "results": [
                    [r.sent, r.first, r.body_first, r.done] for r in results]}) + "\n")

    def ttfbs(results: list[Result], at: str = "first") -> list[float]:
        return [(getattr(r, at) - r.sent) * 1e3 for r in results]

    crowd_ttfb, hit_ttfb, floor_ttfb = ttfbs(crowd_results), ttfbs(hit_results), ttfbs(floor)
    crowd_body = ttfbs(crowd_results, "body_first")
    return {
        "origin_gets": counts.get(path, 0),
        "exact": sum(r.exact for r in crowd_results),
        "hits_exact": sum(r.exact for r in hit_results),
        "hit_answers": sum("hit" in r.cache_status for r in hit_results),
        "lones_exact": sum(r.exact for r in lones),
        "lone_ttfb_ms": statistics.median(ttfbs(lones)),
        "lone_body_ms": statistics.median(ttfbs(lones, "body_first")),
        "lone_total_ms": statistics.median(ttfbs(lones, "done")),
        "ttfb_p50_ms": statistics.median(crowd_ttfb), "ttfb_p99_ms": pct(crowd_ttfb, 0.99),
        "ttfb_max_ms": max(crowd_ttfb),
        "body_p50_ms": statistics.median(crowd_body), "body_p99_ms": pct(crowd_body, 0.99),
        "hit_ttfb_p50_ms": statistics.median(hit_ttfb), "hit_ttfb_p99_ms": pct(hit_ttfb, 0.99),
        "floor_p50_ms": statistics.median(floor_ttfb), "floor_p99_ms": pct(floor_ttfb, 0.99),
        "crowd_s": crowd_s, "hits_s": hits_s,
        "edge_cpu_crowd_s": cpu1 - cpu0, "edge_cpu_hits_s": cpu2 - cpu1,
        "client_cpu_crowd_s": client_crowd, "client_cpu_hits_s": client_hits,
    }


def describe(got: dict[str, float], clients: int) -> str:
    lone = got["lone_ttfb_ms"]
    return (
        f"origin GETs {got['origin_gets']:g}, exact bytes {got['exact']:g}/{clients} (as hits "
        f"{got['hits_exact']:g}, hit answers {got['hit_answers']:g}, lone "
        f"{got['lones_exact']:g}/{LONE_SAMPLES})\n"
        f"  TTFB lone {lone:.2f} ms (first body byte {got['lone_body_ms']:.2f}, done "
        f"{got['lone_total_ms']:.1f}); crowd p50 {got['ttfb_p50_ms']:.1f} p99 "
        f"{got['ttfb_p99_ms']:.1f} max {got['ttfb_max_ms']:.1f} ms = "
        f"{got['ttfb_p50_ms'] / lone:.1f}x / {got['ttfb_p99_ms'] / lone:.1f}x lone "
        f"(first body byte p50 {got['body_p50_ms']:.1f} p99 {got['body_p99_ms']:.1f} ms); "
        f"same requests as hits p50 {got['hit_ttfb_p50_ms']:.1f} p99 "
        f"{got['hit_ttfb_p99_ms']:.1f} ms; queue floor ({clients} hits on {WARM_SIZE} B) p50 "
        f"{got['floor_p50_ms']:.1f} p99 {got['floor_p99_ms']:.1f} ms\n"
        f"  crowd done in {got['crowd_s']:.2f} s vs as hits {got['hits_s']:.2f} s "
        f"({got['crowd_s'] / got['hits_s']:.2f}x); CPU s edge/client: crowd "
        f"{got['edge_cpu_crowd_s']:.1f}/{got['client_cpu_crowd_s']:.1f}, hits "
        f"{got['edge_cpu_hits_s']:.1f}/{got['client_cpu_hits_s']:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--size", default="10m")
    parser.add_argument("--origin-rate", type=float, default=200e6,
                        help="bytes/s the origin sends one body at (0 = no cap)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds, each a new cold URL")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="client processes the connections are spread over")
    parser.add_argument("--via", choices=("hit-path", "app"), default="hit-path",
                        help="which edge path the connections are on (see the docstring)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the edge with py-spy during the crowds")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--dump", type=Path, help="append every request's timings (JSON lines)")
    args = parser.parse_args()
    size = parse_size(args.size)
    expected = body(size)
    work = Path(tempfile.mkdtemp(prefix="bench-crowd-"))
    origin = start_origin("aiohttp", work, [size, WARM_SIZE], rate=args.origin_rate)
    edge = None
    crowd = None
    profiler = None
    rounds = []
    try:
        edge = start_edge(origin.url, work)
        crowd = Crowd(edge.url, args.client_procs, expected)
        if args.profile:
            profiler = Profiler(args.py_spy, edge.proc.pid, work)
        print(f"# {args.clients} clients in {args.client_procs} processes, {size} bytes, "
              f"origin at {args.origin_rate / 1e6:g} MB/s per body; edge one process, "
              f"connections on its {args.via}; work dir {work}", flush=True)
        for r in range(args.repeat):
            got = crowd_round(crowd, edge.url, origin.url, size, args.clients,
                              f"{time.time_ns()}", edge.proc.cpu_seconds, args.via, profiler,
                              args.dump)
            rounds.append(got)
            print(f"round {r + 1}: {describe(got, args.clients)}", flush=True)
            edge.proc.check_alive()
        if profiler:
            profiler.report()
    finally:
        if crowd:
            crowd.stop()
        if edge:
            edge.stop()
        origin.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    lone = med["lone_ttfb_ms"]
    print(f"\nmedian of {len(rounds)}: origin GETs {med['origin_gets']:g} (goal 1); exact "
          f"{med['exact']:g}/{args.clients}; waiter TTFB p50 {med['ttfb_p50_ms']:.1f} ms = "
          f"{med['ttfb_p50_ms'] / lone:.1f}x lone ({lone:.2f} ms), p99 "
          f"{med['ttfb_p99_ms']:.1f} ms = {med['ttfb_p99_ms'] / lone:.1f}x (goal <= 1.5x); "
          f"as hits p50 {med['hit_ttfb_p50_ms']:.1f} p99 {med['hit_ttfb_p99_ms']:.1f} ms; "
          f"queue floor p50 {med['floor_p50_ms']:.1f} p99 {med['floor_p99_ms']:.1f} ms; "
          f"crowd {med['crowd_s']:.2f} s vs hits {med['hits_s']:.2f} s = "
          f"{med['crowd_s'] / med['hits_s']:.2f}x (goal <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
