"""Handing out listening ports: outside the kernel's ephemeral range (``cdn.port_ranges``),
distinct within a process, and reserved against other processes of the same user.

Three checks, because a bind test alone is not enough. It proves the port is free *now*, but
the caller binds it later (often in a child process), and a server that is stopped and
restarted leaves its port free in between; so:

- within a process, ports are taken in sequence from a random start (a counter, never a
  fresh random pick), so a port is not handed out twice until the pool (~27,000 ports with
  Linux's defaults) has gone round;
- across processes, each handed-out port is reserved by a POSIX record lock on byte ``port``
  of one lock file per user (``fcntl.lockf``, non-blocking). The kernel releases a process's
  locks when it exits, so nothing goes stale; another process that wants the port sees the
  lock and moves on. The lock lasts as long as the allocating process, which covers the
  stop/restart windows of the servers it started;
- the bind test, last, for anything else on the machine that holds the port. It binds without
  ``SO_REUSEADDR``, so a port with connections in TIME_WAIT is skipped too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

from cdn.port_ranges import listening_port_pool, nth_port, parse_port_range, pool_size

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Not the shared ``random`` state: a test that seeds it must not give two processes one start.
_RANDOM = random.SystemRandom()


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int] | None:
    """The kernel's ephemeral port range, or ``None`` when it cannot be read or parsed."""
    try:
        return parse_port_range(path.read_text())
    except OSError:
        return None


def default_lock_path() -> Path:
    return Path(tempfile.gettempdir()) / f"cdn-ports-{os.getuid()}.lock"


def port_is_bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Ports from ``pool`` in sequence from ``start`` (random if ``None``); see the module
    docstring for the checks. ``lock_path=None``: no cross-process reservation."""

    def __init__(self, pool: list[range], *, start: int | None = None,
                 lock_path: Path | None = None) -> None:
        if not pool_size(pool):
            raise ValueError("empty port pool")
        self.pool = pool
        self._next = _RANDOM.randrange(pool_size(pool)) if start is None else start
        self._lock = threading.Lock()
        self._lock_path = lock_path
        self._lock_fd: int | None = None

    def allocate(self, host: str = "127.0.0.1") -> int:
        with self._lock:
            for _ in range(pool_size(self.pool)):
                port = nth_port(self.pool, self._next)
                self._next += 1
                if self._reserve(port) and port_is_bindable(host, port):
                    return port
        raise OSError(errno.EADDRINUSE, f"no free port in {self.pool} on {host}")

    def _reserve(self, port: int) -> bool:
        """Lock byte ``port`` of the lock file for this process's lifetime; False if another
        process holds it. No lock file (unusable, or none asked for): every port passes."""
        if self._lock_path is None:
            return True
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._lock_path = None
                return True
        try:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port, os.SEEK_SET)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        return True

    def after_fork_in_child(self) -> None:
        """A forked child holds none of the parent's locks and must not walk the parent's
        sequence: new lock, new random start (the lock fd is shared, harmlessly: POSIX
        locks belong to processes, and the child never closes it)."""
        self._lock = threading.Lock()
        self._next = _RANDOM.randrange(pool_size(self.pool))


_default: PortAllocator | None = None
_default_lock = threading.Lock()


def default_allocator() -> PortAllocator:
    global _default
    with _default_lock:
        if _default is None:
            _default = PortAllocator(listening_port_pool(ephemeral_range()),
                                     lock_path=default_lock_path())
        return _default


def _reset_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    if _default is not None:
        _default.after_fork_in_child()


with contextlib.suppress(AttributeError):  # os.register_at_fork is POSIX-only
    os.register_at_fork(after_in_child=_reset_in_child)
