"""S3 naming rules for buckets and keys (pure)."""

from __future__ import annotations

import ipaddress
import re

from origin.errors import InvalidArgument, InvalidBucketName, KeyTooLongError

MAX_KEY_BYTES = 1024
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid S3 bucket name ("General purpose bucket naming rules"),
    or ``None`` if it is."""
    if not _BUCKET.match(name):
        return ("bucket names are 3-63 characters of lower-case letters, digits, dots and "
                "hyphens, beginning and ending with a letter or digit")
    if ".." in name:
        return "bucket names must not contain two adjacent periods"
    try:
        ipaddress.IPv4Address(name)
        return "bucket names must not be formatted as an IP address"
    except ValueError:
        pass
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return "bucket name uses a reserved prefix or suffix"
    return None


def check_bucket_name(name: str) -> None:
    problem = bucket_name_problem(name)
    if problem:
        raise InvalidBucketName(f"The specified bucket is not valid: {problem}.",
                                resource=f"/{name}")


def check_key(bucket: str, key: str) -> None:
    """Keys are 1..1024 bytes of UTF-8 (S3's limit)."""
    if not key:
        raise InvalidArgument("object key must not be empty", resource=f"/{bucket}/")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("object key is not valid UTF-8",
                              resource=f"/{bucket}/") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise KeyTooLongError(f"Your key is too long: {len(encoded)} bytes, the maximum is "
                              f"{MAX_KEY_BYTES}.", resource=f"/{bucket}/{key[:64]}…")
