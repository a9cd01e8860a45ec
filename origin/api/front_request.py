"""A request parsed by the origin's protocol-level front (``origin.api.front``), as the S3
middleware and the object handlers read it.

The front answers plain object GETs and PUTs without aiohttp, but not with code of its own:
it runs the very middleware and handlers aiohttp runs (``middleware.s3_middleware``,
``objects.get_object`` / ``put_object``), so authentication, checks, errors and metrics cannot
differ between the two paths. Those functions read only a few things of a request; this class
offers exactly those: ``app``, ``method``, ``path`` / ``raw_path``, ``headers``, ``query``
(always empty: the front takes no query string), ``content`` and ``read()`` (the body,
already read whole: the front only takes bodies up to ``front_max_body``), ``transport`` and
the per-request values kept under ``web.RequestKey``s.

What it cannot do is send a streamed answer (``web.StreamResponse.prepare`` needs aiohttp's
writer). A handler about to stream calls ``must_stream(request)``; for a front request that
raises ``StreamingNeeded`` and the front gives the request, from its first byte, to aiohttp,
which answers it again from the start. Only GETs are given back (running them twice changes
nothing); this happens for objects of more than one segment and empty ones.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDict, MultiDictProxy

_NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())


class StreamingNeeded(Exception):
    """The answer must be streamed: only aiohttp can send it (see the module docstring)."""


class BufferedBody:
    """``request.content`` over a body that has been read whole (``IncomingBody`` calls
    ``readexactly`` for plain bodies and ``read`` for aws-chunked ones)."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    async def read(self, n: int = -1) -> bytes:
        data, pos = self._data, self._pos
        if pos == 0 and (n < 0 or n >= len(data)):
            self._pos = len(data)
            return data  # the common case, a whole small body: no copy
        end = len(data) if n < 0 else min(len(data), pos + n)
        self._pos = end
        return data[pos:end]

    async def readexactly(self, n: int) -> bytes:
        data = await self.read(n)
        if len(data) < n:
            raise asyncio.IncompleteReadError(data, n)
        return data


class FrontRequest:
    """One GET or PUT on ``/{bucket}/{key}`` read by the front (see the module docstring)."""

    __slots__ = ("app", "method", "raw_path", "headers", "content", "transport", "_values")

    query = _NO_QUERY

    def __init__(self, app: web.Application, method: str, raw_path: str,
                 headers: CIMultiDictProxy[str], body: bytes,
                 transport: asyncio.Transport | None) -> None:
        self.app = app
        self.method = method
        self.raw_path = raw_path
        self.headers = headers
        self.content = BufferedBody(body)
        self.transport = transport
        self._values: dict[Any, Any] = {}

    @property
    def path(self) -> str:
        return unquote(self.raw_path)

    async def read(self) -> bytes:
        """The whole body (``web.Request.read``; the object handlers stream it instead)."""
        return await self.content.read()

    def __getitem__(self, key: web.RequestKey[Any]) -> Any:
        return self._values[key]

    def __setitem__(self, key: web.RequestKey[Any], value: Any) -> None:
        self._values[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def get(self, key: web.RequestKey[Any], default: Any = None) -> Any:
        return self._values.get(key, default)


def must_stream(request: web.Request) -> None:
    """Called by a handler just before it prepares a streamed answer: a request read by the
    front is then answered by aiohttp instead (``StreamingNeeded``)."""
    if isinstance(request, FrontRequest):
        raise StreamingNeeded
