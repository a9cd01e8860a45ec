"""Start real role processes for tests and stop exactly those, by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cdn.processes import ProcessNotReady, free_port, stop_process, wait_for_http


@dataclass
class RoleProcess:
    """``cdn ROLE --flag value …`` as a child process, ready once ``GET /_health`` is 200."""

    role: str
    args: list[str]
    port: int
    host: str = "127.0.0.1"
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> RoleProcess:
        env = {**os.environ, **self.env}
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdn.cli", self.role, *self.args],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        if self.log_path:
            out.close()  # type: ignore[union-attr]
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        try:
            wait_for_http(self.url + "/_health", timeout, self.proc)
        except ProcessNotReady as exc:
            log = self.log_path.read_text()[-3000:] if self.log_path else ""
            raise RuntimeError(f"{self.role}: {exc}\n{log}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def edge_with_workers(origin_url: str, log_dir: Path, *, workers: int = 2, region: str = "w",
                      extra: Sequence[str] = ()) -> tuple[RoleProcess, list[int]]:
    """``cdn edge --workers N`` in front of ``origin_url``, started, and its workers' PIDs;
    ``extra`` are more flags (purge subscription, shared tier …)."""
    port = free_port()
    edge = RoleProcess("edge", ["--region", region, "--port", str(port), "--upstream", origin_url,
                                "--workers", str(workers), *extra], port,
                       log_path=log_dir / "edge.log")
    edge.start()
    assert edge.proc is not None
    pids = child_pids(edge.proc.pid)
    assert len(pids) == workers
    return edge, pids


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` forked (Linux ``/proc``): a role's reuse_port servers."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def is_running(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tcp_inodes(port: int, *, peer_port: int | None = None) -> set[str]:
    """Socket inodes of the established TCP connections whose local port is ``port`` (and,
    given ``peer_port``, whose remote port is that): Linux ``/proc/net/tcp{,6}``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if (state == "01" and int(local.rsplit(":", 1)[1], 16) == port
                    and (peer_port is None or int(remote.rsplit(":", 1)[1], 16) == peer_port)):
                inodes.add(inode)
    return inodes


def sockets_held(pid: int, inodes: set[str]) -> int:
    """How many of the sockets ``inodes`` process ``pid`` has open (``/proc/PID/fd``)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def serving_worker(port: int, peer_port: int, pids: Sequence[int]) -> int:
    """Which of ``pids`` holds the server side of the open TCP connection from
    ``127.0.0.1:peer_port`` to ``port``: the worker that answered on it."""
    inodes = tcp_inodes(port, peer_port=peer_port)
    holders = [pid for pid in pids if sockets_held(pid, inodes)]
    assert len(holders) == 1, f"connection from port {peer_port} held by {holders} of {pids}"
    return holders[0]
