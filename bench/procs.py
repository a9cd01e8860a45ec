"""Processes a benchmark starts and owns: spawn, wait until ready, stop by PID, and read the
CPU time they (and their descendants) used from ``/proc``.

Children run the code of the checkout this file lives in (``PYTHONPATH`` = its root), so a
benchmark measures exactly that tree, e.g. a ``git archive`` snapshot of one commit.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}
    env.update(extra or {})
    return env


def _raise_fd_limit() -> None:
    """Between fork and exec: room for thousands of sockets (the flash crowd)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))


@dataclass
class Proc:
    """One child process we started (in its own session), stopped by its PID only."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=child_env)
    proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, cwd=ROOT,
                                         start_new_session=True, preexec_fn=_raise_fd_limit)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2500:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status < 500:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
                time.sleep(0.05)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name}: {url} not answering after {timeout:.0f}s "
                           f"(log {self.log_path})")

    def ready(self, url: str, timeout: float = 30.0) -> None:
        """``wait_http``, stopping the process if it does not become ready."""
        try:
            self.wait_http(url, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def cpu_seconds(self) -> float:
        """utime+stime of this process and every live descendant (nginx workers, varnish's
        cache child). Descendants that exited and were reaped count via cstime of the parent."""
        return tree_cpu_seconds(self.pid)


def cdn_role(name: str, role: str, args: list[str], log_dir: Path) -> Proc:
    """``python -m cdn.cli ROLE ...`` from this checkout."""
    return Proc(name, [sys.executable, "-m", "cdn.cli", role, *args], log_dir / f"{name}.log")


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime+cutime+cstime seconds) of ``pid``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    ppid = int(fields[1])
    ticks = sum(int(x) for x in fields[11:15])
    return ppid, ticks / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        got = _stat(int(entry))
        if got is None:
            continue
        children.setdefault(got[0], []).append(int(entry))
        cpu[int(entry)] = got[1]
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, ()))
    return total


def which_or_install(binary: str, package: str) -> str | None:
    """Path of ``binary``; installs the Debian ``package`` with apt when absent (as root)."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"# {binary} absent and cannot be installed (need root and apt-get)", flush=True)
        return None
    print(f"# installing {package} with apt-get …", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                                check=False)
        if result.returncode != 0 and cmd[1] == "install":
            print(f"# apt-get install {package} failed: {result.stderr.strip()[-500:]}",
                  flush=True)
            return None
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin")
