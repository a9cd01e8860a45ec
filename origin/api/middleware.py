"""The one middleware every S3 request goes through.

It gives the request an id (sent back as ``x-amz-request-id`` on every response, errors
included), authenticates it (SigV4 or anonymous), counts it, and turns any exception into an
S3 ``<Error>`` document: our ``OriginError``s with their own status and code, aiohttp's HTTP
exceptions mapped to the nearest S3 code, anything else into ``InternalError`` (logged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from random import getrandbits

from aiohttp import web

from origin.api import auth, s3xml
from origin.api.front_request import StreamingNeeded
from origin.api.keys import CONFIG, CREDENTIALS, METRICS, POOL, PRINCIPAL, REQUEST_ID
from origin.api.paths import resource, split_path
from origin.errors import (
    EntityTooLarge,
    InternalError,
    InvalidArgument,
    InvalidRange,
    MethodNotAllowed,
    OriginError,
    SignatureDoesNotMatch,
)
from origin.metadata.credentials import get_credential

log = logging.getLogger("cdn.origin.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths that are not S3 resources: no auth, not counted as S3 requests.
INTERNAL_PATHS = ("/_health", "/_metrics")


def new_request_id() -> str:
    # An id to find a request by in logs, not a secret: no getrandom() syscall per request.
    return f"{getrandbits(64):016X}"


def error_response(exc: OriginError, request: web.Request) -> web.Response:
    bucket, key = split_path(request.raw_path)
    body = s3xml.error_document(exc.code, exc.message, exc.resource or resource(bucket, key),
                                request.get(REQUEST_ID, ""))
    headers = {"Content-Type": s3xml.CONTENT_TYPE}
    if isinstance(exc, InvalidRange):
        headers["Content-Range"] = f"bytes */{exc.object_size}"
    headers.update(getattr(exc, "extra_headers", {}))  # e.g. x-amz-delete-marker
    if request.method == "HEAD":  # S3 answers HEAD errors with the status only
        return web.Response(status=exc.status, headers=headers)
    return web.Response(status=exc.status, body=body, headers=headers)


def _from_http_exception(exc: web.HTTPException) -> OriginError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed()
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return EntityTooLarge()
    if exc.status >= 500:
        return InternalError()
    error = InvalidArgument(exc.text or exc.reason)
    error.status = exc.status
    return error


@web.middleware
async def s3_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in INTERNAL_PATHS:
        return await handler(request)
    request[REQUEST_ID] = new_request_id()
    metrics = request.app[METRICS]
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        request[PRINCIPAL] = await _authenticate(request)
        response = await handler(request)
    except StreamingNeeded:
        raise  # read by the front; aiohttp answers it again from the start (front_request)
    except OriginError as exc:
        response = error_response(exc, request)
    except web.HTTPException as exc:
        response = error_response(_from_http_exception(exc), request)
    except ConnectionResetError:
        raise  # the client went away mid-response: nothing left to answer
    except Exception:  # noqa: BLE001 - the client gets InternalError, the log the details
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = error_response(InternalError(), request)
    metrics.count_request(request.method, response.status,
                          split_path(request.raw_path)[1] is not None,
                          time.perf_counter() - started)
    return response


async def _authenticate(request: web.Request) -> auth.Principal | None:
    """SigV4 with the credential from the per-process cache. A signature that does not match
    a cached secret is checked once more against the stored one (the key may have been
    rotated since it was cached), so only a revoked key can outlive its row, by the cache's
    TTL at most."""
    config = request.app[CONFIG]
    pool = request.app[POOL]
    cache = request.app[CREDENTIALS]
    raw_path, _sep, raw_query = request.raw_path.partition("?")
    parts = auth.RequestParts(request.method, raw_path, raw_query, request.headers.items(),
                              request.headers)
    from_cache: list[str] = []

    async def lookup(access_key: str):  # noqa: ANN202 - CredentialLookup
        now = time.monotonic()
        credential = cache.get(access_key, now)
        if credential is not None:
            from_cache.append(access_key)
            return credential
        credential = await get_credential(pool, access_key)
        if credential is not None:
            cache.put(access_key, credential, now)
        return credential

    now = datetime.now(UTC)
    try:
        return await auth.authenticate(parts, lookup, region=config.region, now=now,
                                       max_skew=config.max_clock_skew)
    except SignatureDoesNotMatch:
        if not from_cache:
            raise
    for access_key in from_cache:
        cache.discard(access_key)
    return await auth.authenticate(parts, lookup, region=config.region, now=now,
                                   max_skew=config.max_clock_skew)


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: also covers streamed responses, whose headers are sent
    before the middleware sees them again."""
    request_id = request.get(REQUEST_ID)
    if request_id:
        response.headers["x-amz-request-id"] = request_id
