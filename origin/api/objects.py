"""Object handlers on ``/{bucket}/{key}``: PutObject, CopyObject, GetObject/HeadObject,
DeleteObject (with versions), object tagging; multipart requests are passed on to
``origin.api.multipart``.

Thin drivers: validation and header logic are pure functions (``names``, ``preconditions``,
``object_headers``, ``s3xml``), bytes go through ``object_data``, rows through
``origin.metadata``. The order that makes a PUT safe is visible here: data first, checks on
the whole body second, the metadata commit last.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncGenerator
from urllib.parse import unquote

from aiohttp import web

from origin import checksums
from origin.api import multipart, s3xml, s3xml_in
from origin.api.buckets import load_bucket
from origin.api.front_request import must_stream
from origin.api.keys import KNOWN_VOLUMES, METRICS, POOL, PRINCIPAL
from origin.api.names import check_key
from origin.api.object_data import (
    StoredData,
    chunk_reader,
    object_chunks,
    requested_class,
    small_object_bytes,
    store_body,
    write_blob,
)
from origin.api.object_headers import (
    new_object_fields,
    object_attributes,
    object_headers,
    quoted_etag,
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
from origin.ec_reader import MAP_WINDOW
from origin.errors import (
    ClientError,
    InvalidArgument,
    MethodNotAllowed,
    NoSuchKey,
    NoSuchVersion,
    NotImplementedYet,
    OriginError,
    PreconditionFailed,
)
from origin.layout import FragmentMap
from origin.metadata import objects as object_store
from origin.metadata import versions
from origin.metadata.models import Bucket, NewObject, ObjectRecord

log = logging.getLogger("cdn.origin.api")

# Object sub-resources not implemented: refused clearly rather than answered as if the plain
# object had been asked for.
_UNSUPPORTED_SUBRESOURCES = frozenset({
    "acl", "attributes", "legal-hold", "restore", "retention", "select", "torrent",
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
COPY_CONDITIONS = {
    "x-amz-copy-source-if-match": "If-Match",
    "x-amz-copy-source-if-none-match": "If-None-Match",
    "x-amz-copy-source-if-modified-since": "If-Modified-Since",
    "x-amz-copy-source-if-unmodified-since": "If-Unmodified-Since",
}


def new_version_id() -> str:
    return uuid.uuid4().hex


def version_for_write(bucket: Bucket) -> str:
    """The version id a new object gets: a fresh one when versioning is enabled, else
    'null' (unversioned and suspended buckets)."""
    return new_version_id() if bucket.versioning == "Enabled" else "null"


def _reject_subresources(request: web.Request) -> None:
    found = _UNSUPPORTED_SUBRESOURCES.intersection(request.query)
    if found:
        raise NotImplementedYet(f"?{sorted(found)[0]} is not implemented yet")
    if "partNumber" in request.query and "uploadId" not in request.query:
        raise NotImplementedYet("GetObject ?partNumber is not implemented yet")


def bucket_and_key(request: web.Request) -> tuple[str, str]:
    bucket, key = split_path(request.raw_path)
    assert key is not None  # the router only sends /{bucket}/{key} here
    check_key(bucket, key)
    return bucket, key


def _version_headers(obj: ObjectRecord | None, version_id: str | None = None) -> dict[str, str]:
    vid = version_id or (obj.version_id if obj else None)
    return {"x-amz-version-id": vid} if vid and vid != "null" else {}


def committed_object(bucket: Bucket, key: str, object_id: str, data: StoredData,
                     attributes: dict[str, object], **extra: object) -> NewObject:
    fields = new_object_fields(attributes)
    return NewObject(id=object_id, bucket=bucket.name, key=key, size=data.size,
                     etag=data.md5_hex, scheme=data.scheme, checksum=data.checksum,
                     missing_fragments=data.missing_fragments,
                     storage_class=data.storage_class,
                     version_id=version_for_write(bucket), **{**fields, **extra})  # type: ignore[arg-type]


# -- PUT ---------------------------------------------------------------------------------------

async def put_object(request: web.Request) -> web.StreamResponse:
    bucket_name, key = bucket_and_key(request)
    _reject_subresources(request)
    if "uploadId" in request.query:
        return await multipart.upload_part(request, bucket_name, key)
    if "tagging" in request.query:
        return await set_tagging(request, bucket_name, key)
    if "x-amz-copy-source" in request.headers:
        return await copy_object(request, bucket_name, key)
    bucket = await load_bucket(request, bucket_name, "write")
    attributes = object_attributes(request.headers)
    object_id = str(uuid.uuid4())
    data = await store_body(request, object_id, request[PRINCIPAL])
    record = await object_store.commit_object(
        request.app[POOL], committed_object(bucket, key, object_id, data, attributes),
        data.fragments, known_volumes=request.app[KNOWN_VOLUMES])
    request.app[METRICS].bytes_in.inc(data.size)
    headers = {"ETag": quoted_etag(record.etag), **_version_headers(record)}
    if record.checksum:
        headers[checksums.header_name(record.checksum[0])] = record.checksum[1]
    return web.Response(status=200, headers=headers)


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """``/bucket/key?versionId=v`` (URL-encoded) → ``(bucket, key, version id)``."""
    path, _sep, query = value.partition("?")
    version_id = None
    for pair in query.split("&"):
        name, _eq, val = pair.partition("=")
        if name == "versionId":
            version_id = unquote(val)
    bucket, sep, key = unquote(path).lstrip("/").partition("/")
    if not bucket or not sep or not key:
        raise InvalidArgument("Copy Source must mention the source bucket and key: "
                              "sourcebucket/sourcekey")
    return bucket, key, version_id


async def load_copy_source(request: web.Request) -> ObjectRecord:
    bucket_name, key, version_id = parse_copy_source(request.headers["x-amz-copy-source"])
    bucket = await load_bucket(request, bucket_name, "read")
    obj = await _find_version(request, bucket, key, version_id)
    conditions = {COPY_CONDITIONS[n.lower()]: v for n, v in request.headers.items()
                  if n.lower() in COPY_CONDITIONS}
    if evaluate_preconditions("PUT", conditions, obj.etag, obj.last_modified) \
            is not Outcome.PROCEED:
        raise PreconditionFailed()
    return obj


def source_reader(app: web.Application, obj: ObjectRecord, first: int, last: int):  # noqa: ANN201
    """A ``BodyReader`` over bytes ``first..last`` of ``obj`` (and the generator to close)."""

    async def nothing() -> AsyncGenerator[bytes, None]:
        return
        yield b""  # pragma: no cover

    chunks = object_chunks(app, obj, first, last) if last >= first else nothing()
    return chunk_reader(chunks), chunks


async def copy_object(request: web.Request, bucket_name: str, key: str) -> web.Response:
    """CopyObject: the bytes are read back and stored anew (the copy is independent of its
    source's lifetime); metadata is copied or replaced per ``x-amz-metadata-directive``. The
    copy is in the class ``x-amz-storage-class`` names, STANDARD when absent (as in S3), so
    copying an object onto itself with another class changes its class."""
    bucket = await load_bucket(request, bucket_name, "write")
    source = await load_copy_source(request)
    directive = request.headers.get("x-amz-metadata-directive", "COPY").upper()
    tagging = request.headers.get("x-amz-tagging-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE") or tagging not in ("COPY", "REPLACE"):
        raise InvalidArgument("metadata and tagging directives are COPY or REPLACE")
    target_class = requested_class(request)
    if (source.bucket, source.key) == (bucket.name, key) and directive == "COPY" \
            and bucket.versioning is None and (
                "x-amz-storage-class" not in request.headers
                or target_class.name == source.storage_class):
        raise ClientError("This copy request is illegal because it is trying to copy an "
                          "object to itself without changing the object's metadata, storage "
                          "class, website redirect location or encryption attributes.")
    given = object_attributes(request.headers)
    if directive == "COPY":
        attributes: dict[str, object] = {
            "content_type": source.content_type, "cache_control": source.cache_control,
            "content_disposition": source.content_disposition,
            "content_encoding": source.content_encoding, "metadata": source.metadata,
            "surrogate_keys": list(source.surrogate_keys)}
    else:
        attributes = {k: v for k, v in given.items() if k != "tags"}
    attributes["tags"] = source.tags if tagging == "COPY" else given["tags"]
    object_id = str(uuid.uuid4())
    read, chunks = source_reader(request.app, source, 0, source.size - 1)
    async with contextlib.aclosing(chunks):
        data, _sha = await write_blob(request, object_id, read,
                                      storage_class=target_class.name)
    data = dataclasses.replace(data, checksum=source.checksum)
    record = await object_store.commit_object(
        request.app[POOL], committed_object(bucket, key, object_id, data, attributes),
        data.fragments, known_volumes=request.app[KNOWN_VOLUMES])
    headers = _version_headers(record)
    if source.version_id != "null":
        headers["x-amz-copy-source-version-id"] = source.version_id
    return web.Response(body=s3xml.copy_result_document(record.etag, record.last_modified),
                        content_type=s3xml.CONTENT_TYPE, headers=headers)


# -- tagging -----------------------------------------------------------------------------------

async def set_tagging(request: web.Request, bucket_name: str, key: str,
                      tags: dict[str, str] | None = None) -> web.Response:
    """PutObjectTagging (``tags`` from the body) or, with ``tags == {}``,
    DeleteObjectTagging (204)."""
    bucket = await load_bucket(request, bucket_name, "write")
    version_id = request.query.get("versionId")
    if tags is None:
        tags = s3xml_in.parse_tagging(await request.read())
        status = 200
    else:
        status = 204
    tagged = await versions.set_tags(request.app[POOL], bucket.name, key, version_id, tags)
    if tagged is None:
        raise _missing(bucket.name, key, version_id)
    return web.Response(status=status, headers=_version_headers(None, tagged))


async def get_tagging(request: web.Request, bucket_name: str, key: str) -> web.Response:
    bucket = await load_bucket(request, bucket_name, "read")
    obj = await _find_version(request, bucket, key, request.query.get("versionId"))
    return web.Response(body=s3xml.tagging_document(obj.tags), content_type=s3xml.CONTENT_TYPE,
                        headers=_version_headers(obj))


# -- DELETE ------------------------------------------------------------------------------------

async def delete_object(request: web.Request) -> web.Response:
    bucket_name, key = bucket_and_key(request)
    _reject_subresources(request)
    if "uploadId" in request.query:
        return await multipart.abort_upload(request, bucket_name, key)
    if "tagging" in request.query:
        return await set_tagging(request, bucket_name, key, {})
    bucket = await load_bucket(request, bucket_name, "write")
    outcome = await delete_key(request, bucket, key, request.query.get("versionId"))
    return web.Response(status=204, headers=outcome)


async def delete_key(request: web.Request, bucket: Bucket, key: str,
                     version_id: str | None) -> dict[str, str]:
    """Delete a key or one version; the response headers that describe what happened."""
    pool = request.app[POOL]
    headers: dict[str, str] = {}
    if version_id is not None:
        outcome = await versions.delete_version(pool, bucket.name, key, version_id)
        headers["x-amz-version-id"] = version_id
        if outcome is not None and outcome.delete_marker:
            headers["x-amz-delete-marker"] = "true"
        return headers
    outcome = await versions.delete_current(pool, bucket.name, key, bucket.versioning,
                                            new_version_id())
    if outcome.delete_marker:
        headers["x-amz-delete-marker"] = "true"
        headers["x-amz-version-id"] = outcome.version_id or "null"
    return headers


# -- POST --------------------------------------------------------------------------------------

async def post_object(request: web.Request) -> web.StreamResponse:
    bucket_name, key = bucket_and_key(request)
    if "uploads" in request.query:
        return await multipart.create_upload(request, bucket_name, key)
    if "uploadId" in request.query:
        return await multipart.complete_upload(request, bucket_name, key)
    raise MethodNotAllowed()


# -- GET / HEAD --------------------------------------------------------------------------------

def _missing(bucket: str, key: str, version_id: str | None) -> OriginError:
    if version_id is not None:
        return NoSuchVersion(resource=f"/{bucket}/{key}")
    return NoSuchKey(resource=f"/{bucket}/{key}")


async def _find_version(request: web.Request, bucket: Bucket, key: str,
                        version_id: str | None) -> ObjectRecord:
    """The asked-for version (latest by default) with data, or the S3 error for its
    absence: NoSuchKey (latest is a delete marker: 404 + x-amz-delete-marker), NoSuchVersion,
    MethodNotAllowed (that version is a delete marker)."""
    pool = request.app[POOL]
    if version_id is None:
        obj = await object_store.get_object(pool, bucket.name, key)
    else:
        obj = await versions.get_version(pool, bucket.name, key, version_id)
    return _found(obj, bucket, key, version_id)


def _found(obj: ObjectRecord | None, bucket: Bucket, key: str,
           version_id: str | None) -> ObjectRecord:
    """``obj`` if it is a version with data, else the S3 error ``_find_version`` documents."""
    if obj is None:
        raise _missing(bucket.name, key, version_id)
    if obj.delete_marker:
        error: OriginError = (NoSuchKey(resource=f"/{bucket.name}/{key}") if version_id is None
                              else MethodNotAllowed())
        error.extra_headers = {"x-amz-delete-marker": "true",  # type: ignore[attr-defined]
                               **_version_headers(obj)}
        raise error
    return obj


def _requested_range(request: web.Request, obj: ObjectRecord) -> ByteRange | None:
    header = request.headers.get("Range")
    if header is None or not range_applies(request.headers.get("If-Range"), obj.etag,
                                           obj.last_modified):
        return None
    return parse_range(header, obj.size)


async def get_object(request: web.Request) -> web.StreamResponse:
    """GET and HEAD: validators and conditionals first, then headers, then (GET) the body."""
    bucket_name, key = bucket_and_key(request)
    _reject_subresources(request)
    if "uploadId" in request.query and request.method == "GET":
        return await multipart.list_parts(request, bucket_name, key)
    if "tagging" in request.query and request.method == "GET":
        return await get_tagging(request, bucket_name, key)
    bucket = await load_bucket(request, bucket_name, "read")
    version_id = request.query.get("versionId")
    prefetched: FragmentMap | None = None
    if version_id is None and request.method == "GET":
        # The latest version and its first fragment map rows in one query.
        found, prefetched = await object_store.get_object_and_map(
            request.app[POOL], bucket.name, key, MAP_WINDOW)
        obj = _found(found, bucket, key, None)
    else:
        obj = await _find_version(request, bucket, key, version_id)
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
    if (obj.checksum and byte_range is None
            and request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"):
        headers[checksums.header_name(obj.checksum[0])] = obj.checksum[1]
    status = 200
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = byte_range.content_range(obj.size)
    length = byte_range.length if byte_range else obj.size
    if request.method == "HEAD" or length == 0:
        # A StreamResponse keeps our Content-Length (a HEAD must announce the GET's length).
        must_stream(request)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = length
        await response.prepare(request)
        await response.write_eof()
        return response
    first, last = (byte_range.first, byte_range.last) if byte_range else (0, obj.size - 1)
    return await _stream_object(request, obj, status, headers, first, last, prefetched)


async def _stream_object(
    request: web.Request, obj: ObjectRecord, status: int, headers: dict[str, str],
    first: int, last: int, prefetched: FragmentMap | None = None,
) -> web.StreamResponse:
    """Decode and send bytes ``first..last``. The first chunk is read before any header is
    sent, so a read that cannot even start still gets a proper 503 document; a failure later
    aborts the connection (the client sees a short body, never wrong bytes)."""
    metrics = request.app[METRICS]
    whole = await small_object_bytes(request.app, obj, first, last, prefetched)
    if whole is not None:  # one segment, read before any header is sent
        metrics.bytes_out.inc(len(whole))
        return web.Response(status=status, headers=headers, body=whole)
    must_stream(request)
    chunks = object_chunks(request.app, obj, first, last, prefetched)
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
