"""Purges reach every worker of ``cdn edge --workers 2`` (``httpcache.serving``), each with its
own memory tier, and the Redis tier they share.

Real processes on loopback: a ``cdn control`` (purge API, log in a fresh PostgreSQL database,
fan-out on the session's Redis), a ``cdn edge --workers 2`` subscribed to it, and a scriptable
origin in the test's process whose body changes before the purge, so a stale answer shows in
its bytes. Which worker answered is read from ``/proc`` (``tests.procs.serving_worker``); every
request goes on a fresh connection, so the kernel (and ``cdn.balance``) picks the worker.

A purge must reach every worker within a bounded wait (each worker's ``cdn_purge_last_seq``
in the edge's ``/_metrics``); from then on no answer may be the old body, and each worker's
first answer must have gone upstream.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from cdn.processes import free_port
from control.config import ControlConfig
from control.server import build_app as build_control
from httpcache.cache_status import parse_members
from httpcache.shared_store import decode_entry
from tests.integration.cache.conftest import url_of
from tests.integration.cache.scriptable_origin import ScriptableOrigin
from tests.procs import RoleProcess, edge_with_workers, serving_worker
from tests.scrapes import scrape

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc to see which worker answered")

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]

TOKEN = "worker-purge-token"
PATH = "/pub/a"
OLD = b"old body, served before the purge\n"
NEW = b"new body, fetched after the purge\n"
FILL_ATTEMPTS = 80  # fresh connections to get a hit from every worker (each ~1/2 a try)
WAIT = 5.0  # seconds a purge may take to reach every worker
AFTER = 20  # fresh-connection requests that must all be new once every worker has it


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    member: dict[str, str | bool]  # the edge's Cache-Status member
    worker: int

    @property
    def hit(self) -> bool:
        return self.member.get("hit") is True


@dataclass
class Rig:
    origin: ScriptableOrigin
    control: RoleProcess
    edge: RoleProcess
    workers: list[int]
    channel: str
    region: str
    shared_prefix: str
    database_url: str
    redis_url: str
    redis: aioredis.Redis

    async def get(self, path: str = PATH) -> Answer:
        """One GET on a new connection, and the worker that answered it (asked while the
        connection is still open)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.edge.port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode())
            status, fields, body = await asyncio.wait_for(read_response(reader), 10)
            worker = serving_worker(self.edge.port, writer.get_extra_info("sockname")[1],
                                    self.workers)
        finally:
            writer.close()
        members = parse_members(fields.get("cache-status"))
        return Answer(status, body, members[-1][1] if members else {}, worker)

    async def purge(self, **body: Any) -> dict[str, Any]:
        """``POST /purge`` to the control plane; its answer (durable and published)."""
        async with aiohttp.ClientSession() as client:
            async with client.post(self.control.url + "/purge", json=body,
                                   headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200, await resp.text()
                return dict(await resp.json())


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, fields (lower-case names) and body of one HTTP/1.1 response."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    fields = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
    if "content-length" in fields:
        return status, fields, await reader.readexactly(int(fields["content-length"]))
    assert fields.get("transfer-encoding") == "chunked", fields
    body = b""
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return status, fields, body


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(fresh_database_url: str, redis_url: str, aiohttp_server: ServerFactory,
                   processes: list[RoleProcess], tmp_path: Path) -> AsyncIterator[MakeRig]:
    """Origin, control plane and a 2-worker edge subscribed to it (``shared``: with a Redis
    tier under a prefix of its own). The processes stop before the database is dropped."""
    rigs: list[Rig] = []

    async def make(*, shared: bool = False) -> Rig:
        origin = ScriptableOrigin()
        origin.set(PATH, OLD, headers={"Cache-Control": "max-age=600", "ETag": '"old"',
                                       "Surrogate-Key": "product-7 catalogue"})
        origin_url = url_of(await aiohttp_server(origin.app))
        tag = uuid.uuid4().hex[:8]
        channel, region, prefix = f"cdn:purge:workers-{tag}", f"w{tag}", f"t-{tag}:"
        control_port = free_port()
        control = RoleProcess("control", [
            "--port", str(control_port), "--database-url", fresh_database_url,
            "--redis-url", redis_url, "--purge-token", TOKEN, "--purge-channel", channel,
        ], control_port, log_path=tmp_path / "control.log")
        processes.append(control.start())
        extra = ["--redis-url", redis_url, "--control-url", control.url,
                 "--purge-token", TOKEN, "--purge-channel", channel]
        if shared:
            extra += ["--shared-cache-url", redis_url, "--shared-cache-prefix", prefix]
        edge, workers = edge_with_workers(origin_url, tmp_path, region=region, extra=extra)
        processes.append(edge)
        rig = Rig(origin, control, edge, workers, channel, region, prefix, fresh_database_url,
                  redis_url, aioredis.from_url(redis_url))
        rigs.append(rig)
        await subscribed(rig, len(workers))
        return rig

    yield make
    for rig in rigs:
        names = [name async for name in rig.redis.scan_iter(match=f"{rig.shared_prefix}*")]
        if names:
            await rig.redis.delete(*names)
        await rig.redis.aclose()


async def subscribed(rig: Rig, count: int) -> None:
    """Wait (bounded) until ``count`` subscribers listen on the rig's purge channel."""
    deadline = time.monotonic() + 10
    while True:
        [(_channel, listening)] = await rig.redis.pubsub_numsub(rig.channel)
        if listening >= count:
            return
        assert time.monotonic() < deadline, f"{listening} of {count} workers subscribed"
        await asyncio.sleep(0.05)


async def fill_every_worker(rig: Rig) -> None:
    """New connections until every worker has answered a hit of the old body (so each memory
    tier holds it); bounded in attempts and time."""
    hits: set[int] = set()
    deadline = time.monotonic() + 20
    for _ in range(FILL_ATTEMPTS):
        answer = await rig.get()
        assert answer.status == 200 and answer.body == OLD, answer
        if answer.hit:
            hits.add(answer.worker)
        if hits == set(rig.workers) or time.monotonic() > deadline:
            break
    assert hits == set(rig.workers), f"only workers {hits} of {rig.workers} answered a hit"


def change_origin(rig: Rig) -> None:
    """The object changes at the origin: new bytes, new validator."""
    script = rig.origin.scripts[PATH]
    script.body = NEW
    script.headers = {**script.headers, "ETag": '"new"'}


async def purge_seqs(rig: Rig) -> dict[str, float]:
    """Each worker's last applied purge sequence, by its ``worker`` label in the edge's
    ``/_metrics`` (every worker's samples, ``cdn.worker_metrics``)."""
    found = await asyncio.to_thread(scrape, rig.edge.url)
    return found.per_worker("cdn_purge_last_seq")


async def every_worker_serves_new(rig: Rig, seq: int, *, wait: float = WAIT) -> list[Answer]:
    """Within ``wait`` seconds every worker has applied purge ``seq``; from then on every
    answer, on new connections until each worker has answered and ``AFTER`` more, is the
    new body. The answers, in order."""
    deadline = time.monotonic() + wait
    while True:
        seqs = await purge_seqs(rig)
        if len(seqs) == len(rig.workers) and min(seqs.values()) >= seq:
            break
        assert time.monotonic() < deadline, (
            f"after {wait}s the workers' last purge sequences are {seqs}, not yet {seq}")
        await asyncio.sleep(0.05)
    answers: list[Answer] = []
    for _ in range(FILL_ATTEMPTS):
        answer = await rig.get()
        answers.append(answer)
        assert answer.status == 200 and answer.body == NEW, answer
        if {a.worker for a in answers} == set(rig.workers):
            break
    assert {a.worker for a in answers} == set(rig.workers), answers
    for _ in range(AFTER):
        answer = await rig.get()
        answers.append(answer)
        assert answer.status == 200 and answer.body == NEW, answer
    return answers


def first_new_answers_fetched(answers: Sequence[Answer], fwd: str = "uri-miss") -> None:
    """Each worker's first answer of the new body came from upstream, not from something it
    still held: a miss after a hard purge (it empties the memory tier), a revalidation of
    the stale copy (``fwd="stale"``) after a soft one."""
    firsts: dict[int, Answer] = {}
    for answer in answers:
        if answer.body == NEW:
            firsts.setdefault(answer.worker, answer)
    for worker, answer in firsts.items():
        assert not answer.hit and answer.member.get("fwd") == fwd, (worker, answer)


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
async def test_tag_purge_reaches_every_worker(make_rig: MakeRig, soft: bool) -> None:
    rig = await make_rig()
    await fill_every_worker(rig)
    change_origin(rig)
    assert (await rig.get()).body == OLD  # cached: the origin's change is not seen yet
    event = await rig.purge(tags=["product-7"], soft=soft)
    assert event["published"] and event["receivers"] == len(rig.workers)
    first_new_answers_fetched(await every_worker_serves_new(rig, event["seq"]),
                              "stale" if soft else "uri-miss")


async def test_url_purge_reaches_every_worker(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await fill_every_worker(rig)
    change_origin(rig)
    event = await rig.purge(urls=[PATH])
    assert event["published"] and event["receivers"] == len(rig.workers)
    first_new_answers_fetched(await every_worker_serves_new(rig, event["seq"]))


async def silent_purge(rig: Rig, **body: Any) -> int:
    """A purge made durable in the rig's log by a control plane publishing where no cache
    listens: every worker misses the event. Its sequence number. (That control plane runs
    here, and is closed before the test's database is dropped.)"""
    config = ControlConfig(database_url=rig.database_url, redis_url=rig.redis_url,
                           purge_token=TOKEN, purge_channel=rig.channel + ":nobody")
    server = TestServer(build_control(config))
    async with server, aiohttp.ClientSession() as client:
        async with client.post(url_of(server) + "/purge", json=body,
                               headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 200, await resp.text()
            event = await resp.json()
    assert event["receivers"] == 0
    return int(event["seq"])


async def cut_purge_connections(rig: Rig) -> int:
    """Close the workers' purge subscriptions on the Redis side (they reconnect and catch
    up); how many were closed."""
    name = f"cdn-purge:cdn-edge-{rig.region}"
    cut = 0
    for client in await rig.redis.client_list(_type="pubsub"):
        if client["name"] == name:
            cut += await rig.redis.client_kill_filter(_id=client["id"])
    return cut


async def test_workers_that_missed_a_purge_catch_up_on_reconnect(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await fill_every_worker(rig)
    change_origin(rig)
    missed = await silent_purge(rig, tags=["catalogue"])
    # missed by every worker: each still answers its copy
    await fill_every_worker(rig)
    assert await cut_purge_connections(rig) == len(rig.workers)
    first_new_answers_fetched(await every_worker_serves_new(rig, missed))


async def test_workers_that_missed_a_purge_catch_up_at_the_next_one(make_rig: MakeRig
                                                                    ) -> None:
    """The sequence gap the next published purge shows makes each worker read the log."""
    rig = await make_rig()
    await fill_every_worker(rig)
    change_origin(rig)
    missed = await silent_purge(rig, urls=[PATH])
    await fill_every_worker(rig)
    event = await rig.purge(tags=["unrelated"])
    assert event["seq"] == missed + 1 and event["receivers"] == len(rig.workers)
    first_new_answers_fetched(await every_worker_serves_new(rig, missed))


async def shared_bodies(rig: Rig) -> list[bytes]:
    """The bodies of the entries in the rig's shared tier (its Redis prefix)."""
    bodies: list[bytes] = []
    async for name in rig.redis.scan_iter(match=f"{rig.shared_prefix}*", count=500):
        if await rig.redis.type(name) == b"string":  # entries; the purge indexes are sets
            raw = await rig.redis.get(name)
            if isinstance(raw, bytes) and raw.startswith(b"CDN1"):
                bodies.append(bytes(decode_entry(raw)[0].body))
    return bodies


async def tag_indexed(rig: Rig, tag: str) -> bool:
    """Whether the rig's shared tier indexes an entry under ``tag``."""
    async for name in rig.redis.scan_iter(match=f"{rig.shared_prefix}*t:{tag}", count=500):
        if await rig.redis.scard(name):
            return True
    return False


async def test_purge_reaches_the_shared_tier_and_every_worker(make_rig: MakeRig) -> None:
    rig = await make_rig(shared=True)
    assert (await rig.get()).body == OLD
    deadline = time.monotonic() + 5
    # written in the background: the entry, then the tag index a purge reads
    while await shared_bodies(rig) != [OLD] or not await tag_indexed(rig, "product-7"):
        assert time.monotonic() < deadline, await shared_bodies(rig)
        await asyncio.sleep(0.05)
    await fill_every_worker(rig)
    assert rig.origin.count(PATH) == 1  # one worker fetched it, the other read it from Redis
    change_origin(rig)
    event = await rig.purge(tags=["product-7"])
    assert event["published"] and event["receivers"] == len(rig.workers)
    answers = await every_worker_serves_new(rig, event["seq"])
    # The first answer of the new body was fetched (another worker may have it from Redis
    # then): a miss, or, when the request came before the worker's background delete in
    # Redis, a revalidation of the old entry, which the worker reads as invalid (it is
    # dated before a purge that names it: httpcache.shared_store) and so never serves.
    first_new = next(a for a in answers if a.body == NEW)
    assert not first_new.hit and first_new.member.get("fwd") in ("uri-miss", "stale"), first_new
    assert first_new.member.get("fwd-status") == "200", first_new
    deadline = time.monotonic() + 5
    while OLD in (bodies := await shared_bodies(rig)):
        assert time.monotonic() < deadline, f"the shared tier still holds the old body: {bodies}"
        await asyncio.sleep(0.05)
