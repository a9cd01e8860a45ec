"""SigV4 against the examples AWS publishes in the S3 API reference
("Signature Calculations for the Authorization Header" and "Query String Authentication")."""

from __future__ import annotations

import hashlib

import pytest

from origin import sigv4

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS = "AKIAIOSFODNN7EXAMPLE"
HOST = "examplebucket.s3.amazonaws.com"
DATE = "20130524T000000Z"
SCOPE = sigv4.Scope("20130524", "us-east-1")


def _sign(method, path, query, headers, payload_hash):  # noqa: ANN001, ANN202
    signed = sorted(name.lower() for name, _v in headers)
    canonical = sigv4.canonical_request(method, path, query, headers, signed, payload_hash)
    return canonical, sigv4.signature(SECRET, SCOPE, sigv4.string_to_sign(DATE, SCOPE,
                                                                            canonical))


def test_get_object_example() -> None:
    headers = [("Host", HOST), ("Range", "bytes=0-9"),
               ("x-amz-content-sha256", sigv4.EMPTY_SHA256), ("x-amz-date", DATE)]
    canonical, signature = _sign("GET", "/test.txt", [], headers, sigv4.EMPTY_SHA256)
    assert hashlib.sha256(canonical.encode()).hexdigest() == \
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    assert signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


def test_put_object_example_encodes_the_path_once() -> None:
    payload = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    headers = [("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("Host", HOST),
               ("x-amz-content-sha256", payload), ("x-amz-date", DATE),
               ("x-amz-storage-class", "REDUCED_REDUNDANCY")]
    canonical, signature = _sign("PUT", "/test$file.text", [], headers, payload)
    assert "\n/test%24file.text\n" in canonical
    assert signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"


def test_get_bucket_lifecycle_example() -> None:
    headers = [("Host", HOST), ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
               ("x-amz-date", DATE)]
    _c, signature = _sign("GET", "/", [("lifecycle", "")], headers, sigv4.EMPTY_SHA256)
    assert signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"


def test_list_objects_example_sorts_the_query() -> None:
    headers = [("Host", HOST), ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
               ("x-amz-date", DATE)]
    _c, signature = _sign("GET", "/", [("prefix", "J"), ("max-keys", "2")], headers,
                          sigv4.EMPTY_SHA256)
    assert signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


def test_presigned_url_example() -> None:
    query = sigv4.presign_query(method="GET", path="/test.txt", host=HOST, access_key=ACCESS,
                                secret_key=SECRET, region="us-east-1", amz_date=DATE,
                                expires=86400)
    assert query[-1] == (
        "X-Amz-Signature", "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")


def test_sign_request_round_trips_through_the_parser() -> None:
    headers = sigv4.sign_request(method="GET", path="/b/k", query=[], headers={"Host": "h"},
                                 access_key=ACCESS, secret_key=SECRET, region="us-east-1",
                                 amz_date=DATE, payload_hash=sigv4.UNSIGNED_PAYLOAD)
    info = sigv4.parse_authorization(headers["Authorization"])
    assert info.access_key == ACCESS and info.scope == SCOPE
    assert info.signed_headers == ("host", "x-amz-content-sha256", "x-amz-date")


def test_canonical_forms() -> None:
    assert sigv4.canonical_uri("/b/a key/ü~") == "/b/a%20key/%C3%BC~"
    assert sigv4.canonical_query([("b", "2"), ("a", "x y/z"), ("a", "1")]) == \
        "a=1&a=x%20y%2Fz&b=2"
    assert sigv4.parse_query("a=x%20y&b&c=1+2") == [("a", "x y"), ("b", ""), ("c", "1+2")]
    assert sigv4.canonical_headers([("X-A", "  a   b "), ("x-a", "c"), ("Host", "h")],
                                   ["host", "x-a"]) == "host:h\nx-a:a b,c\n"


@pytest.mark.parametrize("header", [
    "AWS AKID:sig",
    "AWS4-HMAC-SHA256 Credential=AKID/2013/us-east-1/s3/aws4_request, SignedHeaders=host, "
    "Signature=ab",
    "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=ab",
])
def test_malformed_authorization_headers(header: str) -> None:
    with pytest.raises(sigv4.SigV4FormatError):
        sigv4.parse_authorization(header)


def test_signature_comparison_is_case_insensitive_and_exact() -> None:
    assert sigv4.signatures_match("abcd", "ABCD")
    assert not sigv4.signatures_match("abcd", "abce")
