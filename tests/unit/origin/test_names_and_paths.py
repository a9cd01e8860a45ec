"""Bucket/key naming rules, path splitting and listing key arithmetic."""

from __future__ import annotations

import pytest

from origin.api.names import bucket_name_problem, check_bucket_name, check_key
from origin.api.paths import resource, split_path
from origin.errors import InvalidBucketName, KeyTooLongError
from origin.metadata.objects import key_successor


@pytest.mark.parametrize("name", ["abc", "my-bucket.v2", "a" * 63, "0ab"])
def test_valid_bucket_names(name: str) -> None:
    assert bucket_name_problem(name) is None


@pytest.mark.parametrize("name", [
    "ab", "a" * 64, "Upper", "under_score", "-start", "end-", "a..b", "192.168.1.1",
    "xn--punycode", "name-s3alias", "_health",
])
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(InvalidBucketName):
        check_bucket_name(name)


def test_key_length_is_counted_in_utf8_bytes() -> None:
    check_key("b", "é" * 512)
    with pytest.raises(KeyTooLongError):
        check_key("b", "é" * 513)


def test_split_path_keeps_keys_verbatim() -> None:
    assert split_path("/") == ("", None)
    assert split_path("/bucket") == ("bucket", None)
    assert split_path("/bucket/") == ("bucket", None)
    assert split_path("/bucket/a/../b?x=1") == ("bucket", "a/../b")
    assert split_path("/bucket/a%20b/%2F") == ("bucket", "a b//")
    assert resource("b", "k") == "/b/k" and resource("b") == "/b" and resource("") == "/"


def test_key_successor_bounds_every_key_with_the_prefix() -> None:
    assert key_successor("photos/") == "photos0"
    assert key_successor("a\U0010ffff") == "b"
    assert key_successor("\ud7ff") == "\ue000"
    for key in ("photos/", "photos/x", "photos/\U0010ffff"):
        assert "photos/" <= key < key_successor("photos/")
