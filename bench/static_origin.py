"""A tiny origin we control: ``GET /{size}/{anything}`` → ``size`` bytes, cacheable.

The body of a size is the same for every path (``body(size)``), so a client can check it
byte for byte. ``GET /_count`` returns how many GETs each path received (the flash crowd
counts origin fetches with it). ``--rate`` caps how fast one body is sent (bytes/s, 0 =
as fast as possible), so "streamed as it arrives" can be told from "sent after it completed".

    python bench/static_origin.py --port 9999 [--rate 100e6]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time

from aiohttp import web

CHUNK = 256 * 1024
_bodies: dict[int, bytes] = {}


def body(size: int) -> bytes:
    """A deterministic, non-repeating-looking body of ``size`` bytes."""
    if size not in _bodies:
        block = bytes((i * 131 + (i >> 8) * 7) & 0xFF for i in range(65536))
        _bodies[size] = (block * (size // len(block) + 1))[:size]
    return _bodies[size]


def build_app(rate: float) -> web.Application:
    counts: collections.Counter[str] = collections.Counter()
    modified = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 3600))

    async def count(_request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(counts), content_type="application/json")

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def serve(request: web.Request) -> web.StreamResponse:
        try:
            size = int(request.match_info["size"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if request.method == "GET":
            counts[request.path] += 1
        headers = {"Cache-Control": "public, max-age=3600", "Content-Type":
                   "application/octet-stream", "ETag": f'"s{size}"', "Last-Modified": modified}
        data = body(size)
        if not rate or request.method == "HEAD":
            return web.Response(body=data, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_length = size
        await response.prepare(request)
        start = time.monotonic()
        for offset in range(0, size, CHUNK):
            await response.write(data[offset:offset + CHUNK])
            ahead = (offset + CHUNK) / rate - (time.monotonic() - start)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/_count", count)
    app.router.add_get("/_health", health)
    app.router.add_route("GET", "/{size}/{tail:.*}", serve)
    app.router.add_route("HEAD", "/{size}/{tail:.*}", serve)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="bytes/s per body; 0 = no cap")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(build_app(args.rate), host="127.0.0.1", port=args.port, access_log=None,
                print=None)


if __name__ == "__main__":
    main()
