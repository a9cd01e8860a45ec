"""The next hop (a shield, or an origin) as seen by the engine.

``Upstream.open`` sends one request and yields the response head with a chunk iterator; the
engine never touches aiohttp's client types. aiohttp exceptions are mapped to
``httpcache.errors`` here, the package edge (``wrap_client_errors``).

The client session is created by the application's cleanup context with: no cookie jar (a
shared proxy must never replay one user's cookies for another), no automatic decompression
(bytes pass through exactly as the upstream sent them) and no redirect following (redirects
are responses like any other).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import aiohttp
from yarl import URL

from httpcache.errors import (
    UpstreamBodyError,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from httpcache.headers import Fields, end_to_end
from httpcache.lean_client import LeanCall, LeanExchange, LeanPools
from httpcache.messages import Chunk

CHUNK_SIZE = 64 * 1024


def _no_whole() -> None:
    return None


def _nothing() -> None:
    pass


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: Fields  # end-to-end fields only
    chunks: AsyncIterator[Chunk]
    upstream: str  # which upstream answered (base URL), for logs and metrics
    # once ``chunks`` is exhausted: the whole body when it was read into one buffer (the
    # chunks were views of it; ``lean_client``), so keeping it needs no join
    whole: Callable[[], bytearray | None] = _no_whole
    # say, before reading ``chunks``, that the whole body will be kept: the lean client then
    # reads even a long body into one buffer (``lean_client.LeanBody.keep_whole``)
    keep_whole: Callable[[], None] = _nothing


class Upstream(Protocol):
    def open(
        self,
        method: str,
        target: str,
        headers: Fields,
        body: AsyncIterable[bytes] | None = None,
        *,
        cache_key: str,
    ) -> AbstractAsyncContextManager[UpstreamResponse]: ...

    def call_now(self, target: str, headers: Fields, listener: Callable[[], None], *,
                 cache_key: str) -> LeanCall | None:
        """``GET target`` sent at once and read by callbacks (``httpcache.callback_fill``),
        or ``None`` when it cannot be sent so: the caller then uses ``open``."""
        ...


@contextlib.contextmanager
def wrap_client_errors(where: str) -> Iterator[None]:
    """Map aiohttp/asyncio failures to our errors, naming the upstream in the message."""
    try:
        yield
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnavailable(f"cannot reach upstream {where}: {exc}") from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise UpstreamDisconnected(f"upstream {where} closed the connection") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout(f"upstream {where} timed out") from exc
    except aiohttp.ClientPayloadError as exc:
        raise UpstreamBodyError(f"upstream {where} broke off the body: {exc}") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"upstream {where} failed: {exc.__class__.__name__}: {exc}") from exc


def new_client_session(connect_timeout: float = 5.0, read_timeout: float = 60.0,
                       limit: int = 256) -> aiohttp.ClientSession:
    """One keep-alive session per application (see the module docstring)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout,
                                      sock_read=read_timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
    )


RequestSigner = Callable[[str, str], dict[str, str]]  # (method, target) -> extra headers


class HttpUpstream:
    """One base URL (``http://host:port``) reached through a shared client session, and for
    GETs without a body over plain HTTP through ``lean`` (``httpcache.lean_client``) when
    given: the requests a cache fill sends, at a fraction of aiohttp's client cost."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str,
                 signer: RequestSigner | None = None, *, lean: LeanPools | None = None
                 ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.lean = lean
        base = URL(self.base_url)
        self._lean_where: tuple[str, int, str] | None = None
        if (lean is not None and base.scheme == "http" and base.raw_host
                and base.path in ("", "/") and base.host_port_subcomponent):
            self._lean_where = (base.raw_host, base.port or 80, base.host_port_subcomponent)

    def open(
        self,
        method: str,
        target: str,
        headers: Fields,
        body: AsyncIterable[bytes] | None = None,
        *,
        cache_key: str = "",
    ) -> AbstractAsyncContextManager[UpstreamResponse]:
        send: Iterable[tuple[str, str]] = headers
        if self.signer is not None:
            send = [*headers, *self.signer(method, target).items()]
        if (method == "GET" and body is None and self._lean_where is not None
                and self.lean is not None and target.startswith("/")):
            return _LeanOpen(self.lean.pool(*self._lean_where).get(target, send),
                             self.base_url)
        return self._open_session(method, target, send, body)

    def call_now(self, target: str, headers: Fields, listener: Callable[[], None], *,
                 cache_key: str = "") -> LeanCall | None:
        """``GET target`` sent at once through the lean client, read by callbacks
        (``LeanPool.call_now``); ``None`` when it cannot be sent so (use ``open``). Its head's
        fields are ``lean_fields(call.conn)``."""
        where = self._lean_where
        if where is None or self.lean is None or not target.startswith("/"):
            return None
        send: Iterable[tuple[str, str]] = headers
        if self.signer is not None:
            send = [*headers, *self.signer("GET", target).items()]
        return self.lean.pool(*where).call_now(target, send, listener)

    @contextlib.asynccontextmanager
    async def _open_session(self, method: str, target: str, send: Iterable[tuple[str, str]],
                            body: AsyncIterable[bytes] | None
                            ) -> AsyncIterator[UpstreamResponse]:
        # encoded=True: send the target byte for byte as the client sent it (signatures over
        # the path, and origins that distinguish %2F from /, depend on it).
        url = URL(self.base_url + target, encoded=True)
        with wrap_client_errors(self.base_url):
            async with self.session.request(
                method, url, headers=list(send), data=body, allow_redirects=False,
                compress=None, chunked=None, expect100=False,
            ) as resp:
                yield UpstreamResponse(
                    status=resp.status,
                    headers=end_to_end(Fields.indexed(resp.headers.items())),
                    chunks=_chunks(resp, self.base_url),
                    upstream=self.base_url,
                )


class _LeanOpen:
    """``HttpUpstream.open`` through the lean client: a class, not an
    ``asynccontextmanager`` (every cache fill passes through it; see ``lean_client``)."""

    __slots__ = ("base_url", "exchange")

    def __init__(self, exchange: LeanExchange, base_url: str) -> None:
        self.exchange = exchange
        self.base_url = base_url

    async def __aenter__(self) -> UpstreamResponse:
        head, chunks = await self.exchange.__aenter__()
        return UpstreamResponse(status=head.status,
                                headers=lean_fields(head),
                                chunks=chunks, upstream=self.base_url, whole=chunks.whole,
                                keep_whole=chunks.keep_whole)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.exchange.__aexit__(exc_type, exc, tb)


class ParsedHead(Protocol):
    """A head as the lean client parsed it (``LeanResponse``, or a ``LeanCall``'s
    connection): the fields in order and their index by lower-case name."""

    headers: list[tuple[str, str]]
    index: dict[str, list[str]]


def lean_fields(head: ParsedHead) -> Fields:
    """The end-to-end fields of a head the lean client parsed (its name index reused)."""
    return end_to_end(Fields.prebuilt(tuple(head.headers), head.index))


async def _chunks(resp: aiohttp.ClientResponse, where: str) -> AsyncIterator[bytes]:
    with wrap_client_errors(where):
        async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
            yield chunk
