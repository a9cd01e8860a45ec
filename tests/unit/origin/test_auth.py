"""Request authentication (SigV4 header and presigned forms) and authorisation rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from origin import sigv4
from origin.api.auth import Principal, RequestParts, authenticate, authorize
from origin.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    InvalidAccessKeyId,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from origin.metadata.models import Bucket, Credential

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
AMZ_DATE = NOW.strftime("%Y%m%dT%H%M%SZ")
CREDS = {"AK": Credential("AK", "secret", "alice")}


async def _lookup(access_key: str) -> Credential | None:
    return CREDS.get(access_key)


def _signed(path: str = "/b/k", query: list[tuple[str, str]] | None = None,
            secret: str = "secret", amz_date: str = AMZ_DATE,
            payload: str = sigv4.UNSIGNED_PAYLOAD) -> RequestParts:
    query = query or []
    headers = {"Host": "origin:9000"}
    headers.update(sigv4.sign_request(method="GET", path=path, query=query, headers=headers,
                                      access_key="AK", secret_key=secret, region="us-east-1",
                                      amz_date=amz_date, payload_hash=payload))
    raw_query = sigv4.canonical_query(query)
    return RequestParts("GET", sigv4.canonical_uri(path), raw_query, list(headers.items()))


async def _auth(parts: RequestParts, now: datetime = NOW) -> Principal | None:
    return await authenticate(parts, _lookup, region="us-east-1", now=now, max_skew=900)


async def test_valid_header_signature() -> None:
    principal = await _auth(_signed("/b/a key", [("x", "1 2")]))
    assert principal == Principal("AK", "alice", None)
    sha = "a" * 64
    principal = await _auth(_signed(payload=sha))
    assert principal is not None and principal.payload_sha256 == sha


async def test_anonymous_request_has_no_principal() -> None:
    assert await _auth(RequestParts("GET", "/b/k", "", [("Host", "h")])) is None


async def test_wrong_secret_unknown_key_and_tampering() -> None:
    with pytest.raises(SignatureDoesNotMatch):
        await _auth(_signed(secret="other"))
    parts = _signed()
    with pytest.raises(SignatureDoesNotMatch):
        await _auth(RequestParts("GET", "/b/other", "", parts.headers))
    headers = [(k, v.replace("Credential=AK/", "Credential=ZZ/")) for k, v in parts.headers]
    with pytest.raises(InvalidAccessKeyId):
        await _auth(RequestParts("GET", "/b/k", "", headers))


async def test_clock_skew_is_limited() -> None:
    with pytest.raises(RequestTimeTooSkewed):
        await _auth(_signed(), now=NOW + timedelta(minutes=16))


async def test_malformed_header() -> None:
    parts = RequestParts("GET", "/", "", [("Authorization", "AWS4-HMAC-SHA256 nonsense")])
    with pytest.raises(AuthorizationHeaderMalformed):
        await _auth(parts)


async def test_presigned_query() -> None:
    query = sigv4.presign_query(method="GET", path="/b/k", host="origin:9000",
                                access_key="AK", secret_key="secret", region="us-east-1",
                                amz_date=AMZ_DATE, expires=60)
    parts = RequestParts("GET", "/b/k", sigv4.canonical_query(query), [("Host", "origin:9000")])
    assert await _auth(parts) == Principal("AK", "alice")
    with pytest.raises(AccessDenied, match="expired"):
        await _auth(parts, now=NOW + timedelta(seconds=61))
    other = RequestParts("GET", "/b/other", parts.raw_query, parts.headers)
    with pytest.raises(SignatureDoesNotMatch):
        await _auth(other)


def test_authorize_rules() -> None:
    public = Bucket("pub", "alice", True, NOW)
    private = Bucket("priv", "alice", False, NOW)
    authorize(None, public, "read")
    authorize(None, None, "write")  # lets the handler answer NoSuchBucket, as S3 does
    for bucket, action in [(public, "write"), (private, "read")]:
        with pytest.raises(AccessDenied):
            authorize(None, bucket, action)  # type: ignore[arg-type]
    alice, bob, admin = Principal("a", "alice"), Principal("b", "bob"), Principal("x", "admin")
    authorize(alice, private, "write")
    authorize(admin, private, "write")
    authorize(bob, None, "read")  # lets the handler answer NoSuchBucket
    with pytest.raises(AccessDenied):
        authorize(bob, private, "read")


async def test_headers_looked_up_by_name_authenticate_like_the_scanned_list() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    parts = _signed()
    by_name = CIMultiDictProxy(CIMultiDict(list(parts.headers)))
    mapped = RequestParts("GET", parts.raw_path, parts.raw_query, parts.headers, by_name)
    assert mapped.header("x-amz-date") == parts.header("X-AMZ-DATE") == AMZ_DATE
    assert await _auth(mapped) == await _auth(parts) == Principal("AK", "alice", None)
    # The mapping is what ``header`` reads: without the date there, the request is refused.
    undated = CIMultiDict(list(parts.headers))
    del undated["X-Amz-Date"]
    with pytest.raises(AccessDenied, match="X-Amz-Date"):
        await _auth(RequestParts("GET", parts.raw_path, parts.raw_query, parts.headers,
                                 undated))
