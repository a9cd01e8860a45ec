"""The storage node's HTTP API (``cdn storage-node``).

``cdn storage-node`` serves this aiohttp application behind the node's protocol-level front
(``storagenode.front``), which answers the two batch endpoints itself through the same
functions (``storagenode.batches``) and hands every other request to aiohttp.

Endpoints (all bodies are raw bytes or small JSON documents):

``POST /fragments``
    Body: the fragment. Header ``X-Fragment-Id``: opaque id chosen by the origin (1..256 bytes,
    stored in the record header for scrub/GC). Answers ``200 {"volume", "offset", "length"}``
    only after the record is durable (fsync; group commit). 400 without an id, 413 when the
    body exceeds ``max_fragment_bytes``, 507 when the disk refuses the write.
``POST /fragments/batch``
    Several fragments in one request (framing: ``origin.batch_wire``), each with the origin's
    CRC-32 of its payload, checked before anything is stored. Answers 200 with one status
    entry per fragment (its address, or ``checksum-mismatch`` / ``io-error``) once every
    stored one is durable; the fragments share group-commit passes like concurrent single
    POSTs do. 400 when the body does not parse, 413 beyond ``max_fragment_bytes`` in all.
``POST /fragments/read``
    Several ``(volume, offset, length, expected id)`` in one request; answers 200 with one
    entry per fragment, in order: the payload, or the error kind of ``GET /volumes/…``
    (``not-found``, ``checksum-mismatch``, ``corrupt-record``, ``fragment-id-mismatch``,
    ``io-error``) and its message.
``GET /volumes/{volume}/{offset}/{length}``
    The payload of the record starting at ``offset``. Optional request header
    ``X-Fragment-Id``: the id the caller expects (guards against stale addresses). Answers
    200 with the bytes (and the stored id in ``X-Fragment-Id``) after verifying both
    checksums. Errors carry ``X-Fragment-Error`` and a JSON body ``{"error", "message"}``:
    404 ``not-found``; 409 ``checksum-mismatch`` (payload CRC differs: bit rot),
    409 ``corrupt-record`` (header unreadable or lengths disagree), 409
    ``fragment-id-mismatch``; 500 ``io-error``.
``GET /volumes``
    ``{"volumes": [{"volume", "size", "active", "age"}]}``; ``age`` is seconds since the
    volume file was last written (node clock): no record in it is younger.
``GET /volumes/{volume}/records?offset=&max_bytes=&verify=&errors_only=``
    Walk records from ``offset``: ``{"records": [{"offset", "fragment_id", "length",
    "error"}], "next_offset", "walked", "walked_bytes"}`` (``next_offset`` null at the end;
    ``walked``: records walked, ``walked_bytes``: the sum of their ``length``). ``verify=1``
    checks every payload CRC (scrubber); ``error`` is ``checksum-mismatch`` or
    ``corrupt-record``. ``errors_only=1`` lists only records with an error, for an operator
    checking a volume by hand; the counts still cover every record walked. (The scrubber
    lists every header: it also matches the metadata's rows against them.)
``POST /volumes/seal``
    Start a new active volume (so the previous one can be compacted or deleted):
    ``{"active": volume}``. Waits (≤ 1 s) when the next volume number is not due yet (volume
    numbers follow the clock: ``identity.py``); 503 ``not-due`` if it still is not after
    ``_SEAL_ATTEMPTS`` waits.
``POST /volumes/{volume}/relocate``
    Body ``{"records": [{"offset", "length", "fragment_id"}]}``: copy those records (verified)
    into the active volume; ``{"moved": [{"from", "volume", "offset", "length"}], "failed":
    [{"offset", "error"}]}``. Refused (409) for the active volume itself.
``DELETE /volumes/{volume}``
    Remove a sealed volume file: ``{"freed": bytes}``; 409 for the active volume. The node
    never decides what is garbage: the origin's collector and compactor do, from metadata.
``GET /_health`` / ``GET /_metrics``
    Liveness (JSON with node id, zone, ``disk_id`` and ``volume_base``: the origin's health
    probe records the disk of a node that sends no heartbeat from it) and Prometheus metrics
    (app-local registry).

The data dir's disk identity (``identity.py``: a random id, and the first volume number of
this disk) is read, or created on the first start, before the volumes are opened; the node
reports it in its heartbeat (``registration.py``) and in ``GET /_health``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cdn.roles import run_role, serve
from origin.config import StorageNodeConfig
from origin.storagenode import batches, record
from origin.storagenode.committer import GroupCommitter
from origin.storagenode.front import NodeFront
from origin.storagenode.identity import DiskIdentity, load_or_create, seconds_until_number
from origin.storagenode.metrics import NodeMetrics
from origin.storagenode.registration import registration_context
from origin.storagenode.volume import (
    Address,
    RecordNotFound,
    VolumeError,
    VolumeSet,
    existing_volumes,
)

CONFIG = web.AppKey("config", StorageNodeConfig)
METRICS = web.AppKey("metrics", NodeMetrics)
VOLUMES = web.AppKey("volumes", VolumeSet)
COMMITTER = web.AppKey("committer", GroupCommitter)
DISK = web.AppKey("disk", DiskIdentity)

# A seal waits for the next volume number to be due, then runs behind the queued appends; an
# append that rolled the volume over meanwhile sealed it already. Three rounds cover a clock
# that barely moved; more would mean the clock is wrong.
_SEAL_ATTEMPTS = 3


_READ_FAILURE_STATUS = {"not-found": 404, "checksum-mismatch": 409, "corrupt-record": 409,
                        "fragment-id-mismatch": 409, "io-error": 500}


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": kind, "message": message}, status=status,
                             headers={"X-Fragment-Error": kind})


async def post_fragment(request: web.Request) -> web.Response:
    fragment_id = request.headers.get("X-Fragment-Id", "").encode()
    if not 0 < len(fragment_id) <= record.MAX_FRAGMENT_ID:
        return _error(400, "bad-request",
                      f"X-Fragment-Id must be 1..{record.MAX_FRAGMENT_ID} bytes")
    payload = await request.read()
    try:
        address = await request.app[COMMITTER].append(fragment_id, payload)
    except VolumeError as exc:
        return _error(507, "io-error", str(exc))
    return web.json_response({"volume": address.volume, "offset": address.offset,
                              "length": address.length})


async def post_fragment_batch(request: web.Request) -> web.Response:
    limit = request.app[CONFIG].max_fragment_bytes
    size = request.content_length
    if size is None or size > limit:
        return _error(413, "too-large", f"a batch needs a Content-Length of at most {limit}")
    body = await request.content.readexactly(size)
    return _response(await batches.store_batch(request.app[COMMITTER], request.app[METRICS],
                                               body, limit))


async def post_fragment_read(request: web.Request) -> web.Response:
    return _response(await batches.read_batch(request.app[VOLUMES], request.app[METRICS],
                                              await request.read()))


def _response(answer: batches.Answer) -> web.Response:
    headers = {"X-Fragment-Error": answer.error_kind} if answer.error_kind else None
    return web.Response(status=answer.status, body=answer.body,
                        content_type=answer.content_type, headers=headers)


def _address(request: web.Request) -> Address:
    info = request.match_info
    try:
        return Address(int(info["volume"]), int(info["offset"]), int(info["length"]))
    except ValueError:
        raise web.HTTPBadRequest(text="volume, offset and length must be integers") from None


async def get_fragment(request: web.Request) -> web.Response:
    address = _address(request)
    expected = request.headers.get("X-Fragment-Id")
    metrics = request.app[METRICS]
    volumes = request.app[VOLUMES]
    expected_id = expected.encode() if expected else None
    try:
        found = None
        if address.length <= batches.INLINE_READ_LIMIT:
            # A small record already in the page cache costs less to read here than the
            # hand-off to a thread; anything that would wait for the disk goes to one.
            found = volumes.read_if_cached(address, expected_id)
        if found is None:
            found = await asyncio.get_running_loop().run_in_executor(
                None, volumes.read, address, expected_id)
        fragment_id, payload = found
    except (VolumeError, record.RecordError) as exc:
        kind = batches.read_failure(exc) or "io-error"
        metrics.reads.labels(result=kind).inc()
        return _error(_READ_FAILURE_STATUS[kind], kind, str(exc))
    metrics.reads.labels(result="ok").inc()
    metrics.read_bytes.inc(len(payload))
    return web.Response(body=payload, content_type="application/octet-stream",
                        headers={"X-Fragment-Id": fragment_id.decode(errors="replace")})


async def list_volumes(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    volumes = await loop.run_in_executor(None, request.app[VOLUMES].volumes)
    now = time.time()
    return web.json_response({"volumes": [
        {"volume": v.volume, "size": v.size, "active": v.active,
         "age": max(0.0, now - v.modified)} for v in volumes]})


def _int_query(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None


async def scan_records(request: web.Request) -> web.Response:
    volume = int(request.match_info["volume"])
    offset = _int_query(request, "offset", 0)
    max_bytes = max(1, _int_query(request, "max_bytes", 8 << 20))
    verify = request.query.get("verify", "0") in ("1", "true")
    errors_only = request.query.get("errors_only", "0") in ("1", "true")
    loop = asyncio.get_running_loop()
    try:
        page = await loop.run_in_executor(None, lambda: request.app[VOLUMES].scan(
            volume, offset, max_bytes, verify=verify, errors_only=errors_only))
    except RecordNotFound as exc:
        return _error(404, "not-found", str(exc))
    except VolumeError as exc:
        return _error(500, "io-error", str(exc))
    if verify:
        request.app[METRICS].scrubbed_bytes.inc(page.walked_bytes)
    return web.json_response({
        "records": [{"offset": r.offset, "fragment_id": r.fragment_id.decode(errors="replace"),
                     "length": r.length, "error": r.error} for r in page.records],
        "next_offset": page.next_offset, "walked": page.walked,
        "walked_bytes": page.walked_bytes})


async def seal_volume(request: web.Request) -> web.Response:
    volumes, committer = request.app[VOLUMES], request.app[COMMITTER]
    before = volumes.active_volume
    for _ in range(_SEAL_ATTEMPTS):
        await asyncio.sleep(volumes.next_volume_delay())
        active = await committer.run_exclusive(volumes.seal)
        if active is None and volumes.active_volume != before:
            active = volumes.active_volume  # an append rolled the volume over meanwhile
        if active is not None:
            return web.json_response({"active": active})
    return _error(503, "not-due", f"volume {volumes.active_volume + 1} is not due yet "
                  f"(in {volumes.next_volume_delay():.3f} s); the node's clock may be wrong")


async def delete_volume(request: web.Request) -> web.Response:
    volume = int(request.match_info["volume"])
    volumes = request.app[VOLUMES]
    try:
        freed = await request.app[COMMITTER].run_exclusive(lambda: volumes.delete(volume))
    except RecordNotFound as exc:
        return _error(404, "not-found", str(exc))
    except VolumeError as exc:
        return _error(409, "active-volume", str(exc))
    return web.json_response({"freed": freed})


async def relocate_records(request: web.Request) -> web.Response:
    volume = int(request.match_info["volume"])
    volumes = request.app[VOLUMES]
    if any(v.volume == volume and v.active for v in volumes.volumes()):
        return _error(409, "active-volume", f"volume {volume} is active; seal it first")
    try:
        wanted = [(int(r["offset"]), int(r["length"]), str(r["fragment_id"]).encode())
                  for r in (await request.json())["records"]]
    except (KeyError, TypeError, ValueError) as exc:
        return _error(400, "bad-request", f"bad relocation request: {exc!r}")
    loop = asyncio.get_running_loop()
    moved, failed = [], []
    for offset, length, fragment_id in wanted:
        try:
            payload = await loop.run_in_executor(
                None, volumes.read_record, volume, offset, length, fragment_id)
            address = await request.app[COMMITTER].append(fragment_id, payload)
        except (record.RecordError, VolumeError) as exc:
            failed.append({"offset": offset, "error": type(exc).__name__})
            continue
        moved.append({"from": offset, "volume": address.volume, "offset": address.offset,
                      "length": address.length})
    return web.json_response({"moved": moved, "failed": failed})


async def health(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    disk = request.app[DISK]
    return web.json_response({"status": "ok", "node_id": config.node_id, "zone": config.zone,
                              "disk_id": disk.disk_id, "volume_base": disk.volume_base})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _open_disk(config: StorageNodeConfig) -> tuple[DiskIdentity, VolumeSet]:
    """The disk's identity (created on a fresh data dir: may wait ≤ 1 s) and its volumes,
    numbered from the identity's base and never ahead of the clock."""
    disk = load_or_create(config.data_path, existing_volumes(config.volumes_path))
    volumes = VolumeSet(config.volumes_path, config.volume_max_bytes, fsync=config.fsync,
                        max_age=config.volume_max_age, first_volume=disk.volume_base,
                        start_delay=lambda number: seconds_until_number(number, time.time()))
    volumes.open()
    return disk, volumes


