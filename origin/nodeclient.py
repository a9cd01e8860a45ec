"""The origin's HTTP client for storage nodes: store one fragment, read one fragment back.

Every aiohttp exception and every non-200 answer becomes a ``NodeRequestError`` naming the node
and what went wrong, so the data path decides (count a failed slot, fall back to parity) without
knowing about aiohttp. One ``ClientSession`` with keep-alive connections is shared by all
requests of the process.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Literal

import aiohttp

from origin.config import NodeSpec
from origin.layout import FragmentLocation

FailureKind = Literal["unreachable", "timeout", "rejected", "corrupt", "not-found"]


class NodeRequestError(Exception):
    """One request to one storage node failed; ``kind`` says how."""

    def __init__(self, node_id: str, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{node_id}: {kind}: {detail}")
        self.node_id = node_id
        self.kind = kind
        self.detail = detail

    @property
    def node_is_down(self) -> bool:
        """Whether the failure says something about the node rather than about one record."""
        return self.kind in ("unreachable", "timeout")


class NodeClient:
    """Talks to the configured storage nodes over one shared keep-alive session."""

    def __init__(
        self, session: aiohttp.ClientSession, nodes: Mapping[str, NodeSpec], timeout: float
    ) -> None:
        self._session = session
        self._nodes = dict(nodes)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 2.0))
        self._probe_timeout = aiohttp.ClientTimeout(total=min(timeout, 2.0))

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

    # -- maintenance calls of the background workers ------------------------------------------

    async def _json(self, method: str, node_id: str, path: str, *,
                    params: dict[str, str] | None = None, body: object = None,
                    timeout: aiohttp.ClientTimeout | None = None,  # noqa: ASYNC109
                    ) -> dict:
        spec = self._nodes.get(node_id)
        if spec is None:
            raise NodeRequestError(node_id, "unreachable", "node not configured")
        try:
            async with self._session.request(method, spec.url + path, params=params,
                                              json=body, timeout=timeout or self._timeout
                                              ) as resp:
                if resp.status == 404:
                    raise NodeRequestError(node_id, "not-found", await resp.text())
                if resp.status != 200:
                    raise NodeRequestError(node_id, "rejected",
                                           f"HTTP {resp.status}: {(await resp.text())[:200]}")
                return await resp.json()
        except NodeRequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped below, never leaks
            raise _map_exception(node_id, exc) from exc

    async def list_volumes(self, node_id: str) -> list[dict]:
        """``[{"volume", "size", "active", "age"}]`` of one node."""
        return list((await self._json("GET", node_id, "/volumes"))["volumes"])

    async def scan_volume(self, node_id: str, volume: int, offset: int, max_bytes: int,
                          *, verify: bool) -> dict:
        """One page of a record walk: ``{"records": [...], "next_offset"}``."""
        return await self._json("GET", node_id, f"/volumes/{volume}/records", params={
            "offset": str(offset), "max_bytes": str(max_bytes), "verify": "1" if verify else "0"},
            timeout=aiohttp.ClientTimeout(total=max(60.0, self._timeout.total or 0)))

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
        url = f"{self._nodes[node_id].url}/fragments"
        checksum = zlib.crc32(payload)
        try:
            async with self._session.post(url, data=payload, timeout=self._timeout,
                                          headers={"X-Fragment-Id": fragment_id,
                                                   "Content-Type": "application/octet-stream"}
                                          ) as resp:
                if resp.status != 200:
                    raise NodeRequestError(node_id, "rejected",
                                           f"HTTP {resp.status}: {(await resp.text())[:200]}")
                answer = await resp.json()
        except NodeRequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped below, never leaks
            raise _map_exception(node_id, exc) from exc
        try:
            return FragmentLocation(node_id, int(answer["volume"]), int(answer["offset"]),
                                    int(answer["length"]), checksum)
        except (KeyError, TypeError, ValueError):
            raise NodeRequestError(node_id, "rejected", f"bad answer {answer!r}") from None

    async def get_fragment(self, location: FragmentLocation, fragment_id: str) -> bytes:
        """The fragment at ``location``, verified against the CRC-32 taken when it was written
        (the node verified its own record checksum too; this also covers the network and any
        node bug that hands back the wrong bytes)."""
        node_id = location.node_id
        spec = self._nodes.get(node_id)
        if spec is None:
            raise NodeRequestError(node_id, "unreachable", "node no longer configured")
        url = f"{spec.url}/volumes/{location.volume}/{location.offset}/{location.length}"
        try:
            async with self._session.get(url, timeout=self._timeout,
                                         headers={"X-Fragment-Id": fragment_id}) as resp:
                if resp.status == 404:
                    raise NodeRequestError(node_id, "not-found", await resp.text())
                if resp.status == 409:
                    kind = resp.headers.get("X-Fragment-Error", "corrupt")
                    raise NodeRequestError(node_id, "corrupt", kind)
                if resp.status != 200:
                    raise NodeRequestError(node_id, "rejected", f"HTTP {resp.status}")
                payload = await resp.read()
        except NodeRequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped below, never leaks
            raise _map_exception(node_id, exc) from exc
        if len(payload) != location.length or zlib.crc32(payload) != location.checksum:
            raise NodeRequestError(node_id, "corrupt", "fragment checksum differs from metadata")
        return payload

    async def probe(self, node_id: str) -> bool:
        """``GET /_health`` answered 200 within the probe timeout."""
        try:
            async with self._session.get(f"{self._nodes[node_id].url}/_health",
                                         timeout=self._probe_timeout) as resp:
                await resp.read()
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False


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
