"""A scriptable HTTP origin for cache tests: answers what the test sets, counts what it saw.

Each path has a ``Script`` (status, headers, body, optional chunking and delays). The origin
answers ``If-None-Match`` with 304 when the script's ETag matches (like a real origin would),
a ``Range`` GET of a 200 with a single range with 206 and ``Content-Range`` (416 when
unsatisfiable; several ranges get the whole body; ``ranges=False`` ignores Range), stamps
``Date`` from the test's clock, and records every request (method, target, headers, body)
so tests can assert on exactly what reached it. ``on_request`` runs before each answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from httpcache.conditional import if_none_match_passes
from httpcache.dates import format_http_date
from httpcache.ranges import ByteRange, Unsatisfiable, parse_ranges


@dataclass
class Script:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunk_size: int = 0  # > 0: stream the body in chunks of this size
    chunk_delay: float = 0.0  # pause between chunks
    head_delay: float = 0.0  # pause before answering at all
    conditional: bool = True  # answer If-None-Match with 304
    release: asyncio.Event | None = None  # wait for this before the last chunk
    abort_after: int | None = None  # cut the connection after this many body bytes
    arrived: asyncio.Event | None = None  # set when a request for this path arrives
    ranges: bool = True  # answer a single-range GET with 206 + Content-Range (416 if none)
    hang_up: bool = False  # close the connection without answering


@dataclass(frozen=True)
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class ScriptableOrigin:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.scripts: dict[str, Script] = {}
        self.seen: list[Seen] = []
        self.on_request: Callable[[Seen], None] | None = None  # e.g. change a script mid-test
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    def set(self, path: str, body: bytes = b"", status: int = 200, **kwargs: object) -> Script:
        script = Script(status=status, body=body, **kwargs)  # type: ignore[arg-type]
        self.scripts[path] = script
        return script

    def count(self, path: str | None = None, method: str | None = None) -> int:
        return sum(1 for s in self.seen
                   if (path is None or s.target.split("?")[0] == path)
                   and (method is None or s.method == method))

    def ranges_seen(self, path: str) -> list[str | None]:
        """The Range field of each request for ``path``, in order."""
        return [s.headers.get("Range") for s in self.seen if s.target.split("?")[0] == path]

    def last(self, path: str) -> Seen:
        return [s for s in self.seen if s.target.split("?")[0] == path][-1]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(request.method, request.raw_path, dict(request.headers), body)
        self.seen.append(seen)
        if self.on_request is not None:
            self.on_request(seen)
        script = self.scripts.get(request.path)
        if script is None:
            return web.Response(status=404, text="no script\n",
                                headers={"Date": format_http_date(self.clock())})
        if script.arrived is not None:
            script.arrived.set()
        if script.hang_up:
            assert request.transport is not None
            request.transport.close()
            return web.Response()  # written to a closed transport: nothing goes out
        if script.head_delay:
            await asyncio.sleep(script.head_delay)
        headers = {"Date": format_http_date(self.clock()), **script.headers}
        inm = request.headers.get("If-None-Match")
        etag = script.headers.get("ETag")
        if script.conditional and inm is not None and not if_none_match_passes(inm, etag):
            keep = {k: v for k, v in headers.items()
                    if k.lower() in ("date", "etag", "cache-control", "expires", "vary",
                                     "last-modified", "surrogate-key", "cdn-cache-control",
                                     "content-length", "set-cookie")
                    or k.lower().startswith("x-")}
            return web.Response(status=304, headers=keep)
        status, data = script.status, script.body
        requested = request.headers.get("Range")
        if script.ranges and requested and request.method == "GET" and status == 200:
            match parse_ranges(requested, len(data)):
                case Unsatisfiable() as bad:
                    headers["Content-Range"] = bad.content_range()
                    return web.Response(status=416, headers=headers)
                case [ByteRange() as part]:
                    headers["Content-Range"] = part.content_range()
                    status, data = 206, data[part.first:part.last + 1]
        if not script.chunk_size:
            return web.Response(status=status, body=data, headers=headers)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(data)
        await response.prepare(request)
        if request.method != "HEAD":
            for start in range(0, len(data), script.chunk_size):
                if script.release is not None and start + script.chunk_size >= len(data):
                    await script.release.wait()
                if script.abort_after is not None and start >= script.abort_after:
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write(data[start:start + script.chunk_size])
                if script.chunk_delay:
                    await asyncio.sleep(script.chunk_delay)
        await response.write_eof()
        return response


class FakeClock:
    """Wall-clock time the test moves forward by hand (shared by origin, shield and edge)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(start if start is not None else time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
