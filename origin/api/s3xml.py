"""S3 XML documents: errors and listings (pure: values in, UTF-8 bytes out).

Built with ElementTree so every key, prefix and message is escaped correctly, whatever bytes a
user put in a key.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from origin.metadata.models import Bucket, ListPage

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
CONTENT_TYPE = "application/xml"


def _document(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8",
                                                                     xml_declaration=False)


def _child(parent: ET.Element, tag: str, text: str | int | None = None) -> ET.Element:
    node = ET.SubElement(parent, tag)
    if text is not None:
        node.text = str(text)
    return node


def iso8601(moment: datetime) -> str:
    """``2009-10-12T17:50:30.000Z``: the timestamp format of S3 listings."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def error_document(code: str, message: str, resource: str, request_id: str) -> bytes:
    root = ET.Element("Error")
    _child(root, "Code", code)
    _child(root, "Message", message)
    _child(root, "Resource", resource)
    _child(root, "RequestId", request_id)
    return _document(root)


def list_buckets_document(owner: str, buckets: Sequence[Bucket]) -> bytes:
    root = ET.Element("ListAllMyBucketsResult", xmlns=NAMESPACE)
    who = _child(root, "Owner")
    _child(who, "ID", owner)
    _child(who, "DisplayName", owner)
    listing = _child(root, "Buckets")
    for bucket in buckets:
        entry = _child(listing, "Bucket")
        _child(entry, "Name", bucket.name)
        _child(entry, "CreationDate", iso8601(bucket.created))
    return _document(root)


def location_document(region: str) -> bytes:
    root = ET.Element("LocationConstraint", xmlns=NAMESPACE)
    # us-east-1 is reported as an empty constraint, as S3 does.
    if region != "us-east-1":
        root.text = region
    return _document(root)


def list_objects_document(
    *,
    bucket: str,
    page: ListPage,
    prefix: str,
    delimiter: str,
    max_keys: int,
    encode: Callable[[str], str],
    encoding_type: str | None,
    v2_fields: dict[str, str | None] | None,
    next_marker: str | None = None,
    marker: str = "",
) -> bytes:
    """ListBucketResult for ListObjectsV2 (``v2_fields`` holds ContinuationToken,
    NextContinuationToken, StartAfter) or, when ``v2_fields`` is None, ListObjects (V1,
    with Marker/NextMarker). ``encode`` applies ``encoding-type=url`` to keys and prefixes."""
    root = ET.Element("ListBucketResult", xmlns=NAMESPACE)
    _child(root, "Name", bucket)
    _child(root, "Prefix", encode(prefix))
    if v2_fields is None:
        _child(root, "Marker", encode(marker))
        if next_marker is not None:
            _child(root, "NextMarker", encode(next_marker))
    else:
        _child(root, "KeyCount", len(page.contents) + len(page.common_prefixes))
        for name in ("ContinuationToken", "NextContinuationToken"):
            if v2_fields.get(name):
                _child(root, name, v2_fields[name])
        if v2_fields.get("StartAfter"):
            _child(root, "StartAfter", encode(v2_fields["StartAfter"] or ""))
    _child(root, "MaxKeys", max_keys)
    if delimiter:
        _child(root, "Delimiter", encode(delimiter))
    if encoding_type:
        _child(root, "EncodingType", encoding_type)
    _child(root, "IsTruncated", "true" if page.truncated else "false")
    for item in page.contents:
        entry = _child(root, "Contents")
        _child(entry, "Key", encode(item.key))
        _child(entry, "LastModified", iso8601(item.last_modified))
        _child(entry, "ETag", f'"{item.etag}"')
        _child(entry, "Size", item.size)
        _child(entry, "StorageClass", "STANDARD")
    for common in page.common_prefixes:
        _child(_child(root, "CommonPrefixes"), "Prefix", encode(common))
    return _document(root)
