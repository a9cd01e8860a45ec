"""Child processes we start and own: free ports, waiting until they answer, the parent-death
signal, and stopping them by PID. Used by ``cdn up``, the embedded servers, the tests and the
benchmarks, so every one of them stops exactly what it started, the same way."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from cdn.ports import default_allocator


class ProcessNotReady(RuntimeError):
    """A child exited, or did not answer, before its deadline; the message says which."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now, for a server to listen on (the caller binds it soon
    after). Taken outside the kernel's ephemeral range, so a server stopped and restarted on
    it cannot find it taken by some client's outgoing connection, and never handed out twice
    by this process or, while this process lives, by another of this user (``cdn.ports``)."""
    return default_allocator().allocate(host)


def _check_alive(proc: subprocess.Popen | None, what: str) -> None:
    if proc is not None and proc.poll() is not None:
        raise ProcessNotReady(f"{what}: process {proc.pid} exited with {proc.returncode}")


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen | None = None
) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_alive(proc, f"{host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ProcessNotReady(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def wait_for_http(
    url: str, timeout: float, proc: subprocess.Popen | None = None,
    *, ready: Callable[[int], bool] = lambda status: status == 200,
) -> None:
    """Block until ``GET url`` answers a status ``ready`` accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_alive(proc, url)
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if ready(resp.status):
                    return
        except urllib.error.HTTPError as exc:
            if ready(exc.code):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise ProcessNotReady(f"{url} not ready after {timeout:.0f}s")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM,
                 timeout: float = 10.0) -> None:
    """Send ``sig``, wait up to ``timeout`` s, then SIGKILL: ours only, by its PID."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def set_parent_death_signal() -> None:
    """Ask Linux to SIGTERM this (child) process when its parent dies, so killing a
    supervisor with SIGKILL leaves nothing running. Called between fork and exec.

    Linux ties the signal to the *thread* that forked the child: start servers from the main
    thread (or one that lives as long as they should), never from a short-lived worker."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def child_preexec() -> Callable[[], None] | None:
    return set_parent_death_signal if sys.platform == "linux" else None
