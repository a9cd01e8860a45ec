"""Instructions per miss (and per hit) in the edge, counted by valgrind's callgrind.

    python bench/miss_instructions.py [--size 1k] [--seconds 10] [--mode misses|hits]

On a shared 2-core machine, CPU time per request swings by 2x with whatever else runs
(caches and cores are shared); the number of instructions the edge executes per request
does not, so a change to the request path can be judged by it (±3% between runs here).
It counts user-space instructions only: the system calls are the same before and after a
change to Python code (``strace -c`` tells those).

The script re-runs itself under ``valgrind --tool=callgrind`` with instrumentation off; the
child starts the bench origin (nginx when installed) and an edge in its own process
(``inprocess.edge_in_process``), warms it with wrk for ``--seconds``, switches counting on
(``callgrind_control -i on``), runs wrk again for ``--seconds`` (8 connections, every request
a new URL for misses, 16 URLs for hits), switches counting off and prints the requests wrk
completed; the parent divides callgrind's total by them. Under valgrind the edge runs ~50x
slower, so a run completes a few hundred requests. valgrind is not a project dependency:
``apt-get install valgrind``.
``--keep FILE`` keeps callgrind's output (``callgrind_annotate FILE`` lists the C functions:
the interpreter, the allocator, ``memcpy``, the parser, uvloop).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge_vs_peers import parse_size  # noqa: E402
from bench.inprocess import edge_in_process, with_origin  # noqa: E402
from bench.loadgen import LUA, parse  # noqa: E402

CONNECTIONS = 8
HIT_URLS = 16


async def wrk(url: str, mode: str, size: int, tag: str, seconds: float) -> str:
    script, extra = ("misses.lua", tag) if mode == "misses" else ("hits.lua", str(HIT_URLS))
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "--timeout", "30s",
        "-s", str(LUA / script), url, "--", str(size), extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), seconds + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {err.decode()}")
    return out.decode()


async def instrumentation(on: bool) -> None:
    await asyncio.to_thread(subprocess.run, ["callgrind_control", "-i", "on" if on else "off",
                                             str(os.getpid())], capture_output=True, check=True)


async def child(args: argparse.Namespace, origin_url: str) -> None:
    size = parse_size(args.size)
    async with edge_in_process(origin_url) as edge:
        await wrk(edge.url, args.mode, size, f"warm{time.time_ns()}", args.seconds)
        await instrumentation(True)
        out = await wrk(edge.url, args.mode, size, f"m{time.time_ns()}", args.seconds)
        await instrumentation(False)
    result = parse(out)
    print(f"REQUESTS {result.requests} ERRORS {result.errors}", flush=True)


def parent(args: argparse.Namespace) -> int:
    missing = [tool for tool in ("valgrind", "callgrind_control", "wrk")
               if shutil.which(tool) is None]
    if missing:
        print(f"# {', '.join(missing)} not installed (apt-get install valgrind wrk): skipped")
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    try:
        out = work / "callgrind.out"
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}", sys.executable, __file__, "--child",
             "--size", args.size, "--seconds", str(args.seconds), "--mode", args.mode],
            capture_output=True, text=True, timeout=args.seconds * 2 + 600)
        found = re.search(r"REQUESTS (\d+) ERRORS (\d+)", run.stdout)
        if run.returncode != 0 or found is None:
            print(run.stdout[-2000:], run.stderr[-2000:], sep="\n")
            return 1
        requests, errors = int(found.group(1)), int(found.group(2))
        total = 0
        for dump in work.glob("callgrind.out*"):
            # "summary:" near the top may be written before counting started; "totals:" at
            # the end is what was counted
            counted = [int(line.split()[1]) for line in dump.read_text().splitlines()
                       if line.startswith(("totals:", "summary:"))]
            total += max(counted, default=0)
            if args.keep:
                shutil.copy(dump, f"{args.keep}{dump.name.removeprefix('callgrind.out')}")
        kind = "miss" if args.mode == "misses" else "hit"
        print(f"{args.mode} {parse_size(args.size)} B: {total / max(requests, 1):,.0f} "
              f"instructions per {kind} in the edge ({requests} requests counted, "
              f"{errors} errors)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1k")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mode", choices=("misses", "hits"), default="misses")
    parser.add_argument("--keep", metavar="FILE",
                        help="also keep callgrind's output here (for callgrind_annotate)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.child:
        return parent(args)
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    return with_origin("nginx", parse_size(args.size), "bench-instructions-",
                       lambda origin_url: child(args, origin_url))


if __name__ == "__main__":
    sys.exit(main())
