"""Multipart upload handlers: create, upload part (and part copy), list parts, complete,
abort, list uploads.

Each part is stored erasure-coded as its own blob the moment it arrives. Completion checks
the part list (``origin.multipart.check_completion``) and commits the object row together
with links to the chosen parts: no byte is read or written again.
"""

from __future__ import annotations

import contextlib
import re
import uuid

from aiohttp import web

from origin import checksums
from origin.api import s3xml, s3xml_in
from origin.api.buckets import load_bucket
from origin.api.keys import METRICS, POOL, PRINCIPAL, WRITER
from origin.api.object_data import StoredData, requested_class, store_body, write_blob
from origin.api.object_headers import object_attributes, quoted_etag
from origin.errors import AccessDenied, InvalidArgument, InvalidRange, NoSuchUpload
from origin.metadata import multipart as upload_store
from origin.metadata import objects as object_store
from origin.metadata.models import Bucket, NewObject, StorageScheme
from origin.multipart import check_completion, check_part_number, multipart_etag
from origin.storage_class import STANDARD

MAX_PARTS_LISTED = 1000
_COPY_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


def _xml(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=s3xml.CONTENT_TYPE)


def upload_class(upload: upload_store.Upload) -> str:
    """The storage class an upload was initiated with (STANDARD for older uploads)."""
    return str(upload.attributes.get("storage_class") or STANDARD)


async def _upload(request: web.Request, bucket: Bucket, key: str) -> upload_store.Upload:
    upload = await upload_store.get_upload(request.app[POOL], bucket.name, key,
                                           request.query["uploadId"])
    principal = request[PRINCIPAL]
    if principal is None or (upload.owner != principal.owner and not principal.is_admin
                             and bucket.owner != principal.owner):
        raise AccessDenied()
    return upload


async def create_upload(request: web.Request, bucket_name: str, key: str) -> web.Response:
    bucket = await load_bucket(request, bucket_name, "write")
    attributes = object_attributes(request.headers)
    algorithm = request.headers.get("x-amz-checksum-algorithm")
    if algorithm:
        if algorithm.upper() not in checksums.ALGORITHMS:
            raise InvalidArgument(f"x-amz-checksum-algorithm {algorithm!r} is not supported")
        attributes["checksum_algorithm"] = algorithm.upper()
    # S3 takes the class at initiation; every part and the object are stored in it.
    attributes["storage_class"] = requested_class(request).name
    upload_id = uuid.uuid4().hex
    principal = request[PRINCIPAL]
    assert principal is not None  # load_bucket(write) refuses anonymous callers
    await upload_store.create_upload(request.app[POOL], upload_id, bucket.name, key,
                                     principal.owner, attributes)
    headers = {}
    if algorithm:
        headers["x-amz-checksum-algorithm"] = algorithm.upper()
    response = _xml(s3xml.initiate_multipart_document(bucket.name, key, upload_id))
    response.headers.update(headers)
    return response


def _part_object(bucket: Bucket, key: str, part_id: str, data: StoredData) -> NewObject:
    return NewObject(id=part_id, bucket=bucket.name, key=key, size=data.size,
                     etag=data.md5_hex, content_type="", scheme=data.scheme,
                     missing_fragments=data.missing_fragments)


async def upload_part(request: web.Request, bucket_name: str, key: str) -> web.Response:
    number = check_part_number(request.query.get("partNumber", ""))
    bucket = await load_bucket(request, bucket_name, "write")
    upload = await _upload(request, bucket, key)
    if upload.completed is not None:
        raise NoSuchUpload()
    part_id = str(uuid.uuid4())
    if "x-amz-copy-source" in request.headers:
        return await _upload_part_copy(request, bucket, key, upload, number, part_id)
    data = await store_body(request, part_id, request[PRINCIPAL], upload_class(upload))
    await upload_store.commit_part(request.app[POOL], upload.upload_id, number,
                                   _part_object(bucket, key, part_id, data), data.fragments)
    request.app[METRICS].bytes_in.inc(data.size)
    headers = {"ETag": quoted_etag(data.md5_hex)}
    if data.checksum:
        headers[checksums.header_name(data.checksum[0])] = data.checksum[1]
    return web.Response(status=200, headers=headers)


