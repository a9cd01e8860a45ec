"""Object handlers: PUT, GET, HEAD, DELETE on ``/{bucket}/{key}``.

Thin drivers: validation and header logic are pure functions (``names``, ``preconditions``,
``object_headers``), bytes go through ``ECWriter`` / ``ECReader``, rows through
``origin.metadata``. The order that makes a PUT safe is visible here: data first (``write``),
checks on the whole body (length, MD5, SHA-256) second, the metadata commit last.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import uuid

import aiohttp
from aiohttp import web

from origin.api.buckets import load_bucket
from origin.api.keys import CONFIG, METRICS, POOL, PRINCIPAL, READER, WRITER
from origin.api.names import check_key
from origin.api.object_headers import (
    content_md5,
    object_headers,
    quoted_etag,
    stored_fields,
    surrogate_keys,
    user_metadata,
    validator_headers,
)
from origin.api.paths import split_path
from origin.api.preconditions import (
    ByteRange,
    Outcome,
    evaluate_preconditions,
    parse_range,
    range_applies,
)
from origin.ec_writer import BodyReader
from origin.erasure import cached_scheme
from origin.errors import (
    BadDigest,
    ContentSHA256Mismatch,
    EntityTooLarge,
    IncompleteBody,
    InvalidArgument,
    NoSuchKey,
    NotImplementedYet,
    OriginError,
    PreconditionFailed,
)
from origin.metadata import objects as object_store
from origin.metadata.models import NewObject, ObjectRecord, StorageScheme

log = logging.getLogger("cdn.origin.api")


# Object sub-resources later work implements (multipart, tagging, ACLs, …): refused clearly
# rather than answered as if the plain object had been asked for.
_UNSUPPORTED_SUBRESOURCES = frozenset({
    "acl", "attributes", "legal-hold", "partNumber", "restore", "retention", "select",
    "tagging", "torrent", "uploadId", "uploads", "versionId",
})
# GET parameters that override response headers (S3 honours them on signed requests only).
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def _reject_subresources(request: web.Request) -> None:
    found = _UNSUPPORTED_SUBRESOURCES.intersection(request.query)
    if found:
        raise NotImplementedYet(f"?{sorted(found)[0]} is not implemented yet")


def _bucket_and_key(request: web.Request) -> tuple[str, str]:
    bucket, key = split_path(request.raw_path)
    assert key is not None  # the router only sends /{bucket}/{key} here
    check_key(bucket, key)
    return bucket, key


def body_reader(request: web.Request) -> BodyReader:
    """``read(n)``: exactly n bytes of the request body, fewer only at its end."""

    async def read(n: int) -> bytes:
        try:
            return await request.content.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise IncompleteBody(f"the request body ended early: {exc}") from exc

    return read


def _declared_length(request: web.Request, max_size: int) -> int | None:
    raw = request.headers.get("Content-Length")
    if raw is None:
        return None
    try:
        length = int(raw)
    except ValueError:
        raise InvalidArgument("Content-Length is not an integer") from None
    if length > max_size:
        raise EntityTooLarge(f"Content-Length {length} exceeds the maximum object size "
                             f"{max_size}")
    return length


async def put_object(request: web.Request) -> web.Response:
    bucket_name, key = _bucket_and_key(request)
    if "x-amz-copy-source" in request.headers:
        raise NotImplementedYet("CopyObject is not implemented yet")
    _reject_subresources(request)
    bucket = await load_bucket(request, bucket_name, "write")
    config = request.app[CONFIG]
    declared = _declared_length(request, config.max_object_size)
    expected_md5 = content_md5(request.headers.get("Content-MD5"))
    metadata = user_metadata(request.headers.items())
    principal = request[PRINCIPAL]
    declared_sha256 = principal.payload_sha256 if principal else None

    writer = request.app[WRITER]
    object_id = str(uuid.uuid4())
    written = await writer.write(object_id, body_reader(request),
                                 max_size=config.max_object_size,
                                 want_sha256=declared_sha256 is not None)
    if declared is not None and written.size != declared:
        raise IncompleteBody(f"received {written.size} of {declared} bytes")
    if expected_md5 is not None and binascii.hexlify(expected_md5).decode() != written.md5_hex:
        raise BadDigest()
    if declared_sha256 is not None and written.sha256_hex != declared_sha256:
        raise ContentSHA256Mismatch()

    scheme = writer.scheme
    record = await object_store.commit_object(
        request.app[POOL],
        NewObject(id=object_id, bucket=bucket.name, key=key, size=written.size,
                  etag=written.md5_hex,
                  scheme=StorageScheme(scheme.ec_type, scheme.ndata, scheme.nparity,
                                       scheme.segment_size),
                  surrogate_keys=surrogate_keys(
                      request.headers.get("Surrogate-Key")
                      # S3 SDKs cannot send arbitrary headers, but they can send metadata.
                      or request.headers.get("x-amz-meta-surrogate-key")),
                  metadata=metadata, missing_fragments=written.missing_fragments,
                  **stored_fields(request.headers)),  # type: ignore[arg-type]
        written.fragments)
    request.app[METRICS].bytes_in.inc(written.size)
    return web.Response(status=200, headers={"ETag": quoted_etag(record.etag)})


async def delete_object(request: web.Request) -> web.Response:
    bucket_name, key = _bucket_and_key(request)
    _reject_subresources(request)
    bucket = await load_bucket(request, bucket_name, "write")
    await object_store.delete_object(request.app[POOL], bucket.name, key)
    return web.Response(status=204)


async def _load_object(request: web.Request) -> ObjectRecord:
    bucket_name, key = _bucket_and_key(request)
    bucket = await load_bucket(request, bucket_name, "read")
    obj = await object_store.get_object(request.app[POOL], bucket.name, key)
    if obj is None:
        raise NoSuchKey(resource=f"/{bucket_name}/{key}")
    return obj


def _requested_range(request: web.Request, obj: ObjectRecord) -> ByteRange | None:
    header = request.headers.get("Range")
    if header is None or not range_applies(request.headers.get("If-Range"), obj.etag,
                                           obj.last_modified):
        return None
    return parse_range(header, obj.size)


async def get_object(request: web.Request) -> web.StreamResponse:
    """GET and HEAD: validators and conditionals first, then headers, then (GET) the body."""
    _reject_subresources(request)
    obj = await _load_object(request)
    outcome = evaluate_preconditions(request.method, request.headers, obj.etag,
                                     obj.last_modified)
    if outcome is Outcome.NOT_MODIFIED:
        return web.Response(status=304, headers=validator_headers(obj))
    if outcome is Outcome.PRECONDITION_FAILED:
        raise PreconditionFailed()
    byte_range = _requested_range(request, obj)
    headers = object_headers(obj)
    if request[PRINCIPAL] is not None:
        for param, header in RESPONSE_OVERRIDES.items():
            if param in request.query:
                headers[header] = request.query[param]
    status = 200
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = byte_range.content_range(obj.size)
    length = byte_range.length if byte_range else obj.size
    if request.method == "HEAD" or length == 0:
        # A StreamResponse keeps our Content-Length (a HEAD must announce the GET's length).
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = length
        await response.prepare(request)
        await response.write_eof()
        return response
    first, last = (byte_range.first, byte_range.last) if byte_range else (0, obj.size - 1)
    return await _stream_object(request, obj, status, headers, first, last)


async def _stream_object(
    request: web.Request, obj: ObjectRecord, status: int, headers: dict[str, str],
    first: int, last: int,
) -> web.StreamResponse:
    """Decode and send bytes ``first..last``. The first segment is read before any header is
    sent, so a read that cannot even start still gets a proper 503 document; a failure later
    aborts the connection (the client sees a short body, never wrong bytes)."""
    s = obj.scheme
    scheme = cached_scheme(s.ndata, s.nparity, s.segment_size, s.ec_type)
    pool = request.app[POOL]

    async def load_map(first_segment: int, last_segment: int):  # noqa: ANN202
        return await object_store.get_fragments(pool, obj.id, first_segment, last_segment)

    slices = scheme.segment_slices(obj.size, first, last)
    chunks = request.app[READER].stream(obj.id, scheme, obj.size, slices, load_map)
    metrics = request.app[METRICS]
    async with contextlib.aclosing(chunks):
        chunk = await anext(chunks)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = last - first + 1
        await response.prepare(request)
        try:
            await response.write(chunk)
            metrics.bytes_out.inc(len(chunk))
            async for chunk in chunks:
                await response.write(chunk)
                metrics.bytes_out.inc(len(chunk))
        except OriginError as exc:
            log.error("aborting GET /%s/%s after headers were sent: %s", obj.bucket, obj.key,
                      exc)
            if request.transport is not None:
                request.transport.close()
            return response
        except (ConnectionError, asyncio.CancelledError):
            raise  # the client went away; aclosing() cancels the read-ahead
        await response.write_eof()
    return response
