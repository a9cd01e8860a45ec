"""Invalidation after unsafe methods (RFC 9111 §4.4), pure."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def invalidates(method: str, status: int) -> bool:
    """§4.4: "A cache MUST invalidate the target URI ... when it receives a non-error status
    code in response to an unsafe request method (including methods whose safety is
    unknown)". Non-error: 2xx and 3xx."""
    return method.upper() not in SAFE_METHODS and 200 <= status < 400


def invalidated_targets(target: str, location_values: list[str], host: str | None
                        ) -> list[str]:
    """The request targets (path and query) named by ``Location``/``Content-Location``.

    §4.4: "the URI(s) in the Location and Content-Location response header fields (if
    present) are candidates for invalidation" but "a cache MUST NOT trigger an invalidation
    under these conditions if the origin ... of the URI to be invalidated differs from that
    of the target URI". References are resolved against the target URI (RFC 9110 §10.2.2,
    §8.7); absolute URLs must name ``host`` (the request's authority).
    """
    base = f"http://{host or 'origin.invalid'}{target}"
    base_parts = urlsplit(base)
    targets: list[str] = []
    for value in location_values:
        value = value.strip()
        if not value:
            continue
        resolved = urlsplit(urljoin(base, value))
        if resolved.netloc.lower() != base_parts.netloc.lower():
            continue
        if resolved.scheme not in ("http", "https"):
            continue
        path = resolved.path or "/"
        targets.append(f"{path}?{resolved.query}" if resolved.query else path)
    return targets


def invalidated_paths(headers_location: list[str]) -> list[str]:
    """Compatibility helper: same-origin *absolute paths* among ``headers_location``."""
    return [v for v in headers_location if v.startswith("/") and not v.startswith("//")]
