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
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cdn.processes import ProcessNotReady, stop_process, wait_for_http

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


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
        """Until ``url`` answers anything below 500 (any origin path will do)."""
        try:
            wait_for_http(url, timeout, self.proc, ready=lambda status: status < 500)
        except ProcessNotReady as exc:
            tail = self.log_path.read_text(errors="replace")[-2500:]
            raise RuntimeError(f"{self.name}: {exc} (log {self.log_path}):\n{tail}") from None

    def ready(self, url: str, timeout: float = 30.0) -> None:
        """``wait_http``, stopping the process if it does not become ready."""
        try:
            self.wait_http(url, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig, timeout)

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
