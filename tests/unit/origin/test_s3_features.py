"""Pure helpers of the S3 features: multipart maths, lifecycle rules, request XML,
checksums."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from origin.api.body import requested_checksum
from origin.api.object_headers import tag_surrogate_keys
from origin.api.s3xml_in import (
    parse_complete_multipart,
    parse_delete,
    parse_tagging,
    parse_tagging_header,
    parse_versioning,
)
from origin.checksums import checksum, new_hasher
from origin.errors import (
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    InvalidTag,
    MalformedXML,
)
from origin.lifecycle.rules import due, lifecycle_document, matches, parse_lifecycle
from origin.multipart import UploadedPart, check_completion, multipart_etag, part_ranges

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def test_multipart_etag_is_md5_of_part_md5s_and_count() -> None:
    parts = [hashlib.md5(b"a").hexdigest(), hashlib.md5(b"b").hexdigest()]
    expected = hashlib.md5(hashlib.md5(b"a").digest() + hashlib.md5(b"b").digest()).hexdigest()
    assert multipart_etag(parts) == f"{expected}-2"


def test_completion_checks_order_etags_and_sizes() -> None:
    uploaded = {1: UploadedPart(1, "aa", 10), 2: UploadedPart(2, "bb", 3)}
    assert [p.number for p in check_completion([(1, '"aa"'), (2, "bb")], uploaded,
                                               min_part_size=10)] == [1, 2]
    with pytest.raises(InvalidPartOrder):
        check_completion([(2, "bb"), (1, "aa")], uploaded, min_part_size=1)
    with pytest.raises(InvalidPart):
        check_completion([(1, "zz")], uploaded, min_part_size=1)
    with pytest.raises(InvalidPart):
        check_completion([(3, "aa")], uploaded, min_part_size=1)
    with pytest.raises(EntityTooSmall):
        check_completion([(2, "bb"), (3, "cc")], {**uploaded, 3: UploadedPart(3, "cc", 1)},
                         min_part_size=10)


def test_part_ranges_map_object_bytes_onto_parts() -> None:
    sizes = [10, 10, 5]
    spans = part_ranges(sizes, 8, 21)
    assert [(s.index, s.first, s.last) for s in spans] == [(0, 8, 9), (1, 0, 9), (2, 0, 1)]
    assert [(s.index, s.first, s.last) for s in part_ranges(sizes, 0, 24)] == [
        (0, 0, 9), (1, 0, 9), (2, 0, 4)]
    assert [(s.index, s.first, s.last) for s in part_ranges(sizes, 12, 12)] == [(1, 2, 2)]


def test_request_documents() -> None:
    assert parse_complete_multipart(
        f"<CompleteMultipartUpload {NS}><Part><PartNumber>1</PartNumber><ETag>\"x\"</ETag>"
        "</Part></CompleteMultipartUpload>".encode()) == [(1, '"x"')]
    objects, quiet = parse_delete(b"<Delete><Quiet>true</Quiet><Object><Key>a</Key>"
                                  b"<VersionId>v</VersionId></Object></Delete>")
    assert (objects, quiet) == ([("a", "v")], True)
    assert parse_tagging(b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet>"
                         b"</Tagging>") == {"k": "v"}
    assert parse_tagging_header("a=1&b=x%20y") == {"a": "1", "b": "x y"}
    with pytest.raises(InvalidTag):
        parse_tagging_header("a=1&a=2")
    assert parse_versioning(b"<VersioningConfiguration><Status>Suspended</Status>"
                            b"</VersioningConfiguration>") == "Suspended"
    with pytest.raises(MalformedXML):
        parse_delete(b"<Delete>")


def test_tags_as_surrogate_keys_never_split() -> None:
    assert tag_surrogate_keys({"a b": "c d", "x": "%"}) == ("a%20b=c%20d", "x=%25")


def test_lifecycle_parse_render_match() -> None:
    body = (b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><And><Prefix>logs/</Prefix>"
            b"<Tag><Key>t</Key><Value>1</Value></Tag></And></Filter><Status>Enabled</Status>"
            b"<Expiration><Days>3</Days></Expiration><Transition><Days>1</Days>"
            b"<StorageClass>COLD</StorageClass></Transition></Rule></LifecycleConfiguration>")
    rules = parse_lifecycle(body)
    assert rules[0]["prefix"] == "logs/" and rules[0]["tags"] == {"t": "1"}
    assert parse_lifecycle(lifecycle_document(rules)) == rules
    assert matches(rules[0], "logs/a", {"t": "1"})
    assert not matches(rules[0], "logs/a", {})
    assert not matches(rules[0], "other", {"t": "1"})
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert not due(start, 3, start + timedelta(days=2, hours=23))
    assert due(start, 3, start + timedelta(days=3))
    with pytest.raises(MalformedXML):
        parse_lifecycle(b"<LifecycleConfiguration><Rule><Status>Enabled</Status></Rule>"
                        b"</LifecycleConfiguration>")


def test_checksum_check_values_and_incremental_use() -> None:
    assert checksum("CRC32", b"123456789") == "y/Q5Jg=="
    hasher = new_hasher("crc32c")
    hasher.update(b"1234")
    hasher.update(b"56789")
    assert hasher.digest().hex() == "e3069283"
    assert new_hasher("CRC64NVME").digest() == bytes(8)


def test_which_checksum_a_request_declares() -> None:
    assert requested_checksum({"x-amz-checksum-sha256": "v"}) == ("SHA256", "v", False)
    assert requested_checksum({"x-amz-trailer": "x-amz-checksum-crc32c"}) == (
        "CRC32C", None, True)
    assert requested_checksum({}) == (None, None, False)
