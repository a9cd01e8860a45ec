"""Drive a server with wrk and read its summary (req/s, p50, p99, errors)."""

from __future__ import annotations

import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors + non-2xx/3xx
    seconds: float
    # from ``lua/paced.lua``'s summary line only: p99.9, and the sends that left more than
    # 1 ms behind their schedule (how many, the worst lag)
    p999_ms: float = float("nan")
    late: int = 0
    late_max_ms: float = 0.0


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def parse(out: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    assert total is not None, out
    seconds = _ms(total.group(2) + total.group(3)) / 1e3
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        errors += int(bad.group(1))
    paced = re.search(r"PACED p999_us=(\d+) late_max_ms=([\d.]+) late_n=(\d+)", out)
    if paced:
        return WrkResult(rps, p50, p99, int(total.group(1)), errors, seconds,
                         int(paced.group(1)) / 1e3, int(paced.group(3)), float(paced.group(2)))
    return WrkResult(rps, p50, p99, int(total.group(1)), errors, seconds)


def run_wrk(url: str, script: str, args: list[str], *, seconds: float, connections: int = 64,
            threads: int = 2) -> WrkResult:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
           "--timeout", "10s", "-s", str(LUA / script), url, "--", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse(done.stdout)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> float:
    """(max - min) / median, the run-to-run noise of one figure."""
    if len(values) < 2:
        return 0.0
    return (max(values) - min(values)) / statistics.median(values)
