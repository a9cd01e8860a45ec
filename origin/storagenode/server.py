"""The storage node's HTTP API (``cdn storage-node``).

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
``GET /volumes/{volume}/records?offset=&max_bytes=&verify=``
    Walk records from ``offset``: ``{"records": [{"offset", "fragment_id", "length",
    "error"}], "next_offset"}`` (``next_offset`` null at the end). ``verify=1`` checks every
    payload CRC (scrubber); ``error`` is ``checksum-mismatch`` or ``corrupt-record``.
``POST /volumes/seal``
    Start a new active volume (so the previous one can be compacted or deleted).
``POST /volumes/{volume}/relocate``
    Body ``{"records": [{"offset", "length", "fragment_id"}]}``: copy those records (verified)
    into the active volume; ``{"moved": [{"from", "volume", "offset", "length"}], "failed":
    [{"offset", "error"}]}``. Refused (409) for the active volume itself.
``DELETE /volumes/{volume}``
    Remove a sealed volume file: ``{"freed": bytes}``; 409 for the active volume. The node
    never decides what is garbage: the origin's collector and compactor do, from metadata.
``GET /_health`` / ``GET /_metrics``
    Liveness (JSON with node id and zone) and Prometheus metrics (app-local registry).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from cdn.roles import run_role
from origin import batch_wire
from origin.config import StorageNodeConfig
from origin.storagenode import record
from origin.storagenode.committer import GroupCommitter
from origin.storagenode.registration import registration_context
from origin.storagenode.volume import Address, RecordNotFound, VolumeError, VolumeSet


class NodeMetrics:
    """Counters of one node, in a registry of its own (never the process-global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.appends = Counter("storage_node_appends_total", "Fragments appended durably",
                               registry=self.registry)
        self.append_bytes = Counter("storage_node_append_bytes_total",
                                    "Payload bytes appended durably", registry=self.registry)
        self.commits = Counter("storage_node_commits_total",
                               "Write+fsync passes (one per group-commit batch)",
                               registry=self.registry)
        self.batch_size = Histogram("storage_node_commit_batch_fragments",
                                    "Fragments per group-commit batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                                    registry=self.registry)
        self.reads = Counter("storage_node_reads_total", "Fragment reads by outcome",
                             ["result"], registry=self.registry)
        self.reads_ok = self.reads.labels(result="ok")  # bound once: counted per fragment
        self.read_bytes = Counter("storage_node_read_bytes_total", "Payload bytes served",
                                  registry=self.registry)
        self.batch_requests = Counter("storage_node_batch_requests_total",
                                      "Batch requests by kind (store, read)", ["kind"],
                                      registry=self.registry)
        self.batch_fragments = Counter("storage_node_batch_fragments_total",
                                       "Fragments carried by batch requests, by kind",
                                       ["kind"], registry=self.registry)
        self.scrubbed_bytes = Counter("storage_node_scrubbed_bytes_total",
                                      "Payload bytes verified by scrub walks",
                                      registry=self.registry)

    def record_batch(self, count: int, nbytes: int) -> None:
        self.commits.inc()
        self.batch_size.observe(count)
        self.appends.inc(count)
        self.append_bytes.inc(nbytes)


# Fragments up to this size are read on the event loop when they are in the page cache.
INLINE_READ_LIMIT = 64 << 10

CONFIG = web.AppKey("config", StorageNodeConfig)
METRICS = web.AppKey("metrics", NodeMetrics)
VOLUMES = web.AppKey("volumes", VolumeSet)
COMMITTER = web.AppKey("committer", GroupCommitter)


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
    try:
        items = batch_wire.decode_store(body, record.MAX_FRAGMENT_ID, limit)
    except batch_wire.BatchFormatError as exc:
        return _error(400, "bad-request", str(exc))
    metrics = request.app[METRICS]
    metrics.batch_requests.labels(kind="store").inc()
    metrics.batch_fragments.labels(kind="store").inc(len(items))
    # A payload damaged between origin and node is refused here, not stored and found later.
    intact = [i for i, item in enumerate(items) if zlib.crc32(item.payload) == item.crc32]
    entries = [batch_wire.StoredItem(batch_wire.STATUS["checksum-mismatch"], 0, 0, 0)
               for _ in items]
    if intact:
        stored: list[Address | None]
        try:
            stored = list(await request.app[COMMITTER].append_many(
                [(items[i].fragment_id, items[i].payload) for i in intact]))
        except VolumeError:
            stored = [None] * len(intact)  # the commit pass failed: none of them is stored
        for i, address in zip(intact, stored, strict=True):
            entries[i] = (batch_wire.StoredItem(batch_wire.STATUS["io-error"], 0, 0, 0)
                          if address is None else
                          batch_wire.StoredItem(0, address.volume, address.offset,
                                                address.length))
    return web.Response(body=batch_wire.encode_stored(entries),
                        content_type="application/octet-stream")


def _read_failure(exc: Exception) -> str | None:
    """The error kind a failed read is answered with (``None``: not a read failure)."""
    if isinstance(exc, RecordNotFound):
        return "not-found"
    if isinstance(exc, record.ChecksumMismatch):
        return "checksum-mismatch"
    if isinstance(exc, record.FragmentIdMismatch):
        return "fragment-id-mismatch"
    if isinstance(exc, record.RecordError):
        return "corrupt-record"
    if isinstance(exc, VolumeError):
        return "io-error"
    return None


_Read = tuple[bytes, bytes] | Exception


def _read_quietly(volumes: VolumeSet, address: Address, expected_id: bytes | None,
                  *, cached_only: bool) -> _Read | None:
    """One read whose failure is returned, not raised (so one bad fragment answers as an
    entry of a batch); ``None`` when ``cached_only`` and the record is not in the page cache."""
    try:
        if cached_only:
            return volumes.read_if_cached(address, expected_id)
        return volumes.read(address, expected_id)
    except (VolumeError, record.RecordError) as exc:
        return exc


async def post_fragment_read(request: web.Request) -> web.Response:
    try:
        wanted = batch_wire.decode_fetch(await request.read(), record.MAX_FRAGMENT_ID)
    except batch_wire.BatchFormatError as exc:
        return _error(400, "bad-request", str(exc))
    metrics = request.app[METRICS]
    metrics.batch_requests.labels(kind="read").inc()
    metrics.batch_fragments.labels(kind="read").inc(len(wanted))
    volumes = request.app[VOLUMES]
    addresses = [Address(w.volume, w.offset, w.length) for w in wanted]
    expected = [w.fragment_id or None for w in wanted]
    found: list[_Read | None] = [
        _read_quietly(volumes, a, e, cached_only=True) if a.length <= INLINE_READ_LIMIT
        else None for a, e in zip(addresses, expected, strict=True)]
    misses = [i for i, f in enumerate(found) if f is None]
    if misses:
        # Whatever would wait for the disk is read by one thread call for the whole batch.
        from_disk = await asyncio.get_running_loop().run_in_executor(None, lambda: [
            _read_quietly(volumes, addresses[i], expected[i], cached_only=False)
            for i in misses])
        for i, got in zip(misses, from_disk, strict=True):
            found[i] = got
    entries = []
    for got in found:
        if isinstance(got, tuple):
            metrics.reads_ok.inc()
            metrics.read_bytes.inc(len(got[1]))
            entries.append(batch_wire.FetchedItem(0, got[1]))
            continue
        kind = _read_failure(got) if isinstance(got, Exception) else None
        if kind is None:
            raise AssertionError(f"unexpected read outcome {got!r}")
        metrics.reads.labels(result=kind).inc()
        entries.append(batch_wire.FetchedItem(batch_wire.STATUS[kind], str(got).encode()))
    return web.Response(body=b"".join(batch_wire.encode_fetched(entries)),
                        content_type="application/octet-stream")


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
        if address.length <= INLINE_READ_LIMIT:
            # A small record already in the page cache costs less to read here than the
            # hand-off to a thread; anything that would wait for the disk goes to one.
            found = volumes.read_if_cached(address, expected_id)
        if found is None:
            found = await asyncio.get_running_loop().run_in_executor(
                None, volumes.read, address, expected_id)
        fragment_id, payload = found
    except (VolumeError, record.RecordError) as exc:
        kind = _read_failure(exc) or "io-error"
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
    loop = asyncio.get_running_loop()
    try:
        page = await loop.run_in_executor(
            None, lambda: request.app[VOLUMES].scan(volume, offset, max_bytes, verify=verify))
    except RecordNotFound as exc:
        return _error(404, "not-found", str(exc))
    except VolumeError as exc:
        return _error(500, "io-error", str(exc))
    if verify:
        request.app[METRICS].scrubbed_bytes.inc(sum(r.length for r in page.records))
    return web.json_response({
        "records": [{"offset": r.offset, "fragment_id": r.fragment_id.decode(errors="replace"),
                     "length": r.length, "error": r.error} for r in page.records],
        "next_offset": page.next_offset})


async def seal_volume(request: web.Request) -> web.Response:
    active = await request.app[COMMITTER].run_exclusive(request.app[VOLUMES].seal)
    return web.json_response({"active": active})


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
    return web.json_response({"status": "ok", "node_id": config.node_id, "zone": config.zone})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _storage(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    volumes = VolumeSet(config.volumes_path, config.volume_max_bytes, fsync=config.fsync,
                        max_age=config.volume_max_age)
    await asyncio.get_running_loop().run_in_executor(None, volumes.open)
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
    app.cleanup_ctx.append(registration_context(config))
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


def main(argv: Sequence[str]) -> int:
    return run_role(argv, prog="cdn storage-node", cls=StorageNodeConfig, prefix="CDN_NODE_",
                    section="storage_node", build_app=build_app,
                    host_port=lambda c: (c.host, c.port))
