"""The one origin every compared server fronts: ``GET /{size}/{anything}`` answers ``size``
bytes (``static_origin.body(size)``) with ``Cache-Control: public, max-age=3600``.

``nginx`` (default when installed): one nginx worker serving pre-written files, so the origin
costs little CPU on a shared 2-core box. ``aiohttp``: ``bench/static_origin.py``, which also
counts GETs per path and can cap its sending rate (used by the flash crowd).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Proc, which_or_install
from bench.static_origin import body
from cdn.processes import free_port

NGINX_ORIGIN_CONF = """\
user root;
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush off;
    keepalive_requests 10000000;
    client_body_temp_path {dir}/client_temp;
    proxy_temp_path {dir}/proxy_temp;
    fastcgi_temp_path {dir}/fastcgi_temp;
    uwsgi_temp_path {dir}/uwsgi_temp;
    scgi_temp_path {dir}/scgi_temp;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location ~ ^/(\\d+)/ {{
            alias {files}/$1;
            add_header Cache-Control "public, max-age=3600";
        }}
        location = /_health {{ return 200 "ok\\n"; }}
    }}
}}
"""


@dataclass
class Origin:
    kind: str
    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.stop()


def start_origin(kind: str, work: Path, sizes: list[int], *, rate: float = 0.0) -> Origin:
    port = free_port()
    if kind == "nginx":
        binary = which_or_install("nginx", "nginx")
        if binary is None:
            print("# nginx unavailable for the origin: using the aiohttp origin", flush=True)
            kind = "aiohttp"
    if kind == "nginx":
        files = work / "origin-files"
        files.mkdir(exist_ok=True)
        for size in sizes:
            (files / str(size)).write_bytes(body(size))
        conf_dir = work / "origin-nginx"
        conf_dir.mkdir(exist_ok=True)
        (conf_dir / "nginx.conf").write_text(
            NGINX_ORIGIN_CONF.format(dir=conf_dir, port=port, files=files))
        proc = Proc("origin-nginx", [binary, "-p", str(conf_dir), "-c",  # type: ignore[list-item]
                                     str(conf_dir / "nginx.conf")], work / "origin.log")
    else:
        proc = Proc("origin-aiohttp", [sys.executable, str(Path(__file__).with_name(
            "static_origin.py")), "--port", str(port), "--rate", str(rate)], work / "origin.log")
    origin = Origin(kind, port, proc.start())
    proc.ready(origin.url + "/_health")
    return origin
