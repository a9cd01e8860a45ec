"""S3 XML documents: errors and listings (pure: values in, UTF-8 bytes out).

Built with ElementTree so every key, prefix and message is escaped correctly, whatever bytes a
user put in a key.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from origin.metadata.models import Bucket, ListPage

if TYPE_CHECKING:
    from origin.metadata.multipart import ListedPart, Upload
    from origin.metadata.versions import VersionPage

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


def _owner(parent: ET.Element, owner: str, tag: str = "Owner") -> None:
    who = _child(parent, tag)
    _child(who, "ID", owner)
    _child(who, "DisplayName", owner)


def _listing_bounds(root: ET.Element, max_keys: int, delimiter: str,
                    encoding_type: str | None, truncated: bool,
                    encode: Callable[[str], str]) -> None:
    """MaxKeys, Delimiter, EncodingType and IsTruncated: the same in both key listings."""
    _child(root, "MaxKeys", max_keys)
    if delimiter:
        _child(root, "Delimiter", encode(delimiter))
    if encoding_type:
        _child(root, "EncodingType", encoding_type)
    _child(root, "IsTruncated", "true" if truncated else "false")


def _common_prefixes(root: ET.Element, prefixes: Sequence[str],
                     encode: Callable[[str], str]) -> None:
    for common in prefixes:
        _child(_child(root, "CommonPrefixes"), "Prefix", encode(common))


def list_buckets_document(owner: str, buckets: Sequence[Bucket]) -> bytes:
    root = ET.Element("ListAllMyBucketsResult", xmlns=NAMESPACE)
    _owner(root, owner)
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
    _listing_bounds(root, max_keys, delimiter, encoding_type, page.truncated, encode)
    for item in page.contents:
        entry = _child(root, "Contents")
        _child(entry, "Key", encode(item.key))
        _child(entry, "LastModified", iso8601(item.last_modified))
        _child(entry, "ETag", f'"{item.etag}"')
        _child(entry, "Size", item.size)
        _child(entry, "StorageClass", item.storage_class)
    _common_prefixes(root, page.common_prefixes, encode)
    return _document(root)


def copy_result_document(etag: str, last_modified: datetime, *, part: bool = False) -> bytes:
    root = ET.Element("CopyPartResult" if part else "CopyObjectResult", xmlns=NAMESPACE)
    _child(root, "LastModified", iso8601(last_modified))
    _child(root, "ETag", f'"{etag}"')
    return _document(root)


def initiate_multipart_document(bucket: str, key: str, upload_id: str) -> bytes:
    root = ET.Element("InitiateMultipartUploadResult", xmlns=NAMESPACE)
    _child(root, "Bucket", bucket)
    _child(root, "Key", key)
    _child(root, "UploadId", upload_id)
    return _document(root)


def complete_multipart_document(location: str, bucket: str, key: str, etag: str) -> bytes:
    root = ET.Element("CompleteMultipartUploadResult", xmlns=NAMESPACE)
    _child(root, "Location", location)
    _child(root, "Bucket", bucket)
    _child(root, "Key", key)
    _child(root, "ETag", f'"{etag}"')
    return _document(root)


def list_parts_document(
    *, bucket: str, key: str, upload_id: str, owner: str, parts: Sequence[ListedPart],
    marker: int, max_parts: int, truncated: bool, storage_class: str = "STANDARD",
) -> bytes:
    root = ET.Element("ListPartsResult", xmlns=NAMESPACE)
    _child(root, "Bucket", bucket)
    _child(root, "Key", key)
    _child(root, "UploadId", upload_id)
    _owner(root, owner, "Initiator")
    _owner(root, owner)
    _child(root, "StorageClass", storage_class)
    _child(root, "PartNumberMarker", marker)
    if parts:
        _child(root, "NextPartNumberMarker", parts[-1].number)
    _child(root, "MaxParts", max_parts)
    _child(root, "IsTruncated", "true" if truncated else "false")
    for part in parts:
        entry = _child(root, "Part")
        _child(entry, "PartNumber", part.number)
        _child(entry, "LastModified", iso8601(part.last_modified))
        _child(entry, "ETag", f'"{part.etag}"')
        _child(entry, "Size", part.size)
    return _document(root)


def list_uploads_document(
    *, bucket: str, uploads: Sequence[Upload], prefix: str, key_marker: str,
    upload_id_marker: str, max_uploads: int, truncated: bool,
) -> bytes:
    root = ET.Element("ListMultipartUploadsResult", xmlns=NAMESPACE)
    _child(root, "Bucket", bucket)
    _child(root, "KeyMarker", key_marker)
    _child(root, "UploadIdMarker", upload_id_marker)
    if truncated and uploads:
        _child(root, "NextKeyMarker", uploads[-1].key)
        _child(root, "NextUploadIdMarker", uploads[-1].upload_id)
    _child(root, "Prefix", prefix)
    _child(root, "MaxUploads", max_uploads)
    _child(root, "IsTruncated", "true" if truncated else "false")
    for upload in uploads:
        entry = _child(root, "Upload")
        _child(entry, "Key", upload.key)
        _child(entry, "UploadId", upload.upload_id)
        _owner(entry, upload.owner, "Initiator")
        _owner(entry, upload.owner)
        _child(entry, "StorageClass", upload.attributes.get("storage_class") or "STANDARD")
        _child(entry, "Initiated", iso8601(upload.initiated))
    return _document(root)


def delete_result_document(
    deleted: Sequence[tuple[str, str | None, bool, str | None]],
    errors: Sequence[tuple[str, str | None, str, str]],
) -> bytes:
    """``deleted``: (key, version id asked for, delete marker, delete marker version id);
    ``errors``: (key, version id, code, message)."""
    root = ET.Element("DeleteResult", xmlns=NAMESPACE)
    for key, version_id, marker, marker_version in deleted:
        entry = _child(root, "Deleted")
        _child(entry, "Key", key)
        if version_id:
            _child(entry, "VersionId", version_id)
        if marker:
            _child(entry, "DeleteMarker", "true")
            if marker_version:
                _child(entry, "DeleteMarkerVersionId", marker_version)
    for key, version_id, code, message in errors:
        entry = _child(root, "Error")
        _child(entry, "Key", key)
        if version_id:
            _child(entry, "VersionId", version_id)
        _child(entry, "Code", code)
        _child(entry, "Message", message)
    return _document(root)


def tagging_document(tags: dict[str, str]) -> bytes:
    root = ET.Element("Tagging", xmlns=NAMESPACE)
    tag_set = _child(root, "TagSet")
    for key, value in tags.items():
        tag = _child(tag_set, "Tag")
        _child(tag, "Key", key)
        _child(tag, "Value", value)
    return _document(root)


def versioning_document(status: str | None) -> bytes:
    root = ET.Element("VersioningConfiguration", xmlns=NAMESPACE)
    if status:
        _child(root, "Status", status)
    return _document(root)


def acl_document(owner: str, public_read: bool) -> bytes:
    root = ET.Element("AccessControlPolicy", xmlns=NAMESPACE)
    _owner(root, owner)
    grants = _child(root, "AccessControlList")
    xsi = "http://www.w3.org/2001/XMLSchema-instance"
    full = _child(grants, "Grant")
    grantee = ET.SubElement(full, "Grantee", {"xmlns:xsi": xsi, "xsi:type": "CanonicalUser"})
    _child(grantee, "ID", owner)
    _child(grantee, "DisplayName", owner)
    _child(full, "Permission", "FULL_CONTROL")
    if public_read:
        read = _child(grants, "Grant")
        everyone = ET.SubElement(read, "Grantee", {"xmlns:xsi": xsi, "xsi:type": "Group"})
        _child(everyone, "URI", "http://acs.amazonaws.com/groups/global/AllUsers")
        _child(read, "Permission", "READ")
    return _document(root)


def list_versions_document(
    *, bucket: str, page: VersionPage, prefix: str, delimiter: str, key_marker: str,
    version_id_marker: str, max_keys: int, owner: str, encode: Callable[[str], str],
    encoding_type: str | None,
) -> bytes:
    root = ET.Element("ListVersionsResult", xmlns=NAMESPACE)
    _child(root, "Name", bucket)
    _child(root, "Prefix", encode(prefix))
    _child(root, "KeyMarker", encode(key_marker))
    _child(root, "VersionIdMarker", version_id_marker)
    if page.truncated:
        _child(root, "NextKeyMarker", encode(page.next_key_marker or ""))
        if page.next_version_id_marker:
            _child(root, "NextVersionIdMarker", page.next_version_id_marker)
    _listing_bounds(root, max_keys, delimiter, encoding_type, page.truncated, encode)
    for entry in page.entries:
        node = _child(root, "DeleteMarker" if entry.delete_marker else "Version")
        _child(node, "Key", encode(entry.key))
        _child(node, "VersionId", entry.version_id)
        _child(node, "IsLatest", "true" if entry.is_latest else "false")
        _child(node, "LastModified", iso8601(entry.last_modified))
        if not entry.delete_marker:
            _child(node, "ETag", f'"{entry.etag}"')
            _child(node, "Size", entry.size)
            _child(node, "StorageClass", entry.storage_class)
        _owner(node, owner)
    _common_prefixes(root, page.common_prefixes, encode)
    return _document(root)
