"""A small async S3 client for our origin (aiohttp + ``origin.sigv4``).

Used by ``cdn put/get/mb``, by ``cdn up`` to seed a demo bucket, and by tests. It speaks
path-style S3 with SigV4 header signing; a ``bytes`` body is signed with its SHA-256 (the
origin verifies it), a streamed body is sent ``UNSIGNED-PAYLOAD``.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from origin import sigv4

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3ClientError(Exception):
    """The origin answered with an error status (``code`` from its XML document)."""

    def __init__(self, status: int, code: str, message: str, request_id: str = "") -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class ObjectInfo:
    """What HEAD (or GET) says about an object."""

    size: int
    etag: str
    content_type: str
    last_modified: str
    cache_control: str | None
    surrogate_keys: tuple[str, ...]
    metadata: dict[str, str]
    headers: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> ObjectInfo:
        meta = {k.lower()[len("x-amz-meta-"):]: v for k, v in headers.items()
                if k.lower().startswith("x-amz-meta-")}
        return cls(size=int(headers.get("Content-Length", "0")),
                   etag=headers.get("ETag", "").strip('"'),
                   content_type=headers.get("Content-Type", ""),
                   last_modified=headers.get("Last-Modified", ""),
                   cache_control=headers.get("Cache-Control"),
                   surrogate_keys=tuple(headers.get("Surrogate-Key", "").split()),
                   metadata=meta, headers=CIMultiDict(headers))


def _error_from(status: int, body: bytes, headers: Mapping[str, str]) -> S3ClientError:
    request_id = headers.get("x-amz-request-id", "")
    try:
        root = ET.fromstring(body) if body else None
    except ET.ParseError:
        root = None
    if root is not None and root.tag == "Error":
        return S3ClientError(status, root.findtext("Code", ""), root.findtext("Message", ""),
                             request_id)
    return S3ClientError(status, f"HTTP{status}", body[:200].decode(errors="replace"),
                         request_id)


def _format_range(byte_range: tuple[int, int | None] | str | None) -> str | None:
    if byte_range is None or isinstance(byte_range, str):
        return byte_range
    first, last = byte_range
    return f"bytes={first}-{'' if last is None else last}"


class S3Client:
    """``async with S3Client(endpoint, key, secret) as s3: await s3.put_object(...)``"""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        region: str = "us-east-1",
        session: aiohttp.ClientSession | None = None,
        timeout: float = 300.0,
    ) -> None:
        self.endpoint = URL(endpoint.rstrip("/"))
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout), auto_decompress=False)

    async def __aenter__(self) -> S3Client:
        return self

    async def __aexit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None
                        ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()

    # -- signing ----------------------------------------------------------------------------

    @property
    def _host(self) -> str:
        url = self.endpoint
        default = {"http": 80, "https": 443}.get(url.scheme)
        return url.raw_host if url.port == default else f"{url.raw_host}:{url.port}"  # type: ignore[return-value]

    def _url(self, path: str, query: Iterable[tuple[str, str]]) -> URL:
        canonical_query = sigv4.canonical_query(query)
        text = str(self.endpoint) + sigv4.canonical_uri(path)
        if canonical_query:
            text += "?" + canonical_query
        return URL(text, encoded=True)

    @staticmethod
    def _path(bucket: str = "", key: str | None = None) -> str:
        if not bucket:
            return "/"
        return f"/{bucket}/{key}" if key is not None else f"/{bucket}"

    def _signed_headers(self, method: str, path: str, query: list[tuple[str, str]],
                        headers: dict[str, str], payload_hash: str) -> dict[str, str]:
        headers = {"Host": self._host, **headers}
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers.update(sigv4.sign_request(
            method=method, path=path, query=query, headers=headers,
            access_key=self.access_key, secret_key=self.secret_key, region=self.region,
            amz_date=amz_date, payload_hash=payload_hash))
        return headers

    def presign_url(self, method: str, bucket: str, key: str, *, expires: int = 3600) -> str:
        """A URL anyone can use for ``method`` on the object until it expires."""
        path = self._path(bucket, key)
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        query = sigv4.presign_query(method=method, path=path, host=self._host,
                                    access_key=self.access_key, secret_key=self.secret_key,
                                    region=self.region, amz_date=amz_date, expires=expires)
        return str(self._url(path, query))

    async def request(
        self,
        method: str,
        bucket: str = "",
        key: str | None = None,
        *,
        query: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        data: bytes | AsyncIterable[bytes] | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one signed request; the caller reads and releases the response."""
        path = self._path(bucket, key)
        query = list(query)
        extra = dict(headers or {})
        if data is None or isinstance(data, bytes):
            payload_hash = hashlib.sha256(data or b"").hexdigest()
        else:
            payload_hash = sigv4.UNSIGNED_PAYLOAD
        signed = self._signed_headers(method, path, query, extra, payload_hash)
        return await self._session.request(method, self._url(path, query), headers=signed,
                                           data=data, skip_auto_headers=("Content-Type",))

    async def _call(self, method: str, bucket: str = "", key: str | None = None,
                    **kwargs: Any) -> tuple[int, bytes, Mapping[str, str]]:
        async with await self.request(method, bucket, key, **kwargs) as resp:
            body = await resp.read()
            if resp.status >= 300 and resp.status != 304:
                raise _error_from(resp.status, body, resp.headers)
            return resp.status, body, resp.headers

    # -- buckets ----------------------------------------------------------------------------

    async def create_bucket(self, name: str, public: bool = False) -> None:
        headers = {"x-amz-acl": "public-read"} if public else {}
        await self._call("PUT", name, headers=headers)

    async def put_bucket_acl(self, name: str, acl: str) -> None:
        """A canned ACL (``private`` or ``public-read``) for an existing bucket."""
        await self._call("PUT", name, query=[("acl", "")], headers={"x-amz-acl": acl})

    async def delete_bucket(self, name: str) -> None:
        await self._call("DELETE", name)

    async def list_buckets(self) -> list[str]:
        _status, body, _headers = await self._call("GET")
        root = ET.fromstring(body)
        return [b.findtext(f"{_NS}Name", "") for b in root.iter(f"{_NS}Bucket")]

    async def list_objects(self, bucket: str, prefix: str = "", delimiter: str = "",
                           max_keys: int = 1000) -> tuple[list[str], list[str]]:
        """All keys (and common prefixes) under ``prefix``, following continuation tokens."""
        keys: list[str] = []
        prefixes: list[str] = []
        token: str | None = None
        while True:
            query = [("list-type", "2"), ("prefix", prefix), ("max-keys", str(max_keys))]
            if delimiter:
                query.append(("delimiter", delimiter))
            if token:
                query.append(("continuation-token", token))
            _status, body, _headers = await self._call("GET", bucket, query=query)
            root = ET.fromstring(body)
            keys += [c.findtext(f"{_NS}Key", "") for c in root.iter(f"{_NS}Contents")]
            prefixes += [p.findtext(f"{_NS}Prefix", "")
                         for p in root.iter(f"{_NS}CommonPrefixes")]
            token = root.findtext(f"{_NS}NextContinuationToken")
            if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                return keys, prefixes

    # -- objects ----------------------------------------------------------------------------

    async def put_object(
        self,
        bucket: str,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
        content_disposition: str | None = None,
        surrogate_keys: Iterable[str] = (),
        metadata: Mapping[str, str] | None = None,
        content_length: int | None = None,
    ) -> str:
        """Store an object; returns its ETag (MD5 hex, unquoted). For a streamed body pass
        ``content_length`` when known (otherwise it is sent chunked)."""
        headers: dict[str, str] = {}
        if content_type:
            headers["Content-Type"] = content_type
        if cache_control:
            headers["Cache-Control"] = cache_control
        if content_disposition:
            headers["Content-Disposition"] = content_disposition
        tags = " ".join(surrogate_keys)
        if tags:
            headers["Surrogate-Key"] = tags
        for name, value in (metadata or {}).items():
            headers[f"x-amz-meta-{name}"] = value
        if content_length is not None:
            headers["Content-Length"] = str(content_length)
        _status, _body, resp_headers = await self._call("PUT", bucket, key, headers=headers,
                                                        data=data)
        return resp_headers.get("ETag", "").strip('"')

    async def get_object(self, bucket: str, key: str, *,
                         byte_range: tuple[int, int | None] | str | None = None) -> bytes:
        """The object's bytes (or the requested range: ``(first, last)`` inclusive,
        ``(first, None)`` or a raw ``"bytes=..."`` header value)."""
        headers = {}
        header = _format_range(byte_range)
        if header:
            headers["Range"] = header
        _status, body, _headers = await self._call("GET", bucket, key, headers=headers)
        return body

    async def iter_object(self, bucket: str, key: str, chunk_size: int = 1 << 20
                          ) -> AsyncIterator[bytes]:
        """The object's bytes as they arrive (for downloads larger than memory)."""
        async with await self.request("GET", bucket, key) as resp:
            if resp.status >= 300:
                raise _error_from(resp.status, await resp.read(), resp.headers)
            async for chunk in resp.content.iter_chunked(chunk_size):
                yield chunk

    async def head_object(self, bucket: str, key: str) -> ObjectInfo:
        _status, _body, headers = await self._call("HEAD", bucket, key)
        return ObjectInfo.from_headers(headers)

    async def delete_object(self, bucket: str, key: str) -> None:
        await self._call("DELETE", bucket, key)
