"""Errors of the cache tiers, each carrying the HTTP status it maps to.

Client-side errors (the request is refused: 4xx) and upstream-side errors (the next hop
failed: 5xx) are distinct classes so callers can, e.g., fail over on ``UpstreamUnavailable``
only. Foreign exceptions (aiohttp, redis) are wrapped where they occur
(``httpcache.upstream.wrap_client_errors``) and never leak past the package.
"""

from __future__ import annotations


class CacheError(Exception):
    """Base: ``status`` is the HTTP status answered; ``str(exc)`` the readable body."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientSideError(CacheError):
    status = 400


class MalformedRequest(ClientSideError):
    """The request cannot be parsed as HTTP/1.1 (RFC 9112): 400, and the connection closes."""


class HeadTooLarge(ClientSideError):
    """The request head is larger than the server reads (RFC 6585 §5)."""

    status = 431


class Forbidden(ClientSideError):
    """The request is not allowed (bad URL signature, missing edge authentication)."""

    status = 403


class OnlyIfCachedMiss(CacheError):
    """RFC 9111 §5.2.1.7: only-if-cached with nothing stored → 504."""

    status = 504


class UpstreamError(CacheError):
    """The next hop (shield or origin) failed."""

    status = 502


class UpstreamUnavailable(UpstreamError):
    """Could not connect at all: nothing was sent, so another upstream may be tried."""


class UpstreamDisconnected(UpstreamError):
    """The upstream closed the connection before answering (e.g. it is shutting down); a
    request without a body may be retried elsewhere."""


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamBodyError(UpstreamError):
    """The upstream broke off while sending the body (after the head was sent on)."""


class SliceMismatch(UpstreamError):
    """A slice fetched after the response head was sent belongs to another representation
    (ETag, Last-Modified or length changed): the response can only be cut short."""


class PurgeError(CacheError):
    """A purge message or the purge log could not be read."""


class StoreError(CacheError):
    """A cache tier could not read or write what it holds (a disk body, the shared Redis
    tier). A lookup that fails is a miss; a body that fails mid-stream cuts the response."""
