"""The shield's SigV4 signer produces what the origin's verifier recomputes."""

from __future__ import annotations

import urllib.parse

from origin import sigv4
from shield.origin_auth import host_header, sigv4_signer

AK, SK = "AKIDSHIELD", "shield-secret"


def _recompute(method: str, target: str, headers: dict[str, str], host: str) -> str:
    """What the origin does: decode the raw target, rebuild the canonical request."""
    info = sigv4.parse_authorization(headers["Authorization"])
    raw_path, _, raw_query = target.partition("?")
    signed_headers = {"host": host, "x-amz-date": headers["X-Amz-Date"],
                      "x-amz-content-sha256": headers["X-Amz-Content-SHA256"]}
    canonical = sigv4.canonical_request(
        method, urllib.parse.unquote(raw_path), sigv4.parse_query(raw_query),
        signed_headers.items(), info.signed_headers, headers["X-Amz-Content-SHA256"])
    return sigv4.signature(SK, info.scope,
                           sigv4.string_to_sign(headers["X-Amz-Date"], info.scope, canonical))


def test_signature_verifies_for_encoded_paths_and_queries():
    sign = sigv4_signer("http://127.0.0.1:9000", AK, SK, "us-east-1", clock=lambda: 1.8e9)
    for method, target in [("GET", "/private/secret.txt"),
                           ("HEAD", "/b/a%20b%2Bc.txt?versionId=3&x="),
                           ("PUT", "/b/k?partNumber=2&uploadId=abc")]:
        headers = sign(method, target)
        assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
        assert headers["X-Amz-Date"] == "20270115T080000Z"
        info = sigv4.parse_authorization(headers["Authorization"])
        assert info.access_key == AK and info.scope.region == "us-east-1"
        assert _recompute(method, target, headers, "127.0.0.1:9000") == info.signature


def test_host_header_matches_what_aiohttp_sends():
    assert host_header("http://127.0.0.1:9000") == "127.0.0.1:9000"
    assert host_header("http://origin.example") == "origin.example"
    assert host_header("https://origin.example:8443/") == "origin.example:8443"
