"""Where our edge spends its time on a hit and on a miss: wrk load + py-spy sampling.

    python bench/profile_edge.py [--mode hits|misses] [--size 1k] [--seconds 15]
                                 [--py-spy PATH] [--native]

Starts the static origin and one edge process, drives it with wrk (64 connections) and
records it with ``py-spy record --format raw`` meanwhile. Prints the share of samples by
package (self time), the top functions by self time and by inclusive time. ``py-spy`` is not
a project dependency: ``pip install py-spy`` anywhere and pass ``--py-spy`` if it is not on
PATH. Samples are of the edge's threads while on CPU (idle waits excluded).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.edge_vs_peers import parse_size, prewarm  # noqa: E402
from bench.loadgen import run_wrk  # noqa: E402
from bench.origins import start_origin  # noqa: E402
from bench.peers import start_edge  # noqa: E402

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def package_of(path: str, func: str) -> str:
    if not path:
        return "native:" + func.split("::")[0][:30]
    for marker in ("site-packages/", "/lib/python3", "/bench-snap-", "/work/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                return "stdlib:" + tail.split("/", 2)[1].removesuffix(".py")
            parts = tail.split("/")
            if marker == "/bench-snap-":
                parts = parts[1:]
            return parts[0].removesuffix(".py")
    if path.endswith((".so", ".pyx", ".c", ".h")) or "/" not in path:
        return "native:" + Path(path).name
    return path


def analyse(raw: Path, top: int) -> None:
    self_time: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    by_pkg: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _sep, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        names = []
        for frame in frames:
            m = FRAME.match(frame)
            func, path = (m["func"], m["file"]) if m else (frame, "")
            names.append((f"{func} ({Path(path).name})" if path else func,
                          package_of(path, func)))
        leaf, pkg = names[-1]
        self_time[leaf] += count
        by_pkg[pkg] += count
        for name in {n for n, _p in names}:
            incl[name] += count
    print(f"\n{total} samples on CPU")
    print("self time by package:")
    for pkg, n in by_pkg.most_common(top):
        print(f"  {n / total:6.1%}  {pkg}")
    print("top functions, self time:")
    for name, n in self_time.most_common(top):
        print(f"  {n / total:6.1%}  {name}")
    print("top functions, inclusive time:")
    for name, n in incl.most_common(top + 10):
        print(f"  {n / total:6.1%}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("hits", "misses"), default="hits")
    parser.add_argument("--size", default="1k")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "/tmp/bench-tools/bin/py-spy")
    parser.add_argument("--native", action="store_true", help="also sample C frames")
    parser.add_argument("--nonblocking", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", help="copy the raw py-spy output here")
    args = parser.parse_args()
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    origin = start_origin("nginx", work, [size])
    edge = start_edge(origin.url, work)
    raw = work / "edge.raw"
    try:
        if args.mode == "hits":
            prewarm(edge, size, 16)
        cmd = [args.py_spy, "record", "--format", "raw", "-r", str(args.rate),
               "-d", str(int(args.seconds)), "-p", str(edge.proc.pid), "-o", str(raw)]
        if args.native:
            cmd.append("--native")
        if args.nonblocking:
            cmd.append("--nonblocking")  # less overhead, but stacks come out torn
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        result: list = []
        load = threading.Thread(target=lambda: result.append(run_wrk(
            edge.url, f"{args.mode}.lua",
            [str(size), "16"] if args.mode == "hits" else [str(size), "prof"],
            seconds=args.seconds + 2)))
        load.start()
        _out, err = spy.communicate(timeout=args.seconds + 60)
        load.join()
        if spy.returncode != 0 or not raw.exists():
            print(f"py-spy failed: {err.decode()[-800:]}")
            return 1
        r = result[0]
        print(f"{args.mode} {size} B under py-spy: {r.rps:.0f} req/s, p50 {r.p50_ms:.2f} ms, "
              f"p99 {r.p99_ms:.2f} ms (sampling slows the edge somewhat)")
        if args.keep:
            shutil.copy(raw, args.keep)
        analyse(raw, args.top)
    finally:
        edge.stop()
        origin.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
