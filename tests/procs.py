"""Start real role processes for tests and stop exactly those, by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = self.log_path.read_text()[-3000:] if self.log_path else ""
                raise RuntimeError(f"{self.role} exited with {self.proc.returncode}\n{log}")
            try:
                with urllib.request.urlopen(self.url + "/_health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.role} on {self.url} not healthy after {timeout}s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
