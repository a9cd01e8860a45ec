"""Signed edge URLs (pure: ``now`` is passed in; HMAC via ``itsdangerous``).

A signed URL carries ``exp`` (unix expiry), ``kid`` (which key signed it, so keys can be
rotated: the edge holds several) and ``sig``. Two optional bindings are part of what is
signed:

* ``ip=1`` binds the URL to the client address it was issued for (the address itself is not
  in the URL; the edge supplies the address it sees);
* ``pfx=/bucket/dir/`` signs a path prefix instead of one path, so one signature covers
  every object under it (paths with ``.``/``..`` segments are refused in that mode, or
  ``/bucket/dir/../secret`` would slip past the prefix at an origin that normalises).

The signed message is ``kid``, ``exp``, the scope (the exact path, or the prefix), the bound
IP (or nothing) and — for exact-path signatures — the rest of the query string, so no
parameter can be added to or changed in a signed URL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

from itsdangerous import BadSignature as _ItsBadSignature
from itsdangerous import Signer

from httpcache.errors import Forbidden

SALT = "cdn.edge.signed-url.v1"
SIGNATURE_PARAMS = frozenset({"exp", "kid", "sig", "ip", "pfx"})


class SignatureError(Forbidden):
    """A signed bucket was requested without a valid signature."""


class MissingSignature(SignatureError):
    pass


class MalformedSignature(SignatureError):
    pass


class UnknownKey(SignatureError):
    pass


class ExpiredSignature(SignatureError):
    pass


class BadSignature(SignatureError):
    pass


class PrefixMismatch(SignatureError):
    pass


def _signer(secret: str) -> Signer:
    return Signer(secret, salt=SALT, digest_method=hashlib.sha256, key_derivation="hmac")


def _message(key_id: str, expires_at: int, scope: str, client_ip: str | None,
             query: str) -> bytes:
    return "\n".join([key_id, str(expires_at), scope, client_ip or "", query]).encode()


def _split_query(query: str) -> tuple[dict[str, str], str]:
    """(signature parameters, the rest of the query in its original form)."""
    params: dict[str, str] = {}
    rest = []
    for part in query.split("&") if query else []:
        if not part:
            continue
        name, _, value = part.partition("=")
        decoded = unquote_plus(name)
        if decoded in SIGNATURE_PARAMS:
            if decoded in params:
                raise MalformedSignature(f"signature parameter {decoded!r} given twice")
            params[decoded] = unquote_plus(value)
        else:
            rest.append(part)
    return params, "&".join(rest)


def has_dot_segments(path: str) -> bool:
    return any(seg in (".", "..") for seg in unquote(path).split("/"))


def sign_url(url_or_path: str, *, key_id: str, secret: str, expires_at: int,
             client_ip: str | None = None, path_prefix: str | None = None) -> str:
    """``url_or_path`` with ``exp``, ``kid`` (and ``ip``/``pfx``) and ``sig`` appended."""
    parts = urlsplit(url_or_path)
    path = parts.path or "/"
    existing, rest = _split_query(parts.query)
    if existing:
        raise ValueError(f"URL already has signature parameters: {sorted(existing)}")
    if path_prefix is not None:
        if not path_prefix.startswith("/"):
            raise ValueError(f"prefix must start with '/', got {path_prefix!r}")
        if not unquote(path).startswith(path_prefix):
            raise ValueError(f"path {path!r} is not under prefix {path_prefix!r}")
        scope, signed_query = f"prefix:{path_prefix}", ""
    else:
        scope, signed_query = f"path:{path}", rest
    sig = _signer(secret).get_signature(
        _message(key_id, expires_at, scope, client_ip, signed_query)).decode()
    added = [f"exp={expires_at}", f"kid={quote(key_id, safe='')}"]
    if client_ip is not None:
        added.append("ip=1")
    if path_prefix is not None:
        added.append(f"pfx={quote(path_prefix, safe='/')}")
    added.append(f"sig={sig}")
    query = "&".join([p for p in [rest] if p] + added)
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


@dataclass(frozen=True, slots=True)
class VerifiedUrl:
    key_id: str
    expires_at: int
    query: str  # the query without signature parameters (for the cache key and upstream)


def verify(path: str, query: str, keys: Mapping[str, str], now: float,
           client_ip: str | None) -> VerifiedUrl:
    """Check a request's signature; raise a ``SignatureError`` saying what is wrong."""
    params, rest = _split_query(query)
    if "sig" not in params or "exp" not in params or "kid" not in params:
        raise MissingSignature("this URL needs a signature (exp, kid and sig parameters)")
    key_id = params["kid"]
    secret = keys.get(key_id)
    if secret is None:
        raise UnknownKey(f"unknown signing key id {key_id!r}")
    try:
        expires_at = int(params["exp"])
    except ValueError:
        raise MalformedSignature(f"exp must be a unix time, got {params['exp']!r}") from None
    if now > expires_at:
        raise ExpiredSignature(f"signature expired {int(now - expires_at)}s ago")
    bound_ip = client_ip if params.get("ip") == "1" else None
    if params.get("ip") not in (None, "1"):
        raise MalformedSignature("ip must be 1 when present")
    if params.get("ip") == "1" and not client_ip:
        raise BadSignature("signature is bound to a client IP and the client's is unknown")
    if "pfx" in params:
        prefix = params["pfx"]
        if not unquote(path).startswith(prefix) or has_dot_segments(path):
            raise PrefixMismatch(f"path is not under the signed prefix {prefix!r}")
        scope, signed_query = f"prefix:{prefix}", ""
    else:
        scope, signed_query = f"path:{path}", rest
    message = _message(key_id, expires_at, scope, bound_ip, signed_query)
    try:
        valid = _signer(secret).verify_signature(message, params["sig"].encode())
    except _ItsBadSignature:
        valid = False
    if not valid:
        detail = " (or wrong client IP)" if bound_ip else ""
        raise BadSignature(f"signature does not match this URL{detail}")
    return VerifiedUrl(key_id, expires_at, rest)


def requires_signature(path: str, signed_buckets: tuple[str, ...]) -> bool:
    """Whether the first path segment names a signed bucket (``*`` = every bucket)."""
    if not signed_buckets:
        return False
    if "*" in signed_buckets:
        return True
    bucket = path.lstrip("/").split("/", 1)[0]
    return unquote(bucket) in signed_buckets
