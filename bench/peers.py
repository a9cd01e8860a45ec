"""The servers compared: our edge, nginx proxy_cache and Varnish, each in front of the same
origin, each a child process we own (started non-daemon, stopped by PID).

nginx runs in what the issue calls its best configuration: ``tcp_nopush off`` (Debian's
default ``on`` stalls 100 KiB responses on loopback), ``sendfile`` off for small bodies and on
for large ones, ``proxy_cache_lock on`` (collapsing), HTTP/1.1 keep-alive to the origin, cache
files on tmpfs (``/dev/shm``) so it caches in memory as the other two do, access log off.
Its cache manager may delete up to 100,000 files a round (the default, 100 every 250 ms, is
400 a second: at 12k new 100 KiB objects a second, the cache outgrew ``max_size`` by gigabytes
a run and, on tmpfs, filled the machine's memory until the kernel killed processes). With two
busy cores the manager still lags, so ``MemoryGuard`` stops a server whose tmpfs is three
quarters full, and the run goes on without it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Proc, cdn_role, which_or_install
from cdn.processes import free_port

CACHE_BYTES = 256 * 1024 * 1024

NGINX_CONF = """\
user root;
worker_processes {workers};
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile {sendfile};
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 65;
    client_body_temp_path {dir}/client_temp;
    proxy_temp_path {cache}/proxy_temp;
    fastcgi_temp_path {dir}/fastcgi_temp;
    uwsgi_temp_path {dir}/uwsgi_temp;
    scgi_temp_path {dir}/scgi_temp;
    proxy_cache_path {cache}/c levels=1:2 keys_zone=bench:64m max_size={max_size}
                     inactive=60m use_temp_path=off
                     manager_files=100000 manager_sleep=10ms manager_threshold=1000ms;
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 30s;
            proxy_buffers 32 64k;
            proxy_buffer_size 64k;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
}}
"""


@dataclass
class Server:
    """A started server: its URL, its process (CPU is read from its process tree) and how to
    tell, from a response's headers, that it was a cache hit."""

    name: str
    url: str
    proc: Proc
    hit_header: str
    hit_marker: str
    cache_dir: Path | None = None  # on tmpfs: memory, which the server must not fill
    failure: str = ""  # set by ``MemoryGuard`` when it stopped the server

    def check(self) -> None:
        """Raise if the server was stopped for filling its tmpfs."""
        if self.failure:
            raise RuntimeError(self.failure)

    def is_hit(self, path: str) -> bool:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            resp.read()
            value = resp.headers.get(self.hit_header, "")
        if self.hit_header == "X-Varnish":  # "xid" on a miss, "xid hit-xid" on a hit
            return len(value.split()) == 2
        return self.hit_marker in value.lower()

    def stop(self) -> None:
        self.proc.stop()


class MemoryGuard(threading.Thread):
    """Polls the tmpfs of servers' cache files; stops (by PID) a server that leaves less than
    a quarter of it free, before the machine runs out of memory. Daemon: ends with the run."""

    def __init__(self, servers: list[Server], every: float = 0.2) -> None:
        super().__init__(daemon=True, name="memory-guard")
        self.servers = servers
        self.every = every

    def run(self) -> None:
        while True:
            for server in list(self.servers):
                if server.cache_dir is None or server.failure:
                    continue
                try:
                    usage = shutil.disk_usage(server.cache_dir)
                except OSError:  # removed: the server was stopped
                    continue
                if usage.free < usage.total / 4:
                    server.failure = (
                        f"{server.name}: its cache files left {usage.free >> 20} MiB free of "
                        f"{usage.total >> 20} MiB on their tmpfs (max_size {CACHE_BYTES >> 20} "
                        "MiB): stopped before it filled the machine's memory")
                    server.stop()
            time.sleep(self.every)


def start_edge(origin_url: str, work: Path, *, workers: int = 1) -> Server:
    port = free_port()
    proc = cdn_role("edge", "edge", [
        "--host", "127.0.0.1", "--port", str(port), "--upstream", origin_url,
        "--region", "bench", "--cache-max-bytes", str(CACHE_BYTES), "--log-level", "WARNING",
        "--workers", str(workers),
    ], work).start()
    url = f"http://127.0.0.1:{port}"
    proc.ready(url + "/_health")
    return Server("edge", url, proc, "Cache-Status", "hit")


def start_nginx(origin_port: int, work: Path, *, sendfile: bool, workers: int = 2) -> Server | None:
    binary = which_or_install("nginx", "nginx")
    if binary is None:
        print("# nginx unavailable: skipped", flush=True)
        return None
    name = f"nginx-sendfile-{'on' if sendfile else 'off'}"
    conf_dir = work / name
    conf_dir.mkdir(exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix="bench-nginx-cache-",
                                  dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    port = free_port()
    (conf_dir / "nginx.conf").write_text(NGINX_CONF.format(
        workers=workers, dir=conf_dir, cache=cache, origin=origin_port, port=port,
        sendfile="on" if sendfile else "off", max_size=f"{CACHE_BYTES // (1024 * 1024)}m"))
    proc = Proc(name, [binary, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf")],
                work / f"{name}.log").start()
    url = f"http://127.0.0.1:{port}"
    proc.ready(url + "/1/warm")
    server = Server(name, url, proc, "X-Cache-Status", "hit", cache_dir=cache)
    original_stop = server.stop

    def stop() -> None:
        original_stop()
        shutil.rmtree(cache, ignore_errors=True)

    server.stop = stop  # type: ignore[method-assign]
    return server


def start_varnish(origin_port: int, work: Path) -> Server | None:
    binary = which_or_install("varnishd", "varnish")
    if binary is None:
        print("# varnish unavailable: skipped", flush=True)
        return None
    port = free_port()
    state = work / "varnish"
    state.mkdir(exist_ok=True)
    argv = [binary, "-F", "-a", f"127.0.0.1:{port}", "-b", f"127.0.0.1:{origin_port}",
            "-s", f"malloc,{CACHE_BYTES // (1024 * 1024)}m", "-n", str(state), "-T", "none",
            # many small objects cached by the miss runs must be evictable to make room for
            # one large one; the default (50) answers 503 "Could not get storage" instead
            "-p", "nuke_limit=100000"]
    if os.geteuid() == 0:
        argv += ["-j", "none"]
    proc = Proc("varnish", argv, work / "varnish.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.ready(url + "/1/warm", timeout=30)
    except RuntimeError as exc:
        print(f"# varnish did not start: skipped ({str(exc)[-300:]})", file=sys.stderr)
        proc.stop()
        return None
    return Server("varnish", url, proc, "X-Varnish", "")
