"""S3 error documents and listing XML; the error hierarchy carries status and code."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from origin import errors
from origin.api import s3xml
from origin.metadata.models import Bucket, ListedObject, ListPage

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def test_error_document_escapes_and_has_all_fields() -> None:
    body = s3xml.error_document("NoSuchKey", "no <such> key & more", "/b/a&b", "REQ1")
    root = ET.fromstring(body)
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert [c.tag for c in root] == ["Code", "Message", "Resource", "RequestId"]
    assert root.findtext("Message") == "no <such> key & more"
    assert root.findtext("Resource") == "/b/a&b"


@pytest.mark.parametrize(("cls", "status", "code"), [
    (errors.NoSuchBucket, 404, "NoSuchBucket"),
    (errors.NoSuchKey, 404, "NoSuchKey"),
    (errors.InvalidBucketName, 400, "InvalidBucketName"),
    (errors.KeyTooLongError, 400, "KeyTooLongError"),
    (errors.InvalidArgument, 400, "InvalidArgument"),
    (errors.AccessDenied, 403, "AccessDenied"),
    (errors.SignatureDoesNotMatch, 403, "SignatureDoesNotMatch"),
    (errors.InvalidAccessKeyId, 403, "InvalidAccessKeyId"),
    (errors.InvalidRange, 416, "InvalidRange"),
    (errors.PreconditionFailed, 412, "PreconditionFailed"),
    (errors.EntityTooLarge, 400, "EntityTooLarge"),
    (errors.BadDigest, 400, "BadDigest"),
    (errors.BucketNotEmpty, 409, "BucketNotEmpty"),
    (errors.InsufficientNodes, 503, "ServiceUnavailable"),
    (errors.InsufficientFragments, 503, "ServiceUnavailable"),
    (errors.InternalError, 500, "InternalError"),
])
def test_error_classes_carry_status_and_code(cls: type[errors.OriginError], status: int,
                                             code: str) -> None:
    err = cls()
    assert (err.status, err.code) == (status, code)
    assert err.message
    assert isinstance(err, errors.ClientError if status < 500 else errors.ServerError)


def test_list_documents() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    body = s3xml.list_buckets_document("admin", [Bucket("b1", "admin", False, when)])
    root = ET.fromstring(body)
    assert root.find(f"{NS}Buckets/{NS}Bucket/{NS}CreationDate").text == \
        "2024-01-02T03:04:05.678Z"
    page = ListPage([ListedObject("a b", 3, "e", when)], ["p/"], True, ("a b", False))
    body = s3xml.list_objects_document(
        bucket="b1", page=page, prefix="", delimiter="/", max_keys=2,
        encode=lambda s: s.replace(" ", "%20"), encoding_type="url",
        v2_fields={"NextContinuationToken": "tok", "ContinuationToken": None})
    root = ET.fromstring(body)
    assert root.findtext(f"{NS}KeyCount") == "2"
    assert root.findtext(f"{NS}IsTruncated") == "true"
    assert root.findtext(f"{NS}NextContinuationToken") == "tok"
    assert root.findtext(f"{NS}Contents/{NS}Key") == "a%20b"
    assert root.findtext(f"{NS}Contents/{NS}ETag") == '"e"'
    assert root.findtext(f"{NS}CommonPrefixes/{NS}Prefix") == "p/"
