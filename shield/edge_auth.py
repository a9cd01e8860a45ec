"""Edge → shield authentication with a shared secret (pure: ``now`` is passed in).

The edge sends ``X-CDN-Edge-Auth: {unix_ts}.{hex hmac-sha256(secret, f"{ts}\\n{METHOD}\\n
{path_with_query}")}``. Binding method and target means a captured header cannot be replayed
for another object, and the timestamp bounds replays of the same one to ``MAX_SKEW`` seconds
either side (clocks of edges and shields need only be roughly in step).
"""

from __future__ import annotations

import hashlib
import hmac

from httpcache.errors import Forbidden

HEADER = "X-CDN-Edge-Auth"
MAX_SKEW = 300


class EdgeAuthError(Forbidden):
    """The request did not come from an edge holding the shared secret."""


class MissingEdgeAuth(EdgeAuthError):
    pass


class MalformedEdgeAuth(EdgeAuthError):
    pass


class StaleEdgeAuth(EdgeAuthError):
    pass


class BadEdgeAuth(EdgeAuthError):
    pass


def _mac(secret: str, ts: int, method: str, target: str) -> str:
    message = f"{ts}\n{method.upper()}\n{target}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, method: str, target: str, now: float) -> str:
    """The header value for a request of ``method`` to ``target`` (path with query)."""
    ts = int(now)
    return f"{ts}.{_mac(secret, ts, method, target)}"


def verify(value: str | None, secret: str, method: str, target: str, now: float,
           max_skew: int = MAX_SKEW) -> None:
    """Raise an ``EdgeAuthError`` (403) unless ``value`` signs this request recently."""
    if not value:
        raise MissingEdgeAuth(f"missing {HEADER} header: this shield only serves CDN edges")
    ts_text, sep, given = value.strip().partition(".")
    if not sep or not ts_text.isdigit() or not given:
        raise MalformedEdgeAuth(f"malformed {HEADER} header (expected '<unix ts>.<hex hmac>')")
    ts = int(ts_text)
    if abs(ts - now) > max_skew:
        raise StaleEdgeAuth(f"{HEADER} timestamp {ts} is {int(abs(ts - now))}s away from the "
                            f"shield's clock (allowed: {max_skew}s)")
    if not hmac.compare_digest(given, _mac(secret, ts, method, target)):
        raise BadEdgeAuth(f"{HEADER} signature does not match this request")
