"""The origin's HTTP client for storage nodes: store one fragment, read one fragment back.

Every aiohttp exception and every non-200 answer becomes a ``NodeRequestError`` naming the node
and what went wrong, so the data path decides (count a failed slot, fall back to parity) without
knowing about aiohttp. One ``ClientSession`` with keep-alive connections is shared by the
single-fragment and maintenance requests of the process; batch requests go over the lean
keep-alive connections of ``origin.batch_connections`` (no aiohttp objects per request).

Small fragments (up to ``BATCH_FRAGMENT_LIMIT``) are not sent one request each: per node, one
``Coalescer`` for stores and one for reads gather what concurrent PUTs and GETs want from that
node into one ``POST /fragments/batch`` or ``POST /fragments/read`` (``origin.batch_wire``). For
a 4 KiB object the request, not its 700 bytes, is the cost, so this is what lets small objects
reach thousands per second; a lone request still leaves at once. Each fragment keeps its own
outcome: one bad record fails only its own slot, a node that does not answer fails all of its
batch (as it would have failed every single request). Larger fragments stream one per request,
where the HTTP overhead is small next to the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

import aiohttp

from origin import batch_wire
from origin.batch_connections import BatchConnections, Outcome
from origin.coalescer import Coalescer
from origin.config import NodeSpec
from origin.layout import FragmentLocation
from origin.nodehealth import NodeStatus, node_status

FailureKind = Literal["unreachable", "timeout", "rejected", "corrupt", "not-found"]


class NodeRequestError(Exception):
    """One request to one storage node failed; ``kind`` says how."""

    def __init__(self, node_id: str, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{node_id}: {kind}: {detail}")
        self.node_id = node_id
        self.kind = kind
        self.detail = detail

    def __reduce__(self) -> tuple[type[NodeRequestError], tuple[str, FailureKind, str]]:
        # copy/pickle rebuild it from these (the coalescer hands each waiter its own copy).
        return (NodeRequestError, (self.node_id, self.kind, self.detail))

    @property
    def node_is_down(self) -> bool:
        """Whether the failure says something about the node rather than about one record."""
        return self.kind in ("unreachable", "timeout")


# Fragments up to this size go through the per-node batches (the node reads them on its event
# loop when cached, ``storagenode.server.INLINE_READ_LIMIT``); larger ones get a request each.
BATCH_FRAGMENT_LIMIT = 64 << 10
# Bounds of one batch request (the node accepts up to its max_fragment_bytes per request).
BATCH_MAX_ITEMS = 64
BATCH_MAX_BYTES = 2 << 20

_OK = batch_wire.STATUS["ok"]
# Per-fragment status of a batch answer -> how the data path sees it (as the single endpoints'
# HTTP statuses map: 404 not-found, 409 corrupt, anything else rejected).
_FETCH_FAILURE: dict[int, FailureKind] = {
    batch_wire.STATUS["not-found"]: "not-found",
    batch_wire.STATUS["checksum-mismatch"]: "corrupt",
    batch_wire.STATUS["corrupt-record"]: "corrupt",
    batch_wire.STATUS["fragment-id-mismatch"]: "corrupt",
}


class _Fetch(NamedTuple):
    location: FragmentLocation
    frame: bytes  # its frame of the fetch request body (``batch_wire.fetch_frame``)


class NodeClient:
    """Talks to the configured storage nodes over one shared keep-alive session.

    ``batch_inflight``: batch requests in flight per node and direction before further small
    fragments wait to leave together (0: no batching, one request per fragment)."""

    def __init__(
        self, session: aiohttp.ClientSession, nodes: Mapping[str, NodeSpec], timeout: float,
        *, batch_inflight: int = 1,
    ) -> None:
        self._session = session
        self._nodes = dict(nodes)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 2.0))
        self._probe_timeout = aiohttp.ClientTimeout(total=min(timeout, 2.0))
        self._batch_inflight = batch_inflight
        self._stores: dict[str, _StoreLane] = {}
        self._fetches: dict[str, _FetchLane] = {}
        self._batch_timeout = timeout
        self._batches = BatchConnections(connect_timeout=min(timeout, 2.0))
        self._addresses: dict[str, tuple[str, int]] = {}  # node URL -> (host, port)

    async def close(self) -> None:
        """Cancel batches in flight (before the session closes under them)."""
        for store in self._stores.values():
            await store.close()
        for fetch in self._fetches.values():
            await fetch.close()
        self._batches.close()

    @property
    def node_ids(self) -> list[str]:
        return sorted(self._nodes)

    def spec(self, node_id: str) -> NodeSpec:
        return self._nodes[node_id]

    def add_node(self, spec: NodeSpec) -> bool:
        """Learn a node (registered after start-up) or its new address; True if it changed."""
        if self._nodes.get(spec.node_id) == spec:
            return False
        self._nodes[spec.node_id] = spec
        return True

    def _node(self, node_id: str) -> NodeSpec:
        spec = self._nodes.get(node_id)
        if spec is None:  # removed from the cluster while a request to it was queued
            raise NodeRequestError(node_id, "unreachable", "node not configured")
        return spec

    # -- maintenance calls of the background workers ------------------------------------------

    async def _json(self, method: str, node_id: str, path: str, *,
                    params: dict[str, str] | None = None, body: object = None,
                    timeout: aiohttp.ClientTimeout | None = None,  # noqa: ASYNC109
                    ) -> dict:
        spec = self._node(node_id)
        with _node_errors(node_id):
            async with self._session.request(method, spec.url + path, params=params,
                                              json=body, timeout=timeout or self._timeout
                                              ) as resp:
                if resp.status == 404:
                    raise NodeRequestError(node_id, "not-found", await resp.text())
                await _expect_ok(node_id, resp)
                return await resp.json()

    async def list_volumes(self, node_id: str) -> list[dict]:
        """``[{"volume", "size", "active", "age"}]`` of one node."""
        return list((await self._json("GET", node_id, "/volumes"))["volumes"])

    async def scan_volume(self, node_id: str, volume: int, offset: int, max_bytes: int,
                          *, verify: bool) -> dict | None:
        """One page of a record walk: ``{"records": [...], "next_offset", "walked",
        "walked_bytes"}`` (a node of an older build sends no counts).

        ``None``: the node no longer has the volume. The collector, the compactor and the
        scrubber (of every origin, and ``cdn repair``'s) run concurrently, so one may delete
        a volume another listed a moment ago; its walkers skip it."""
        params = {"offset": str(offset), "max_bytes": str(max_bytes),
                  "verify": "1" if verify else "0"}
        try:
            return await self._json("GET", node_id, f"/volumes/{volume}/records",
                                    params=params, timeout=aiohttp.ClientTimeout(
                                        total=max(60.0, self._timeout.total or 0)))
        except NodeRequestError as exc:
            if exc.kind == "not-found":  # the node's only 404 here: no such volume
                return None
            raise

    async def seal_volume(self, node_id: str) -> int:
        return int((await self._json("POST", node_id, "/volumes/seal"))["active"])

    async def relocate(self, node_id: str, volume: int, records: list[dict]) -> dict:
        return await self._json("POST", node_id, f"/volumes/{volume}/relocate",
                                body={"records": records},
                                timeout=aiohttp.ClientTimeout(total=120.0))

    async def delete_volume(self, node_id: str, volume: int) -> int:
        return int((await self._json("DELETE", node_id, f"/volumes/{volume}"))["freed"])

    async def put_fragment(
        self, node_id: str, fragment_id: str, payload: bytes
    ) -> FragmentLocation:
        """Store ``payload`` durably on ``node_id``; its location (with our own CRC-32)."""
        return await self.store(node_id, fragment_id, payload)

    def store(self, node_id: str, fragment_id: str,
              payload: bytes) -> asyncio.Future[FragmentLocation]:
        """``put_fragment`` as a future, started now: a small fragment costs no task of its
        own (a PUT starts k+m of them per segment)."""
        checksum = zlib.crc32(payload)
        if self._batch_inflight and len(payload) <= BATCH_FRAGMENT_LIMIT:
            lane = self._stores.get(node_id)
            if lane is None:
                lane = self._stores[node_id] = _StoreLane(self, node_id)
            # queued as the wire's own item: the batch body is encoded from it as it is
            return lane.enqueue(batch_wire.StoreItem(fragment_id.encode(), payload, checksum))
        return asyncio.ensure_future(self._put_one(node_id, fragment_id, payload, checksum))

    def _host_port(self, node_id: str) -> tuple[str, int]:
        url = self._node(node_id).url
        found = self._addresses.get(url)
        if found is None:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise NodeRequestError(node_id, "unreachable", f"not an http:// node URL: {url}")
            found = self._addresses[url] = (parts.hostname, parts.port or 80)
        return found

    async def _put_one(
        self, node_id: str, fragment_id: str, payload: bytes, checksum: int
    ) -> FragmentLocation:
        spec = self._node(node_id)
        url = f"{spec.url}/fragments"
        with _node_errors(node_id):
            async with self._session.post(url, data=payload, timeout=self._timeout,
                                          headers={"X-Fragment-Id": fragment_id,
                                                   "Content-Type": "application/octet-stream"}
                                          ) as resp:
                await _expect_ok(node_id, resp)
                answer = await resp.json()
        try:
            return FragmentLocation(node_id, int(answer["volume"]), int(answer["offset"]),
                                    int(answer["length"]), checksum)
        except (KeyError, TypeError, ValueError):
            raise NodeRequestError(node_id, "rejected", f"bad answer {answer!r}") from None

    async def get_fragment(self, location: FragmentLocation, fragment_id: str) -> bytes:
        """The fragment at ``location``, verified against the CRC-32 taken when it was written
        (the node verified its own record checksum too; this also covers the network and any
        node bug that hands back the wrong bytes)."""
        return await self.fetch(location, fragment_id)

    def fetch(self, location: FragmentLocation, fragment_id: str) -> asyncio.Future[bytes]:
        """``get_fragment`` as a future, started now: a small fragment costs no task of its
        own (the reader starts k of them per segment). Cancel it to withdraw the read."""
        if self._batch_inflight and location.length <= BATCH_FRAGMENT_LIMIT:
            lane = self._fetches.get(location.node_id)
            if lane is None:
                lane = self._fetches[location.node_id] = _FetchLane(self, location.node_id)
            return lane.enqueue(_Fetch(location, batch_wire.fetch_frame(
                location.volume, location.offset, location.length, fragment_id.encode())))
        return asyncio.ensure_future(self._get_verified(location, fragment_id))

    async def _get_verified(self, location: FragmentLocation, fragment_id: str) -> bytes:
        payload = await self._get_one(location, fragment_id)
        return _verified(location, payload)

    async def _get_one(self, location: FragmentLocation, fragment_id: str) -> bytes:
        node_id = location.node_id
        spec = self._node(node_id)
        url = f"{spec.url}/volumes/{location.volume}/{location.offset}/{location.length}"
        with _node_errors(node_id):
            async with self._session.get(url, timeout=self._timeout,
                                         headers={"X-Fragment-Id": fragment_id}) as resp:
                if resp.status == 404:
                    raise NodeRequestError(node_id, "not-found", await resp.text())
                if resp.status == 409:
                    kind = resp.headers.get("X-Fragment-Error", "corrupt")
                    raise NodeRequestError(node_id, "corrupt", kind)
                await _expect_ok(node_id, resp)
                return await resp.read()

    async def probe(self, node_id: str) -> NodeStatus | None:
        """What ``GET /_health`` answered with a 200 within the probe timeout (``None``: the
        node is down). A 200 whose body is not the storage node's JSON still means up."""
        try:
            async with self._session.get(f"{self._nodes[node_id].url}/_health",
                                         timeout=self._probe_timeout) as resp:
                body = await resp.read()
                if resp.status != 200:
                    return None
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None
        return node_status(body)


class _Lane(Coalescer[Any, Any]):
    """The batches of one node and one direction: the ``Coalescer``'s queue and slots, with
    the request sent and its answer taken apart here in one step each. Every small GET and
    PUT goes through these (≈ 3 batches per 4 KiB GET at 8 clients), so there are no
    per-batch closures, result lists or generic outcome handling in between."""

    path = ""

    def __init__(self, client: NodeClient, node_id: str,
                 size_of: Callable[[Any], int]) -> None:
        super().__init__(max_inflight=client._batch_inflight, max_items=BATCH_MAX_ITEMS,
                         max_bytes=BATCH_MAX_BYTES, size_of=size_of)
        self._client = client
        self._node_id = node_id

    def _body(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> list[bytes | memoryview]:
        raise NotImplementedError

    def _resolve(self, batch: list[tuple[Any, asyncio.Future[Any]]], answer: bytes) -> None:
        """Give each waiter its fragment's outcome from the answer body (or raise
        ``BatchFormatError``)."""
        raise NotImplementedError

    def _dispatch(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        client = self._client
        try:
            host, port = client._host_port(self._node_id)
            body = self._body(batch)
        except Exception as exc:  # noqa: BLE001 - fails this batch (unknown node, bad URL)
            self._answered(batch, exc)
            return
        client._batches.start(host, port, self.path, body, client._batch_timeout,
                              functools.partial(self._answered, batch))

    def _answered(self, batch: list[tuple[Any, asyncio.Future[Any]]], outcome: Outcome
                  ) -> None:
        node_id = self._node_id
        try:
            if isinstance(outcome, BaseException):
                self._fail(batch, outcome if isinstance(
                    outcome, NodeRequestError | asyncio.CancelledError)
                    else _map_exception(node_id, outcome))
            elif outcome[0] != 200:
                status, answer = outcome
                self._fail(batch, NodeRequestError(
                    node_id, "rejected",
                    f"HTTP {status}: {answer[:200].decode(errors='replace')}"))
            else:
                try:
                    self._resolve(batch, outcome[1])
                except batch_wire.BatchFormatError as exc:
                    self._fail(batch, NodeRequestError(node_id, "rejected",
                                                       f"bad batch answer: {exc}"))
        except Exception as exc:  # noqa: BLE001 - a bug: every waiter still gets an answer
            self._fail(batch, exc)
        finally:
            self._batch_over(batch)


class _StoreLane(_Lane):
    path = "/fragments/batch"

    def __init__(self, client: NodeClient, node_id: str) -> None:
        super().__init__(client, node_id, lambda item: len(item.payload))

    def _body(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> list[bytes | memoryview]:
        # the queued items are the wire's own StoreItems
        return batch_wire.encode_store([item for item, _future in batch])

    def _resolve(self, batch: list[tuple[Any, asyncio.Future[Any]]], answer: bytes) -> None:
        node_id = self._node_id
        entries = batch_wire.decode_stored_tuples(answer, len(batch))
        for (item, future), (status, volume, offset, length) in zip(batch, entries,
                                                                    strict=True):
            if future.done():
                continue
            if status != _OK:
                future.set_exception(NodeRequestError(node_id, "rejected", batch_wire.KIND.get(
                    status, f"status {status}")))
            elif length != len(item.payload):
                future.set_exception(NodeRequestError(
                    node_id, "rejected", f"stored {length} of {len(item.payload)} bytes"))
            else:
                future.set_result(FragmentLocation(node_id, volume, offset, length,
                                                   item.crc32))


class _FetchLane(_Lane):
    path = "/fragments/read"

    def __init__(self, client: NodeClient, node_id: str) -> None:
        super().__init__(client, node_id, lambda item: item.location.length)

    def _body(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> list[bytes | memoryview]:
        return [b"".join([item.frame for item, _future in batch])]

    def _resolve(self, batch: list[tuple[Any, asyncio.Future[Any]]], answer: bytes) -> None:
        node_id = self._node_id
        entries = batch_wire.decode_fetched_tuples(answer, len(batch))
        for (item, future), (status, body) in zip(batch, entries, strict=True):
            if future.done():
                continue
            if status == _OK:
                # verified against the CRC-32 taken when it was written (``_verified``)
                location = item.location
                if len(body) == location.length and zlib.crc32(body) == location.checksum:
                    future.set_result(body)
                else:
                    future.set_exception(NodeRequestError(
                        node_id, "corrupt", "fragment checksum differs from metadata"))
                continue
            kind = batch_wire.KIND.get(status, f"status {status}")
            failure = _FETCH_FAILURE.get(status, "rejected")
            # A corrupt fragment's detail is the node's error kind, as X-Fragment-Error was.
            future.set_exception(NodeRequestError(
                node_id, failure, kind if failure == "corrupt" else
                f"{kind}: {body.decode(errors='replace')}"))


def _verified(location: FragmentLocation, payload: bytes) -> bytes:
    if len(payload) != location.length or zlib.crc32(payload) != location.checksum:
        raise NodeRequestError(location.node_id, "corrupt",
                               "fragment checksum differs from metadata")
    return payload


@contextlib.contextmanager
def _node_errors(node_id: str) -> Iterator[None]:
    """Any failure of one request to ``node_id`` as a ``NodeRequestError``."""
    try:
        yield
    except NodeRequestError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped below, never leaks
        raise _map_exception(node_id, exc) from exc


async def _expect_ok(node_id: str, resp: aiohttp.ClientResponse) -> None:
    if resp.status != 200:
        raise NodeRequestError(node_id, "rejected",
                               f"HTTP {resp.status}: {(await resp.text())[:200]}")


def _map_exception(node_id: str, exc: BaseException) -> NodeRequestError:
    if isinstance(exc, TimeoutError):
        return NodeRequestError(node_id, "timeout", "no answer in time")
    if isinstance(exc, aiohttp.ClientConnectionError | OSError):
        return NodeRequestError(node_id, "unreachable", repr(exc))
    if isinstance(exc, aiohttp.ClientError | ValueError):
        return NodeRequestError(node_id, "rejected", repr(exc))
    if isinstance(exc, Exception):
        return NodeRequestError(node_id, "rejected", repr(exc))
    raise exc
