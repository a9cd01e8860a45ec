"""Object headers in and out (pure): what a PUT stores and what GET/HEAD send back.

Caches in front of the origin rely on these: ``ETag`` and ``Last-Modified`` for revalidation,
``Cache-Control`` as stored with the object, ``Surrogate-Key`` (space separated) for tag purges.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from origin.api.preconditions import http_date
from origin.errors import InvalidArgument, InvalidDigest
from origin.metadata.models import NewObject, ObjectRecord
from origin.storage_class import STANDARD

META_PREFIX = "x-amz-meta-"
MAX_METADATA_BYTES = 2048  # S3's limit on the user-defined metadata of one object
DEFAULT_CONTENT_TYPE = "binary/octet-stream"  # what S3 stores when none is given
_TAG_SAFE = "-_.~:/@+"


def user_metadata(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``x-amz-meta-*`` headers as ``{name-without-prefix (lower case): value}``."""
    found: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower.startswith(META_PREFIX) and len(lower) > len(META_PREFIX):
            key = lower[len(META_PREFIX):]
            found[key] = f"{found[key]},{value}" if key in found else value
    size = sum(len(k.encode()) + len(v.encode()) for k, v in found.items())
    if size > MAX_METADATA_BYTES:
        raise InvalidArgument(f"user metadata is {size} bytes; the limit is "
                              f"{MAX_METADATA_BYTES}")
    return found


def surrogate_keys(value: str | None) -> tuple[str, ...]:
    """``Surrogate-Key: a b  c`` → ``("a", "b", "c")`` (duplicates dropped, order kept)."""
    if not value:
        return ()
    return tuple(dict.fromkeys(value.split()))


def content_md5(value: str | None) -> bytes | None:
    """The 16-byte digest of a ``Content-MD5`` header (base64), ``InvalidDigest`` if bad."""
    if value is None:
        return None
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidDigest() from None
    if len(digest) != 16:
        raise InvalidDigest()
    return digest


def quoted_etag(etag: str) -> str:
    return f'"{etag}"'


def validator_headers(obj: ObjectRecord) -> dict[str, str]:
    """Headers a 304 must repeat (RFC 9110 §15.4.5): the validators and Cache-Control."""
    headers = {"ETag": quoted_etag(obj.etag), "Last-Modified": http_date(obj.last_modified)}
    if obj.cache_control:
        headers["Cache-Control"] = obj.cache_control
    return headers


def object_headers(obj: ObjectRecord) -> dict[str, str]:
    """Representation headers of a 200/206 (Content-Length is set by the caller)."""
    headers = validator_headers(obj)
    headers["Content-Type"] = obj.content_type
    headers["Accept-Ranges"] = "bytes"
    if obj.content_disposition:
        headers["Content-Disposition"] = obj.content_disposition
    if obj.content_encoding:
        headers["Content-Encoding"] = obj.content_encoding
    keys = all_surrogate_keys(obj)
    if keys:
        headers["Surrogate-Key"] = " ".join(keys)
    if obj.tags:
        headers["x-amz-tagging-count"] = str(len(obj.tags))
    if obj.version_id != "null":
        headers["x-amz-version-id"] = obj.version_id
    if obj.part_count:
        headers["x-amz-mp-parts-count"] = str(obj.part_count)
    if obj.storage_class != STANDARD:  # S3 sends it only for other classes
        headers["x-amz-storage-class"] = obj.storage_class
    for name, value in obj.metadata.items():
        headers[META_PREFIX + name] = value
    return headers


def stored_fields(headers: Mapping[str, str]) -> dict[str, str | None]:
    """The standard headers a PUT stores verbatim (``aws-chunked`` is a transfer detail and
    is dropped from Content-Encoding, as S3 does)."""
    encoding = ",".join(e.strip() for e in (headers.get("Content-Encoding") or "").split(",")
                        if e.strip() and e.strip().lower() != "aws-chunked")
    return {
        "content_type": headers.get("Content-Type") or DEFAULT_CONTENT_TYPE,
        "cache_control": headers.get("Cache-Control"),
        "content_disposition": headers.get("Content-Disposition"),
        "content_encoding": encoding or None,
    }


def tag_surrogate_keys(tags: Mapping[str, str]) -> tuple[str, ...]:
    """Object tags as surrogate keys for CDN purges: ``key=value``, percent-encoded so a
    space or ``%`` inside a tag never splits or merges keys (``Surrogate-Key`` is space
    separated)."""
    return tuple(f"{quote(k, safe=_TAG_SAFE)}={quote(v, safe=_TAG_SAFE)}"
                 for k, v in tags.items())


def all_surrogate_keys(obj: NewObject) -> tuple[str, ...]:
    """Surrogate keys sent with an object: those given at PUT, then its tags'."""
    return tuple(dict.fromkeys([*obj.surrogate_keys, *tag_surrogate_keys(obj.tags)]))


def object_attributes(headers: Mapping[str, str]) -> dict[str, Any]:
    """What a PUT / CreateMultipartUpload / CopyObject (REPLACE) says about the object, as
    ``NewObject`` fields (JSON-friendly: a multipart upload stores it until completion)."""
    from origin.api.s3xml_in import parse_tagging_header

    return {
        **stored_fields(headers),
        "metadata": user_metadata(headers.items()),
        # S3 SDKs cannot send arbitrary headers, but they can send metadata.
        "surrogate_keys": list(surrogate_keys(headers.get("Surrogate-Key")
                                              or headers.get("x-amz-meta-surrogate-key"))),
        "tags": parse_tagging_header(headers.get("x-amz-tagging")),
    }


def new_object_fields(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``object_attributes`` output as keyword arguments of ``NewObject``."""
    return {**attributes, "surrogate_keys": tuple(attributes.get("surrogate_keys", ())),
            "metadata": dict(attributes.get("metadata", {})),
            "tags": dict(attributes.get("tags", {}))}
