"""AWS Signature Version 4 for S3, as pure functions (no clock, no I/O, no HTTP library).

The one implementation used both by the origin's verifier (``origin.api.auth``) and by our
client's signer (``origin.client``), so the two can never disagree about a detail. Follows
"Authenticating Requests (AWS Signature Version 4)" in the Amazon S3 API reference, including
S3's rule that the path is URI-encoded once (not twice, as for other services) and is not
normalised.

Inputs are *decoded* strings (path, query names and values); every function here re-encodes
them the canonical way, so a verifier is immune to how a client chose to percent-encode.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# aws-chunked bodies (``Content-Encoding: aws-chunked``): each chunk signed, chained from the
# request's (seed) signature; the -TRAILER forms end with trailing headers (checksums).
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SERVICE = "s3"
TERMINATOR = "aws4_request"
# Query parameters of a presigned URL; X-Amz-Signature is the one left out of the signature.
PRESIGN_SIGNATURE = "X-Amz-Signature"

_AUTH_HEADER = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*$")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z", re.ASCII)
_SCOPE_DATE = re.compile(r"\d{8}")


class SigV4FormatError(ValueError):
    """An Authorization header or presigned query that is not well-formed SigV4."""


@dataclass(frozen=True)
class Scope:
    """``date/region/service/aws4_request``: what a derived signing key is valid for."""

    date: str  # YYYYMMDD
    region: str
    service: str = SERVICE

    def __str__(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


@dataclass(frozen=True)
class SignedRequestInfo:
    """What a request claims about its signature (from the header or the query)."""

    access_key: str
    scope: Scope
    signed_headers: tuple[str, ...]
    signature: str


# -- encoding --------------------------------------------------------------------------------

def uri_encode(value: str, *, keep_slash: bool = False) -> str:
    """RFC 3986 encoding of every byte except the unreserved ``A-Za-z0-9-_.~`` (UTF-8)."""
    return quote(value, safe="/~" if keep_slash else "~")


def canonical_uri(path: str) -> str:
    """The decoded request path encoded once, slashes kept (S3 does not normalise paths)."""
    return uri_encode(path or "/", keep_slash=True)


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Sorted ``name=value`` pairs, names and values encoded, joined by ``&``."""
    encoded = sorted((uri_encode(k), uri_encode(v)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in encoded)


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Decode a raw query string into pairs, keeping ``+`` literal (AWS clients send a space
    as ``%20``) and ``name`` without ``=`` as an empty value."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _sep, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def canonical_headers(
    headers: Iterable[tuple[str, str]], signed: Sequence[str]
) -> str:
    """``name:value\\n`` for each signed header: lower-case names, trimmed values with inner
    runs of spaces collapsed, repeated headers joined with commas, in ``signed`` order."""
    wanted = set(signed)
    values: dict[str, list[str]] = {}
    for name, value in headers:
        name = name.lower()
        if name in wanted:  # unsigned headers are not normalised for nothing
            # trimmed, inner runs of whitespace as one space (what \s+ -> " " does)
            values.setdefault(name, []).append(" ".join(value.split()))
    lines = []
    for name in signed:
        if name not in values:
            raise SigV4FormatError(f"signed header {name!r} is not in the request")
        lines.append(f"{name}:{','.join(values[name])}\n")
    return "".join(lines)


# -- the signature -------------------------------------------------------------------------

def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    return "\n".join([
        method.upper(),
        canonical_uri(path),
        canonical_query(query),
        canonical_headers(headers, signed_headers),
        ";".join(signed_headers),
        payload_hash,
    ])


def string_to_sign(amz_date: str, scope: Scope, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return "\n".join([ALGORITHM, amz_date, str(scope), digest])


@functools.lru_cache(maxsize=1024)
def signing_key(secret_key: str, scope: Scope) -> bytes:
    """HMAC chain ``AWS4{secret}`` → date → region → service → ``aws4_request``.

    Memoised: the key depends only on the secret and the scope (day, region, service), so a
    verifier or signer derives it once a day per credential instead of four HMACs per
    request. The memo holds derived keys only for secrets this process already holds."""
    key = f"AWS4{secret_key}".encode()
    for part in (scope.date, scope.region, scope.service, TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret_key: str, scope: Scope, to_sign: str) -> str:
    return hmac.new(signing_key(secret_key, scope), to_sign.encode(), hashlib.sha256).hexdigest()


def sign_with_key(key: bytes, to_sign: str) -> str:
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def chunk_string_to_sign(amz_date: str, scope: Scope, previous_signature: str,
                         chunk_sha256_hex: str) -> str:
    """What signs one aws-chunked chunk ("Signature Calculations for the Authorization Header:
    Transferring Payload in Multiple Chunks")."""
    return "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, str(scope), previous_signature,
                      EMPTY_SHA256, chunk_sha256_hex])


