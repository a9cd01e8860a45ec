"""``cdn up``: the whole topology on one machine, on loopback.

Starts PostgreSQL and Redis (embedded unless ``CDN_DATABASE_URL`` / ``CDN_REDIS_URL`` are set),
9 storage nodes in 3 zones, the origin, the control plane, 2 shields and 3 regional edges; puts a
demo object in; prints and writes ``topology.json``; on SIGINT/SIGTERM stops every process it
started, in reverse order, by PID. Children also get a parent-death signal so a ``kill -9`` of
this supervisor does not leave them running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets as token_source
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cdn.embedded import EmbeddedPostgres, EmbeddedRedis
from cdn.processes import child_preexec, free_port
from cdn.roles import add_config_arguments, config_from_args
from cdn.settings import ConfigError
from cdn.topology import Plan, PortPlan, ProcessSpec, Secrets, build_plan


@dataclass(frozen=True)
class UpConfig:
    data_dir: str = ".cdn-data"
    # 0 picks free ports (tests); otherwise fixed offsets from it so restarts keep addresses.
    base_port: int = 8000
    host: str = "127.0.0.1"
    regions: tuple[str, ...] = ("us-east", "eu-west", "ap-south")
    shields: int = 2
    nodes: int = 9
    signed_buckets: tuple[str, ...] = ("private",)
    start_timeout: float = 60.0
    demo: bool = True


class UpError(RuntimeError):
    """The topology could not be brought up; the message says which part and why."""


def load_or_create_secrets(data_dir: Path) -> Secrets:
    path = data_dir / "secrets.json"
    if path.exists():
        return Secrets(**json.loads(path.read_text()))
    made = Secrets(
        admin_access_key="CDN" + token_source.token_hex(8).upper(),
        admin_secret_key=token_source.token_urlsafe(30),
        edge_secret=token_source.token_urlsafe(24),
        purge_token=token_source.token_urlsafe(24),
        signing_key_id="k1",
        signing_secret=token_source.token_urlsafe(24),
    )
    path.write_text(json.dumps(asdict(made), indent=2))
    path.chmod(0o600)
    return made


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Child:
    spec: ProcessSpec
    proc: subprocess.Popen
    log: Path


class Supervisor:
    def __init__(self, config: UpConfig) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir).resolve()
        self.children: list[Child] = []
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.stopping = False

    # -- ports -------------------------------------------------------------------------------
    def _port_fn(self) -> Callable[[str, int], int]:
        if self.config.base_port:
            plan = PortPlan(self.config.base_port)
            return lambda kind, i: {
                "edge": plan.edge, "shield": plan.shield, "node": plan.node,
                "origin": lambda _i: plan.origin(), "control": lambda _i: plan.control(),
            }[kind](i)
        chosen: dict[tuple[str, int], int] = {}

        def pick(kind: str, i: int) -> int:
            # one port per role, the same each time it is asked (free_port never repeats)
            if (kind, i) not in chosen:
                chosen[(kind, i)] = free_port(self.config.host)
            return chosen[(kind, i)]

        return pick

    # -- lifecycle ---------------------------------------------------------------------------
    def check_not_running(self) -> None:
        pid_file = self.data_dir / "up.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip() or 0)
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise UpError(f"cdn up is already running for {self.data_dir} (pid {pid})")
        pid_file.write_text(str(os.getpid()))

    def start_backing_services(self) -> tuple[str, str]:
        database_url = os.environ.get("CDN_DATABASE_URL", "")
        redis_url = os.environ.get("CDN_REDIS_URL", "")
        base = self.config.base_port
        if not database_url:
            port = PortPlan(base).postgres() if base else free_port(self.config.host)
            self.postgres = EmbeddedPostgres(self.data_dir / "postgres" / "data", port,
                                             host=self.config.host)
            database_url = self.postgres.start()
        if not redis_url:
            port = PortPlan(base).redis() if base else free_port(self.config.host)
            self.redis = EmbeddedRedis(self.data_dir / "redis", port, host=self.config.host)
            redis_url = self.redis.start()
        return database_url, redis_url

    def spawn(self, spec: ProcessSpec) -> Child:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{spec.name}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cdn.cli", spec.role, *spec.args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches only us; we stop children in order
                preexec_fn=child_preexec(),
            )
        child = Child(spec, proc, log_path)
        self.children.append(child)
        return child

    async def wait_healthy(self, children: list[Child]) -> None:
        deadline = time.monotonic() + self.config.start_timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:

            async def one(child: Child) -> None:
                while True:
                    if child.proc.poll() is not None:
                        tail = child.log.read_text(errors="replace")[-2000:]
                        raise UpError(f"{child.spec.name} exited with {child.proc.returncode};"
                                      f" last log lines ({child.log}):\n{tail}")
                    try:
                        async with session.get(child.spec.url + "/_health") as resp:
                            if resp.status == 200:
                                return
                    except (TimeoutError, aiohttp.ClientError):
                        pass
                    if time.monotonic() > deadline:
                        raise UpError(f"{child.spec.name} not healthy at {child.spec.url} "
                                      f"after {self.config.start_timeout:.0f}s (log: {child.log})")
                    await asyncio.sleep(0.1)

            await asyncio.gather(*(one(c) for c in children))
        # A child that lost a port race may die after another process answered its health
        # check on that port: make sure every one of them is still running.
        await asyncio.sleep(0.2)
        for child in children:
            if child.proc.poll() is not None:
                tail = child.log.read_text(errors="replace")[-2000:]
                raise UpError(f"{child.spec.name} exited with {child.proc.returncode} right "
                              f"after start; last log lines ({child.log}):\n{tail}")

    async def start_all(self, plan: Plan) -> None:
        for stage in plan.stages:
            started = [self.spawn(spec) for spec in stage]
            await self.wait_healthy(started)

    def stop_all(self) -> None:
        """Reverse start order: edges, shields, control/origin, nodes, then Redis, PostgreSQL."""
        self.stopping = True
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in reversed(self.children):
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait(5)
        if self.redis:
            self.redis.stop()
        if self.postgres:
            self.postgres.stop()
        (self.data_dir / "up.pid").unlink(missing_ok=True)


async def create_demo_content(plan: Plan, secrets: Secrets) -> dict[str, Any]:
    """A public bucket ``demo`` and a private bucket ``private``, one object each. ``private``
    is closed at the origin (shields read it with their SigV4 key) and needs a signed URL at
    the edge."""
    from origin.client import S3Client

    async with S3Client(plan.origin.url, secrets.admin_access_key,
                        secrets.admin_secret_key) as client:
        await client.create_bucket("demo", public=True)
        await client.put_object(
            "demo", "hello.txt",
            b"Hello from the CDN: edge -> shield -> erasure-coded origin.\n",
            content_type="text/plain; charset=utf-8",
            cache_control="public, max-age=60", surrogate_keys=("demo", "hello"),
        )
        await client.create_bucket("private", public=False)
        # Re-creating an existing bucket keeps its ACL (a shared external database may hold
        # an older "private" bucket): state the ACL we rely on.
        await client.put_bucket_acl("private", "private")
        await client.put_object(
            "private", "secret.txt", b"Only signed URLs reach this.\n",
            content_type="text/plain; charset=utf-8",
            cache_control="public, max-age=60", surrogate_keys=("private",),
        )
    return {"object_path": "/demo/hello.txt", "private_path": "/private/secret.txt"}


def signed_url(base: str, path: str, secrets: Secrets, ttl: int = 24 * 3600) -> str:
    from edge.signing import sign_url

    return sign_url(base + path, key_id=secrets.signing_key_id, secret=secrets.signing_secret,
                    expires_at=int(time.time()) + ttl)


def describe(sup: Supervisor, plan: Plan, secrets: Secrets, demo: dict[str, Any]) -> dict[str, Any]:
    procs: list[dict[str, Any]] = []
    if sup.postgres:
        procs.append({"name": "postgres", "role": "postgres", "address": sup.postgres.url,
                      "pid": sup.postgres.pid})
    if sup.redis:
        procs.append({"name": "redis", "role": "redis", "address": sup.redis.url,
                      "pid": sup.redis.pid})
    for child in sup.children:
        s = child.spec
        procs.append({"name": s.name, "role": s.role, "region": s.region, "zone": s.zone,
                      "address": f"{s.host}:{s.port}", "url": s.url, "pid": child.proc.pid,
                      "log": str(child.log)})
    edges = []
    for e in plan.edges:
        entry: dict[str, Any] = {"region": e.region, "url": e.url}
        if demo:
            entry["demo_url"] = e.url + demo["object_path"]
            entry["signed_demo_url"] = signed_url(e.url, demo["private_path"], secrets)
        edges.append(entry)
    return {
        "status": "running",
        "supervisor_pid": os.getpid(),
        "data_dir": str(sup.data_dir),
        "database_url": plan.database_url,
        "redis_url": plan.redis_url,
        "origin": {"endpoint": plan.origin.url, "access_key": secrets.admin_access_key,
                   "secret_key": secrets.admin_secret_key, "region": "us-east-1"},
        "control": {"url": plan.control.url, "purge_token": secrets.purge_token},
        "signing": {"key_id": secrets.signing_key_id, "secret": secrets.signing_secret,
                    "signed_buckets": list(sup.config.signed_buckets)},
        "edge_secret": secrets.edge_secret,
        "edges": edges,
        "shields": [{"name": s.name, "url": s.url} for s in plan.shields],
        "demo": demo,
        "processes": procs,
    }


def print_summary(topology: dict[str, Any], path: Path) -> None:
    lines = ["", "CDN is up. Edge URLs serving the demo object:"]
    for edge in topology["edges"]:
        lines.append(f"  {edge['region']:<9} {edge.get('demo_url', edge['url'])}")
    if topology["demo"]:
        lines.append("Signed URL for the private bucket (24 h):")
        lines.append(f"  {topology['edges'][0]['signed_demo_url']}")
    origin = topology["origin"]
    lines += [
        f"Origin (S3 API): {origin['endpoint']}",
        f"  access key: {origin['access_key']}",
        f"  secret key: {origin['secret_key']}",
        f"Purge API: {topology['control']['url']}/purge "
        f"(Authorization: Bearer {topology['control']['purge_token']})",
        f"Topology: {path}",
        "Press Ctrl-C to stop everything.",
    ]
    print("\n".join(lines), flush=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


async def run(config: UpConfig) -> int:
    sup = Supervisor(config)
    sup.data_dir.mkdir(parents=True, exist_ok=True)
    sup.check_not_running()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    topo_path = sup.data_dir / "topology.json"
    try:
        secrets = load_or_create_secrets(sup.data_dir)
        database_url, redis_url = sup.start_backing_services()
        plan = build_plan(
            data_dir=str(sup.data_dir), secrets=secrets, database_url=database_url,
            redis_url=redis_url, port=sup._port_fn(), regions=config.regions,
            shield_count=config.shields, node_count=config.nodes,
            signed_buckets=config.signed_buckets, host=config.host,
        )
        starting = asyncio.ensure_future(sup.start_all(plan))
        waiting = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            starting.cancel()
            return 130
        waiting.cancel()
        starting.result()
        demo = await create_demo_content(plan, secrets) if config.demo else {}
        topology = describe(sup, plan, secrets, demo)
        write_json(topo_path, topology)
        print_summary(topology, topo_path)
        while not stop.is_set():
            for child in sup.children:
                if child.proc.poll() is not None and not getattr(child, "reported", False):
                    child.reported = True  # type: ignore[attr-defined]
                    print(f"cdn up: {child.spec.name} (pid {child.proc.pid}) exited with "
                          f"{child.proc.returncode}; see {child.log}", file=sys.stderr, flush=True)
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                pass
        print("cdn up: stopping…", flush=True)
        return 0
    except UpError as exc:
        print(f"cdn up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        sup.stop_all()
        if topo_path.exists():
            data = json.loads(topo_path.read_text())
            data["status"] = "stopped"
            write_json(topo_path, data)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cdn up", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML file with an [up] table (default: $CDN_CONFIG)")
    add_config_arguments(parser, UpConfig)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(UpConfig, args, prefix="CDN_UP_", section="up")
    except ConfigError as exc:
        print(f"cdn up: configuration error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run(config))
