"""Who sent a request (AWS SigV4, header or presigned-query form) and what they may do.

The signature maths lives in ``origin.sigv4``; this module only gathers the request's parts,
looks the access key up, compares in constant time and applies S3's time rules. The decision
"may this principal do that to this bucket" is a pure function (``authorize``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import unquote

from origin import sigv4
from origin.aws_chunked import ChunkSigning
from origin.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    ClientError,
    InvalidAccessKeyId,
    InvalidArgument,
    NotImplementedYet,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from origin.metadata.models import Bucket, Credential

ADMIN_OWNER = "admin"
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_ONLY_V4 = ("The authorization mechanism you have provided is not supported. "
            "Please use AWS4-HMAC-SHA256.")

CredentialLookup = Callable[[str], Awaitable[Credential | None]]
Action = Literal["read", "write"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``payload_sha256`` is the body hash the client signed, when
    it declared a real one (the PUT path checks the body against it before committing)."""

    access_key: str
    owner: str
    payload_sha256: str | None = None
    # aws-chunked bodies: the declared STREAMING-* mode and, for the signed modes, what
    # verifies each chunk's signature.
    streaming: str | None = None
    chunk_signing: ChunkSigning | None = None

    @property
    def is_admin(self) -> bool:
        return self.owner == ADMIN_OWNER


@dataclass(frozen=True)
class RequestParts:
    """The pieces of an HTTP request that SigV4 signs, as received (raw path and query)."""

    method: str
    raw_path: str
    raw_query: str
    headers: Iterable[tuple[str, str]]
    # The same headers as a case-insensitive mapping (aiohttp's CIMultiDict), when there is
    # one: ``header`` then looks a name up instead of scanning every field (three per request).
    by_name: Mapping[str, str] | None = None

    def header(self, name: str) -> str | None:
        if self.by_name is not None:
            return self.by_name.get(name)
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


def _parse_amz_date(value: str) -> datetime:
    try:
        v = sigv4.check_amz_date(value)  # YYYYMMDDTHHMMSSZ, digits checked
        return datetime(int(v[0:4]), int(v[4:6]), int(v[6:8]), int(v[9:11]), int(v[11:13]),
                        int(v[13:15]), tzinfo=UTC)
    except (sigv4.SigV4FormatError, ValueError):
        raise AccessDenied(f"X-Amz-Date {value!r} is not a valid YYYYMMDDTHHMMSSZ date") \
            from None


def _check_scope(scope: sigv4.Scope, amz_date: str, region: str) -> None:
    if scope.service != sigv4.SERVICE:
        raise AuthorizationHeaderMalformed(f"credential scope service {scope.service!r} is "
                                           f"not 's3'")
    if scope.region != region:
        raise AuthorizationHeaderMalformed(f"the region {scope.region!r} is wrong; "
                                           f"expecting {region!r}")
    if scope.date != amz_date[:8]:
        raise SignatureDoesNotMatch("credential scope date does not match X-Amz-Date")


async def _verify(
    parts: RequestParts,
    info: sigv4.SignedRequestInfo,
    query: list[tuple[str, str]],
    amz_date: str,
    payload_hash: str,
    lookup: CredentialLookup,
) -> tuple[Credential, str]:
    """The credential of a correctly signed request, and the signature (the seed of an
    aws-chunked body's chunk signatures)."""
    credential = await lookup(info.access_key)
    if credential is None:
        raise InvalidAccessKeyId()
    if "host" not in info.signed_headers:
        raise AccessDenied("the host header must be signed")
    try:
        canonical = sigv4.canonical_request(parts.method, unquote(parts.raw_path), query,
                                            parts.headers, info.signed_headers, payload_hash)
    except sigv4.SigV4FormatError as exc:
        raise SignatureDoesNotMatch(str(exc)) from None
    expected = sigv4.signature(credential.secret_key, info.scope,
                               sigv4.string_to_sign(amz_date, info.scope, canonical))
    if not sigv4.signatures_match(expected, info.signature):
        raise SignatureDoesNotMatch()
    return credential, expected


async def authenticate(
    parts: RequestParts, lookup: CredentialLookup, *, region: str, now: datetime,
    max_skew: int,
) -> Principal | None:
    """The principal of a signed request, ``None`` for an anonymous one; raises the S3
    error a bad signature deserves."""
    query = sigv4.parse_query(parts.raw_query) if parts.raw_query else []
    header = parts.header("Authorization")
    if header is not None:
        return await _authenticate_header(parts, header, query, lookup, region, now, max_skew)
    names = {k for k, _v in query}
    if "X-Amz-Algorithm" in names or "X-Amz-Signature" in names:
        return await _authenticate_presigned(parts, query, lookup, region, now, max_skew)
    if "AWSAccessKeyId" in names and "Signature" in names:
        raise ClientError(_ONLY_V4)
    return None


