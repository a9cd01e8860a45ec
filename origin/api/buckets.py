"""Bucket handlers: list buckets, create, head, delete, list objects (V1 and V2)."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import quote

from aiohttp import web

from origin.api import s3xml
from origin.api.auth import Action, authorize
from origin.api.keys import CONFIG, POOL, PRINCIPAL
from origin.api.names import check_bucket_name
from origin.api.paths import split_path
from origin.errors import AccessDenied, InvalidArgument, NoSuchBucket, NotImplementedYet
from origin.metadata import buckets as bucket_store
from origin.metadata import objects as object_store
from origin.metadata.models import Bucket, ListPage

MAX_KEYS = 1000
# Sub-resources (?acl, ?versioning, …) that later work will implement; refuse them clearly
# instead of silently answering as if they were plain bucket requests.
_UNSUPPORTED_SUBRESOURCES = frozenset({
    "acl", "cors", "lifecycle", "policy", "tagging", "uploads", "versioning", "versions",
    "website", "logging", "notification", "replication", "encryption", "delete",
    "object-lock", "ownershipControls", "publicAccessBlock", "accelerate", "requestPayment",
})


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
    bucket = await bucket_store.get_bucket(request.app[POOL], name)
    authorize(request[PRINCIPAL], bucket, action)
    if bucket is None:
        raise NoSuchBucket()
    return bucket


async def list_buckets(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    if principal is None:
        raise AccessDenied()
    owner = None if principal.is_admin else principal.owner
    found = await bucket_store.list_buckets(request.app[POOL], owner)
    return _xml(s3xml.list_buckets_document(principal.owner, found))


async def create_bucket(request: web.Request) -> web.Response:
    name, _key = split_path(request.raw_path)
    check_bucket_name(name)
    _reject_subresources(request)
    principal = request[PRINCIPAL]
    if principal is None:
        raise AccessDenied()
    acl = request.headers.get("x-amz-acl", "private")
    if acl not in ("private", "public-read"):
        raise InvalidArgument(f"x-amz-acl {acl!r} is not supported (private, public-read)")
    await request.read()  # CreateBucketConfiguration (LocationConstraint) is not needed
    await bucket_store.create_bucket(request.app[POOL], name, principal.owner,
                                     acl == "public-read")
    return web.Response(status=200, headers={"Location": f"/{name}"})


async def head_bucket(request: web.Request) -> web.Response:
    name, _key = split_path(request.raw_path)
    await load_bucket(request, name, "read")
    return web.Response(status=200, headers={
        "x-amz-bucket-region": request.app[CONFIG].region})


async def delete_bucket(request: web.Request) -> web.Response:
    name, _key = split_path(request.raw_path)
    _reject_subresources(request)
    await load_bucket(request, name, "write")
    await bucket_store.delete_bucket(request.app[POOL], name)
    return web.Response(status=204)


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
    if "location" in request.query:
        return _xml(s3xml.location_document(request.app[CONFIG].region))
    query = request.query
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    max_keys = _max_keys(request)
    encoding_type = query.get("encoding-type")
    if encoding_type not in (None, "url"):
        raise InvalidArgument("encoding-type must be 'url'")

    def encode(value: str) -> str:
        return quote(value, safe="/") if encoding_type == "url" else value

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
