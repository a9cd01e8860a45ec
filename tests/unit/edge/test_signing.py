"""Signed URLs: valid, expired, tampered, unknown/rotated keys, IP and prefix bindings."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from edge.signing import (
    BadSignature,
    ExpiredSignature,
    MalformedSignature,
    MissingSignature,
    PrefixMismatch,
    UnknownKey,
    requires_signature,
    sign_url,
    verify,
)

NOW = 1_700_000_000
KEYS = {"k1": "secret-one", "k2": "secret-two"}


def check(url: str, *, now: float = NOW, ip: str | None = None, path: str | None = None,
          keys: dict[str, str] = KEYS) -> str:
    parts = urlsplit(url)
    return verify(path or parts.path, parts.query, keys, now, ip).query


def signed(path: str = "/private/a.txt", **kwargs: object) -> str:
    options: dict = {"key_id": "k1", "secret": KEYS["k1"], "expires_at": NOW + 60, **kwargs}
    return sign_url(path, **options)


def test_valid_signature_returns_query_without_signature_params() -> None:
    url = signed("/private/a.txt?v=2&lang=en")
    assert check(url) == "v=2&lang=en"


def test_full_urls_keep_scheme_and_host() -> None:
    url = signed("https://edge.example/private/a.txt")
    assert url.startswith("https://edge.example/private/a.txt?exp=")
    assert check(url) == ""


def test_expired_signature() -> None:
    with pytest.raises(ExpiredSignature, match="expired 1s ago"):
        check(signed(), now=NOW + 61)


def test_missing_signature() -> None:
    with pytest.raises(MissingSignature):
        check("/private/a.txt")
    with pytest.raises(MissingSignature):
        check(signed().replace("&sig=", "&nosig="))


def test_tampered_path_query_expiry_and_signature() -> None:
    url = signed("/private/a.txt?v=1")
    with pytest.raises(BadSignature):
        check(url, path="/private/b.txt")
    with pytest.raises(BadSignature):
        check(url.replace("v=1", "v=2"))
    with pytest.raises(BadSignature):
        check(url.replace(f"exp={NOW + 60}", f"exp={NOW + 9999}"))
    with pytest.raises(BadSignature):
        check(url[:-2] + ("A" if url[-2] != "A" else "B") + url[-1])
    with pytest.raises(BadSignature):
        check(url + "&extra=1")


def test_unknown_key_id() -> None:
    with pytest.raises(UnknownKey, match="k9"):
        check(signed(key_id="k9", secret="x"))


def test_wrong_key_for_key_id() -> None:
    with pytest.raises(BadSignature):
        check(signed(key_id="k2", secret=KEYS["k1"]))


def test_rotation_both_keys_verify_and_retired_key_fails() -> None:
    old = signed(key_id="k1", secret=KEYS["k1"])
    new = signed(key_id="k2", secret=KEYS["k2"])
    assert check(old) == "" and check(new) == ""
    with pytest.raises(UnknownKey):
        check(old, keys={"k2": KEYS["k2"]})


def test_ip_binding() -> None:
    url = signed(client_ip="203.0.113.7")
    assert "ip=1" in url and "203.0.113.7" not in url
    assert check(url, ip="203.0.113.7") == ""
    with pytest.raises(BadSignature, match="client IP"):
        check(url, ip="198.51.100.1")
    with pytest.raises(BadSignature):
        check(url.replace("&ip=1", ""), ip="203.0.113.7")


def test_prefix_binding_covers_many_objects() -> None:
    url = signed("/private/dir/a.txt", path_prefix="/private/dir/")
    assert check(url) == ""
    assert check(url, path="/private/dir/sub/b.txt") == ""
    with pytest.raises(PrefixMismatch):
        check(url, path="/private/other.txt")
    with pytest.raises(PrefixMismatch):
        check(url, path="/private/dir/../secret.txt")
    with pytest.raises(PrefixMismatch):
        check(url, path="/private/dir/%2e%2e/secret.txt")
    with pytest.raises(BadSignature):
        check(url.replace("pfx=/private/dir/", "pfx=/private/"), path="/private/x")


def test_malformed_parameters() -> None:
    with pytest.raises(MalformedSignature):
        check(signed().replace(f"exp={NOW + 60}", "exp=soon"))
    with pytest.raises(MalformedSignature):
        check(signed() + "&kid=k1")


def test_sign_url_refuses_a_path_outside_its_prefix() -> None:
    with pytest.raises(ValueError, match="not under prefix"):
        signed("/private/a.txt", path_prefix="/other/")


def test_requires_signature_by_first_path_segment() -> None:
    assert requires_signature("/private/a", ("private",))
    assert not requires_signature("/public/a", ("private",))
    assert not requires_signature("/privateer/a", ("private",))
    assert requires_signature("/anything", ("*",))
    assert not requires_signature("/private/a", ())