async def _authenticate_header(
    parts: RequestParts, header: str, query: list[tuple[str, str]], lookup: CredentialLookup,
    region: str, now: datetime, max_skew: int,
) -> Principal:
    if not header.startswith(sigv4.ALGORITHM):
        raise ClientError(_ONLY_V4)
    try:
        info = sigv4.parse_authorization(header)
    except sigv4.SigV4FormatError as exc:
        raise AuthorizationHeaderMalformed(str(exc)) from None
    amz_date = parts.header("X-Amz-Date")
    if amz_date is None:
        raise AccessDenied("signed requests must carry X-Amz-Date")
    moment = _parse_amz_date(amz_date)
    if abs((now - moment).total_seconds()) > max_skew:
        raise RequestTimeTooSkewed()
    _check_scope(info.scope, amz_date, region)
    payload_hash = parts.header("X-Amz-Content-SHA256")
    if payload_hash is None:
        raise ClientError("Missing required header for this request: x-amz-content-sha256")
    streaming = payload_hash in sigv4.STREAMING_MODES
    if payload_hash.startswith("STREAMING-") and not streaming:
        raise NotImplementedYet(f"x-amz-content-sha256 {payload_hash} is not supported")
    if (payload_hash != sigv4.UNSIGNED_PAYLOAD and not streaming
            and not _SHA256_HEX.match(payload_hash)):
        raise InvalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-* or "
                              "a hex SHA-256")
    credential, seed = await _verify(parts, info, query, amz_date, payload_hash, lookup)
    if streaming:
        signing = None
        if payload_hash != sigv4.STREAMING_UNSIGNED_TRAILER:
            signing = ChunkSigning(sigv4.signing_key(credential.secret_key, info.scope),
                                   amz_date, info.scope, seed)
        return Principal(credential.access_key, credential.owner, None, payload_hash, signing)
    declared = None if payload_hash == sigv4.UNSIGNED_PAYLOAD else payload_hash
    return Principal(credential.access_key, credential.owner, declared)


async def _authenticate_presigned(
    parts: RequestParts, query: list[tuple[str, str]], lookup: CredentialLookup,
    region: str, now: datetime, max_skew: int,
) -> Principal:
    params = dict(query)
    try:
        if params["X-Amz-Algorithm"] != sigv4.ALGORITHM:
            raise InvalidArgument("X-Amz-Algorithm must be AWS4-HMAC-SHA256")
        access_key, scope = sigv4.parse_credential(params["X-Amz-Credential"])
        amz_date = params["X-Amz-Date"]
        expires = int(params["X-Amz-Expires"])
        signed = tuple(params["X-Amz-SignedHeaders"].split(";"))
        given = params[sigv4.PRESIGN_SIGNATURE]
    except KeyError as exc:
        raise AuthorizationHeaderMalformed(f"presigned URL lacks {exc.args[0]}") from None
    except (ValueError, sigv4.SigV4FormatError) as exc:
        raise AuthorizationHeaderMalformed(f"malformed presigned URL: {exc}") from None
    if not 1 <= expires <= MAX_PRESIGN_EXPIRES:
        raise AuthorizationHeaderMalformed(f"X-Amz-Expires must be 1..{MAX_PRESIGN_EXPIRES}")
    moment = _parse_amz_date(amz_date)
    age = (now - moment).total_seconds()
    if age > expires:
        raise AccessDenied("Request has expired")
    if age < -max_skew:
        raise AccessDenied("Request is not yet valid")
    _check_scope(scope, amz_date, region)
    info = sigv4.SignedRequestInfo(access_key, scope, signed, given)
    unsigned = [(k, v) for k, v in query if k != sigv4.PRESIGN_SIGNATURE]
    payload_hash = params.get("X-Amz-Content-Sha256", sigv4.UNSIGNED_PAYLOAD)
    credential, _seed = await _verify(parts, info, unsigned, amz_date, payload_hash, lookup)
    return Principal(credential.access_key, credential.owner)


def authorize(principal: Principal | None, bucket: Bucket | None, action: Action) -> None:
    """Raise ``AccessDenied`` unless ``principal`` may ``action`` on ``bucket``.

    Anonymous callers may only read public buckets; owners may do anything to their buckets;
    the admin to all. ``bucket`` is ``None`` when it does not exist: this passes and the
    caller answers NoSuchBucket, to anonymous callers too, as S3 does (bucket names are a
    global namespace, so their existence is no secret).
    """
    if bucket is None:
        return
    if principal is None:
        if not bucket.public_read or action != "read":
            raise AccessDenied()
        return
    if principal.is_admin or bucket.owner == principal.owner:
        return
    raise AccessDenied()