async def _upload_part_copy(request: web.Request, bucket: Bucket, key: str,
                            upload: upload_store.Upload, number: int,
                            part_id: str) -> web.Response:
    from origin.api.objects import load_copy_source, source_reader

    source = await load_copy_source(request)
    first, last = 0, source.size - 1
    wanted = request.headers.get("x-amz-copy-source-range")
    if wanted:
        match = _COPY_RANGE.match(wanted.strip())
        if not match or int(match[1]) > int(match[2]) or int(match[2]) >= source.size:
            raise InvalidRange(object_size=source.size)
        first, last = int(match[1]), int(match[2])
    read, chunks = source_reader(request.app, source, first, last)
    async with contextlib.aclosing(chunks):
        data, _sha = await write_blob(request, part_id, read,
                                      storage_class=upload_class(upload))
    await upload_store.commit_part(request.app[POOL], upload.upload_id, number,
                                   _part_object(bucket, key, part_id, data), data.fragments)
    return _xml(s3xml.copy_result_document(data.md5_hex, upload.initiated, part=True))


async def list_parts(request: web.Request, bucket_name: str, key: str) -> web.Response:
    bucket = await load_bucket(request, bucket_name, "read")
    upload = await _upload(request, bucket, key)
    try:
        marker = int(request.query.get("part-number-marker", "0"))
        max_parts = min(int(request.query.get("max-parts", MAX_PARTS_LISTED)),
                        MAX_PARTS_LISTED)
    except ValueError:
        raise InvalidArgument("part-number-marker and max-parts are integers") from None
    parts = await upload_store.list_parts(request.app[POOL], upload.upload_id, after=marker,
                                          limit=max_parts + 1)
    return _xml(s3xml.list_parts_document(
        bucket=bucket.name, key=key, upload_id=upload.upload_id, owner=upload.owner,
        parts=parts[:max_parts], marker=marker, max_parts=max_parts,
        storage_class=upload_class(upload),
        truncated=len(parts) > max_parts))


def _completed_response(bucket: Bucket, key: str, result: dict[str, str]) -> web.Response:
    response = _xml(s3xml.complete_multipart_document(f"/{bucket.name}/{key}", bucket.name,
                                                      key, result["etag"]))
    if result.get("version_id") not in (None, "null"):
        response.headers["x-amz-version-id"] = result["version_id"]
    return response


async def complete_upload(request: web.Request, bucket_name: str, key: str) -> web.Response:
    from origin.api.objects import version_for_write

    bucket = await load_bucket(request, bucket_name, "write")
    upload = await _upload(request, bucket, key)
    if upload.completed is not None:  # completing again answers the same
        return _completed_response(bucket, key, upload.completed)
    requested = s3xml_in.parse_complete_multipart(await request.read())
    pool = request.app[POOL]
    uploaded = upload_store.uploaded_parts(await upload_store.list_parts(pool, upload.upload_id))
    chosen = check_completion(requested, uploaded)
    etag = multipart_etag([p.etag for p in chosen])
    attributes = dict(upload.attributes)
    attributes.pop("checksum_algorithm", None)
    from origin.api.object_headers import new_object_fields

    s = request.app[WRITER].scheme
    obj = NewObject(id=str(uuid.uuid4()), bucket=bucket.name, key=key,
                    size=sum(p.size for p in chosen), etag=etag,
                    scheme=StorageScheme(s.ec_type, s.ndata, s.nparity, s.segment_size),
                    part_count=len(chosen), version_id=version_for_write(bucket),
                    **new_object_fields(attributes))
    try:
        record = await object_store.commit_object(
            pool, obj, {}, also=upload_store.link_parts(upload.upload_id, chosen,
                                                        {"etag": etag}))
    except upload_store.UploadAlreadyCompleted:
        upload = await upload_store.get_upload(pool, bucket.name, key, upload.upload_id)
        assert upload.completed is not None
        return _completed_response(bucket, key, upload.completed)
    return _completed_response(bucket, key, {"etag": etag, "version_id": record.version_id})


async def abort_upload(request: web.Request, bucket_name: str, key: str) -> web.Response:
    bucket = await load_bucket(request, bucket_name, "write")
    upload = await _upload(request, bucket, key)
    if not await upload_store.abort_upload(request.app[POOL], upload.upload_id):
        raise NoSuchUpload()
    return web.Response(status=204)


async def list_uploads(request: web.Request, bucket: Bucket) -> web.Response:
    query = request.query
    prefix = query.get("prefix", "")
    key_marker = query.get("key-marker", "")
    upload_id_marker = query.get("upload-id-marker", "")
    try:
        max_uploads = min(int(query.get("max-uploads", "1000")), 1000)
    except ValueError:
        raise InvalidArgument("max-uploads is an integer") from None
    uploads = await upload_store.list_uploads(request.app[POOL], bucket.name, prefix=prefix,
                                              key_marker=key_marker,
                                              upload_id_marker=upload_id_marker,
                                              limit=max_uploads)
    return _xml(s3xml.list_uploads_document(
        bucket=bucket.name, uploads=uploads[:max_uploads], prefix=prefix,
        key_marker=key_marker, upload_id_marker=upload_id_marker, max_uploads=max_uploads,
        truncated=len(uploads) > max_uploads))
