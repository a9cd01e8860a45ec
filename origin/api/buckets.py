"""Bucket handlers: list buckets, create, head, delete, list objects (V1 and V2)."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web

from origin.api import s3xml, s3xml_in
from origin.api.auth import Action, authorize
from origin.api.keys import BUCKETS, CONFIG, POOL, PRINCIPAL
from origin.api.names import check_bucket_name, check_key
from origin.api.paths import split_path
from origin.errors import (
    AccessDenied,
    InvalidArgument,
    MethodNotAllowed,
    NoSuchBucket,
    NoSuchLifecycleConfiguration,
    NotImplementedYet,
    OriginError,
)
from origin.lifecycle.rules import lifecycle_document, parse_lifecycle
from origin.metadata import buckets as bucket_store
from origin.metadata import objects as object_store
from origin.metadata import versions
from origin.metadata.models import Bucket, ListPage

MAX_KEYS = 1000
# Sub-resources (?acl, ?versioning, …) that later work will implement; refuse them clearly
# instead of silently answering as if they were plain bucket requests.
_UNSUPPORTED_SUBRESOURCES = frozenset({
    "cors", "policy", "tagging", "website", "logging", "notification", "replication",
    "encryption", "object-lock", "ownershipControls", "publicAccessBlock", "accelerate",
    "requestPayment", "analytics", "inventory", "metrics", "intelligent-tiering",
})
_CANNED_ACLS = ("private", "public-read")


def _xml(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=s3xml.CONTENT_TYPE)


def _reject_subresources(request: web.Request) -> None:
    unsupported = _UNSUPPORTED_SUBRESOURCES.intersection(request.query)
    if unsupported:
        raise NotImplementedYet(f"?{sorted(unsupported)[0]} is not implemented")


async def load_bucket(request: web.Request, name: str, action: Action) -> Bucket:
    """The bucket, after checking the caller may ``action`` it (NoSuchBucket when it does not
    exist)."""
    check_bucket_name(name)
    cache, now = request.app[BUCKETS], time.monotonic()
    bucket = cache.get(name, now)
    if bucket is None:
        bucket = await bucket_store.get_bucket(request.app[POOL], name)
        if bucket is not None:
            cache.put(name, bucket, now)
    authorize(request[PRINCIPAL], bucket, action)
    if bucket is None:
        raise NoSuchBucket()
    return bucket


def forget_bucket(request: web.Request, name: str) -> None:
    """After this process changed a bucket row: the next request reads it afresh."""
    request.app[BUCKETS].discard(name)


async def list_buckets(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    if principal is None:
        raise AccessDenied()
    owner = None if principal.is_admin else principal.owner
    found = await bucket_store.list_buckets(request.app[POOL], owner)
    return _xml(s3xml.list_buckets_document(principal.owner, found))


def _canned_acl(request: web.Request) -> bool:
    """``x-amz-acl``: True for public-read (anonymous GET/HEAD), False for private."""
    acl = request.headers.get("x-amz-acl", "private")
    if acl not in _CANNED_ACLS:
        raise InvalidArgument(f"x-amz-acl {acl!r} is not supported (private, public-read)")
    return acl == "public-read"


async def create_bucket(request: web.Request) -> web.Response:
    name, _key = split_path(request.raw_path)
    check_bucket_name(name)
    _reject_subresources(request)
    for sub, handler in (("versioning", put_versioning), ("lifecycle", put_lifecycle),
                         ("acl", put_acl)):
        if sub in request.query:
            return await handler(request, await load_bucket(request, name, "write"))
    principal = request[PRINCIPAL]
    if principal is None:
        raise AccessDenied()
    public_read = _canned_acl(request)
    await request.read()  # CreateBucketConfiguration (LocationConstraint) is not needed
    await bucket_store.create_bucket(request.app[POOL], name, principal.owner, public_read)
    forget_bucket(request, name)
    return web.Response(status=200, headers={"Location": f"/{name}"})


async def head_bucket(request: web.Request) -> web.Response:
    name, _key = split_path(request.raw_path)
    await load_bucket(request, name, "read")
    return web.Response(status=200, headers={
        "x-amz-bucket-region": request.app[CONFIG].region})


async def delete_bucket(request: web.Request) -> web.Response:
    name, _key = split_path(request.raw_path)
    _reject_subresources(request)
    bucket = await load_bucket(request, name, "write")
    if "lifecycle" in request.query:
        await bucket_store.set_lifecycle(request.app[POOL], bucket.name, None)
        forget_bucket(request, bucket.name)
        return web.Response(status=204)
    await bucket_store.delete_bucket(request.app[POOL], name)
    forget_bucket(request, name)
    return web.Response(status=204)


async def put_versioning(request: web.Request, bucket: Bucket) -> web.Response:
    status = s3xml_in.parse_versioning(await request.read())
    await bucket_store.set_versioning(request.app[POOL], bucket.name, status)
    forget_bucket(request, bucket.name)
    return web.Response(status=200)


async def put_lifecycle(request: web.Request, bucket: Bucket) -> web.Response:
    rules = parse_lifecycle(await request.read())
    await bucket_store.set_lifecycle(request.app[POOL], bucket.name, rules)
    forget_bucket(request, bucket.name)
    return web.Response(status=200)


async def put_acl(request: web.Request, bucket: Bucket) -> web.Response:
    """Canned ACLs only: ``x-amz-acl: public-read`` turns anonymous reads on, ``private``
    off (this is how a public bucket is made readable by the shield without a key)."""
    await request.read()
    if "x-amz-acl" not in request.headers:
        raise NotImplementedYet("only canned ACLs (x-amz-acl) are supported")
    await bucket_store.set_public_read(request.app[POOL], bucket.name, _canned_acl(request))
    forget_bucket(request, bucket.name)
    return web.Response(status=200)


async def post_bucket(request: web.Request) -> web.Response:
    """POST /{bucket}?delete: DeleteObjects."""
    name, _key = split_path(request.raw_path)
    if "delete" not in request.query:
        raise MethodNotAllowed()
    from origin.api.objects import delete_key

    bucket = await load_bucket(request, name, "write")
    targets, quiet = s3xml_in.parse_delete(await request.read())
    deleted: list[tuple[str, str | None, bool, str | None]] = []
    errors: list[tuple[str, str | None, str, str]] = []
    for key, version_id in targets:
        try:
            check_key(bucket.name, key)
            headers = await delete_key(request, bucket, key, version_id)
        except OriginError as exc:
            errors.append((key, version_id, exc.code, exc.message))
            continue
        if not quiet:
            marker = headers.get("x-amz-delete-marker") == "true"
            deleted.append((key, version_id, marker,
                            headers.get("x-amz-version-id") if marker else None))
    return _xml(s3xml.delete_result_document(deleted, errors))


async def _bucket_subresource(request: web.Request, bucket: Bucket) -> web.Response | None:
    """GET ?location, ?versioning, ?lifecycle, ?acl, ?uploads, ?versions (None: a listing)."""
    query = request.query
    if "location" in query:
        return _xml(s3xml.location_document(request.app[CONFIG].region))
    if "versioning" in query:
        return _xml(s3xml.versioning_document(bucket.versioning))
    if "lifecycle" in query:
        if not bucket.lifecycle:
            raise NoSuchLifecycleConfiguration(resource=f"/{bucket.name}")
        return _xml(lifecycle_document(bucket.lifecycle))
    if "acl" in query:
        return _xml(s3xml.acl_document(bucket.owner, bucket.public_read))
    if "uploads" in query:
        from origin.api.multipart import list_uploads

        return await list_uploads(request, bucket)
    if "versions" in query:
        return await _list_versions(request, bucket)
    return None


async def _list_versions(request: web.Request, bucket: Bucket) -> web.Response:
    query = request.query
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    key_marker = query.get("key-marker", "")
    version_id_marker = query.get("version-id-marker", "")
    encoding_type = _encoding_type(request)
    max_keys = _max_keys(request)
    page = await versions.list_versions(request.app[POOL], bucket.name, prefix=prefix,
                                        delimiter=delimiter, key_marker=key_marker,
                                        version_id_marker=version_id_marker,
                                        max_keys=max_keys)
    return _xml(s3xml.list_versions_document(
        bucket=bucket.name, page=page, prefix=prefix, delimiter=delimiter,
        key_marker=key_marker, version_id_marker=version_id_marker, max_keys=max_keys,
        owner=bucket.owner, encode=_encoder(encoding_type), encoding_type=encoding_type))


def _encoding_type(request: web.Request) -> str | None:
    encoding_type = request.query.get("encoding-type")
    if encoding_type not in (None, "url"):
        raise InvalidArgument("encoding-type must be 'url'")
    return encoding_type


def _encoder(encoding_type: str | None) -> Callable[[str], str]:
    def encode(value: str) -> str:
        return quote(value, safe="/") if encoding_type == "url" else value

    return encode


def encode_token(resume: tuple[str, bool]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(resume)).encode()).decode()


def decode_token(token: str) -> tuple[str, bool]:
    try:
        key, inclusive = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(key, str) and isinstance(inclusive, bool):
            return key, inclusive
    except (ValueError, TypeError, binascii.Error):
        pass
    raise InvalidArgument("The continuation token provided is incorrect")


def _max_keys(request: web.Request) -> int:
    raw = request.query.get("max-keys", str(MAX_KEYS))
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"max-keys {raw!r} is not an integer") from None
    if value < 0:
        raise InvalidArgument("max-keys must not be negative")
    return min(value, MAX_KEYS)


async def get_bucket(request: web.Request) -> web.Response:
    """ListObjectsV2 (``list-type=2``), ListObjects (V1) or ``?location``."""
    name, _key = split_path(request.raw_path)
    _reject_subresources(request)
    bucket = await load_bucket(request, name, "read")
    sub = await _bucket_subresource(request, bucket)
    if sub is not None:
        return sub
    query = request.query
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    max_keys = _max_keys(request)
    encoding_type = _encoding_type(request)
    encode = _encoder(encoding_type)

    v2 = query.get("list-type") == "2"
    if v2:
        token = query.get("continuation-token")
        start_after = query.get("start-after", "")
        resume = decode_token(token) if token else ((start_after, False) if start_after
                                                   else None)
    else:
        marker = query.get("marker", "")
        resume = (marker, False) if marker else None
    page = await object_store.list_objects(request.app[POOL], bucket.name, prefix=prefix,
                                           delimiter=delimiter, resume=resume,
                                           max_keys=max_keys)
    if v2:
        fields = {
            "ContinuationToken": query.get("continuation-token"),
            "NextContinuationToken": encode_token(page.resume) if page.resume else None,
            "StartAfter": query.get("start-after"),
        }
        body = s3xml.list_objects_document(
            bucket=bucket.name, page=page, prefix=prefix, delimiter=delimiter,
            max_keys=max_keys, encode=encode, encoding_type=encoding_type, v2_fields=fields)
    else:
        last = _last_listed(page) if page.truncated and delimiter else None
        body = s3xml.list_objects_document(
            bucket=bucket.name, page=page, prefix=prefix, delimiter=delimiter,
            max_keys=max_keys, encode=encode, encoding_type=encoding_type, v2_fields=None,
            next_marker=last, marker=query.get("marker", ""))
    return _xml(body)


def _last_listed(page: ListPage) -> str | None:
    """V1's NextMarker: the greatest key or common prefix on the page."""
    candidates = [c.key for c in page.contents] + list(page.common_prefixes)
    return max(candidates) if candidates else None