async def _storage(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    disk, volumes = await asyncio.get_running_loop().run_in_executor(None, _open_disk, config)
    app[DISK] = disk
    committer = GroupCommitter(volumes, on_batch=app[METRICS].record_batch)
    committer.start()
    app[VOLUMES] = volumes
    app[COMMITTER] = committer
    yield
    await committer.stop()
    volumes.close()


def build_app(config: StorageNodeConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_fragment_bytes)
    app[CONFIG] = config
    app[METRICS] = NodeMetrics()
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(registration_context(config, lambda: app[DISK]))
    app.router.add_post("/fragments", post_fragment)
    app.router.add_post("/fragments/batch", post_fragment_batch)
    app.router.add_post("/fragments/read", post_fragment_read)
    app.router.add_get(r"/volumes/{volume:\d+}/{offset:\d+}/{length:\d+}", get_fragment)
    app.router.add_get("/volumes", list_volumes)
    app.router.add_get(r"/volumes/{volume:\d+}/records", scan_records)
    app.router.add_post("/volumes/seal", seal_volume)
    app.router.add_post(r"/volumes/{volume:\d+}/relocate", relocate_records)
    app.router.add_delete(r"/volumes/{volume:\d+}", delete_volume)
    app.router.add_get("/_health", health)
    app.router.add_get("/_metrics", metrics)
    return app


def node_front(app: web.Application, app_server: Callable[[], asyncio.Protocol]) -> NodeFront:
    """The protocol-level front (``storagenode.front``) over the started ``app``: the batch
    endpoints answered by the same functions as the aiohttp handlers above."""
    config, metrics = app[CONFIG], app[METRICS]
    committer, volumes = app[COMMITTER], app[VOLUMES]
    limit = config.max_fragment_bytes

    async def store(body: bytes) -> batches.Answer:
        return await batches.store_batch(committer, metrics, body, limit)

    async def read(body: bytes) -> batches.Answer:
        return await batches.read_batch(volumes, metrics, body)

    def read_now(body: bytes) -> batches.Answer | None:
        return batches.read_batch_cached(volumes, metrics, body)

    def store_now(body: bytes) -> batches.Answer | asyncio.Future[batches.Answer]:
        return batches.start_store_batch(committer, metrics, body, limit)

    return NodeFront({b"/fragments/batch": store, b"/fragments/read": read}, app_server,
                     max_body=limit, metrics=metrics,
                     quick={b"/fragments/read": read_now, b"/fragments/batch": store_now})


def _serve(config: StorageNodeConfig, app: web.Application) -> int:
    serve(app, config.host, config.port, front=node_front)
    return 0


def main(argv: Sequence[str]) -> int:
    return run_role(argv, prog="cdn storage-node", cls=StorageNodeConfig, prefix="CDN_NODE_",
                    section="storage_node", build_app=build_app,
                    host_port=lambda c: (c.host, c.port), serve_app=_serve)
