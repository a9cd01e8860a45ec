"""Request documents of S3 (pure): bytes in, plain values out, ``MalformedXML`` if bad.

Namespaces are ignored (clients send the S3 namespace or none at all).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl

from origin.errors import InvalidArgument, InvalidTag, MalformedXML

MAX_TAGS = 10
MAX_DELETE_KEYS = 1000


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_root(body: bytes, expected: str) -> ET.Element:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise MalformedXML() from None
    if _local(root.tag) != expected:
        raise MalformedXML(f"expected a <{expected}> document")
    return root


def children(node: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in node if _local(c.tag) == name]


def text(node: ET.Element, name: str) -> str | None:
    found = children(node, name)
    return (found[0].text or "") if found else None


def parse_complete_multipart(body: bytes) -> list[tuple[int, str]]:
    """``[(part number, etag), …]`` as listed (order is checked by the caller)."""
    root = parse_root(body, "CompleteMultipartUpload")
    parts = []
    for part in children(root, "Part"):
        number, etag = text(part, "PartNumber"), text(part, "ETag")
        if number is None or etag is None:
            raise MalformedXML("every <Part> needs <PartNumber> and <ETag>")
        try:
            parts.append((int(number), etag))
        except ValueError:
            raise MalformedXML(f"PartNumber {number!r} is not an integer") from None
    return parts


def parse_delete(body: bytes) -> tuple[list[tuple[str, str | None]], bool]:
    """DeleteObjects: ``([(key, version id or None), …], quiet)``."""
    root = parse_root(body, "Delete")
    objects = []
    for obj in children(root, "Object"):
        key = text(obj, "Key")
        if not key:
            raise MalformedXML("every <Object> needs a <Key>")
        objects.append((key, text(obj, "VersionId") or None))
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise MalformedXML(f"a Delete names 1..{MAX_DELETE_KEYS} objects")
    quiet = (text(root, "Quiet") or "false").strip().lower() == "true"
    return objects, quiet


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise InvalidTag(f"Object tags cannot be greater than {MAX_TAGS}")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise InvalidTag("tag keys are 1..128 characters, values at most 256")
    return tags


def parse_tagging(body: bytes) -> dict[str, str]:
    root = parse_root(body, "Tagging")
    tag_sets = children(root, "TagSet")
    if len(tag_sets) != 1:
        raise MalformedXML("a Tagging document has one <TagSet>")
    tags: dict[str, str] = {}
    for tag in children(tag_sets[0], "Tag"):
        key, value = text(tag, "Key"), text(tag, "Value")
        if key is None or value is None:
            raise MalformedXML("every <Tag> needs <Key> and <Value>")
        if key in tags:
            raise InvalidTag("Cannot provide multiple Tags with the same key")
        tags[key] = value
    return check_tags(tags)


def parse_tagging_header(value: str | None) -> dict[str, str]:
    """``x-amz-tagging: k1=v1&k2=v2`` (URL query encoding)."""
    if not value:
        return {}
    pairs = parse_qsl(value, keep_blank_values=True)
    tags = dict(pairs)
    if len(tags) != len(pairs):
        raise InvalidTag("Cannot provide multiple Tags with the same key")
    return check_tags(tags)


def parse_versioning(body: bytes) -> str:
    root = parse_root(body, "VersioningConfiguration")
    status = text(root, "Status")
    if status not in ("Enabled", "Suspended"):
        raise MalformedXML("Status must be Enabled or Suspended")
    if (text(root, "MfaDelete") or "Disabled") != "Disabled":
        raise InvalidArgument("MFA delete is not supported")
    return status