def trailer_string_to_sign(amz_date: str, scope: Scope, previous_signature: str,
                           trailer_sha256_hex: str) -> str:
    """What signs the trailing headers of an aws-chunked body; the hash is over
    ``name:value\n`` of each trailer (the signature trailer excluded)."""
    return "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, str(scope), previous_signature,
                      trailer_sha256_hex])


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison (a timing side channel must not reveal the signature)."""
    return hmac.compare_digest(expected.lower().encode(), given.lower().encode())


# -- parsing what a request carries --------------------------------------------------------

def parse_credential(value: str) -> tuple[str, Scope]:
    """``AKID/20130524/us-east-1/s3/aws4_request`` → ``("AKID", Scope(...))``."""
    parts = value.split("/")
    if len(parts) != 5 or parts[4] != TERMINATOR or not _SCOPE_DATE.fullmatch(parts[1]):
        raise SigV4FormatError(f"malformed credential {value!r}")
    return parts[0], Scope(parts[1], parts[2], parts[3])


def parse_authorization(header: str) -> SignedRequestInfo:
    match = _AUTH_HEADER.match(header.strip())
    if not match:
        raise SigV4FormatError("Authorization header is not AWS4-HMAC-SHA256 "
                               "Credential=..., SignedHeaders=..., Signature=...")
    access_key, scope = parse_credential(match["credential"])
    return SignedRequestInfo(access_key, scope, tuple(match["signed"].split(";")),
                             match["signature"])


def check_amz_date(value: str) -> str:
    if not _AMZ_DATE.fullmatch(value):
        raise SigV4FormatError(f"X-Amz-Date {value!r} is not YYYYMMDDTHHMMSSZ")
    return value


# -- signing (client side) -----------------------------------------------------------------

def sign_request(
    *,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    access_key: str,
    secret_key: str,
    region: str,
    amz_date: str,
    payload_hash: str,
) -> dict[str, str]:
    """Headers to add to a request (``X-Amz-Date``, ``X-Amz-Content-SHA256``,
    ``Authorization``); every header given, plus those two, is signed. ``headers`` must
    include ``Host``."""
    all_headers = {**headers, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
    signed = sorted({name.lower() for name in all_headers})
    scope = Scope(amz_date[:8], region)
    canonical = canonical_request(method, path, list(query), all_headers.items(), signed,
                                  payload_hash)
    sig = signature(secret_key, scope, string_to_sign(amz_date, scope, canonical))
    return {
        "X-Amz-Date": amz_date,
        "X-Amz-Content-SHA256": payload_hash,
        "Authorization": (f"{ALGORITHM} Credential={access_key}/{scope}, "
                          f"SignedHeaders={';'.join(signed)}, Signature={sig}"),
    }


def presign_query(
    *,
    method: str,
    path: str,
    host: str,
    access_key: str,
    secret_key: str,
    region: str,
    amz_date: str,
    expires: int,
    query: Iterable[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """Query parameters of a presigned URL (host is the only signed header)."""
    scope = Scope(amz_date[:8], region)
    params = [*query,
              ("X-Amz-Algorithm", ALGORITHM),
              ("X-Amz-Credential", f"{access_key}/{scope}"),
              ("X-Amz-Date", amz_date),
              ("X-Amz-Expires", str(expires)),
              ("X-Amz-SignedHeaders", "host")]
    canonical = canonical_request(method, path, params, [("host", host)], ["host"],
                                  UNSIGNED_PAYLOAD)
    sig = signature(secret_key, scope, string_to_sign(amz_date, scope, canonical))
    return [*params, (PRESIGN_SIGNATURE, sig)]
