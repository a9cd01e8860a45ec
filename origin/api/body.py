"""The body of a PUT / UploadPart as the data path reads it: plain or aws-chunked, with the
flexible checksums (``x-amz-checksum-*``, in a header or a trailer) computed on the way.

``finish()`` runs after the data is durable and before anything is committed: it raises the
S3 error a truncated body, a bad chunk signature or a wrong checksum deserves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
from aiohttp import web

from origin import checksums, sigv4
from origin.api.auth import Principal
from origin.aws_chunked import ChunkedDecoder, ChunkedFormatError, ChunkSignatureError
from origin.ec_writer import BodyReader
from origin.errors import (
    BadDigest,
    ClientError,
    EntityTooLarge,
    IncompleteBody,
    InvalidArgument,
    SignatureDoesNotMatch,
)

RAW_READ = 1 << 16


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} is not an integer") from None
    if value < 0:
        raise InvalidArgument(f"{name} must not be negative")
    return value


def requested_checksum(headers: Mapping[str, str]) -> tuple[str | None, str | None, bool]:
    """``(algorithm, expected value, value comes in the trailer)`` of a request (pure)."""
    found = [(alg, value) for name, value in headers.items()
             if (alg := checksums.algorithm_of_header(name)) is not None]
    if len(found) > 1:
        raise ClientError("Expecting a single x-amz-checksum- header. Multiple checksum "
                          "Types are not allowed.")
    trailer = headers.get("x-amz-trailer")
    if trailer:
        alg = checksums.algorithm_of_header(trailer.strip())
        if alg is None:
            raise InvalidArgument(f"x-amz-trailer {trailer!r} is not a supported checksum")
        return alg, None, True
    if found:
        return found[0][0], found[0][1], False
    sdk = headers.get("x-amz-sdk-checksum-algorithm")
    if sdk:
        if sdk.upper() not in checksums.ALGORITHMS:
            raise InvalidArgument(f"x-amz-sdk-checksum-algorithm {sdk!r} is not supported")
        return sdk.upper(), None, False
    return None, None, False


class IncomingBody:
    """``read`` feeds the EC writer; ``finish`` verifies what could only be known at the end."""

    def __init__(self, request: web.Request, principal: Principal | None, max_size: int) -> None:
        headers = request.headers
        self._content = request.content
        mode = principal.streaming if principal else None
        encoding = headers.get("Content-Encoding", "")
        self._decoder: ChunkedDecoder | None = None
        if mode is not None:
            self._decoder = ChunkedDecoder(principal.chunk_signing if principal else None,
                                           trailer=mode != sigv4.STREAMING_SIGNED)
            self.declared_length = _int_header(headers, "x-amz-decoded-content-length")
            if self.declared_length is None:
                raise ClientError("aws-chunked uploads must carry x-amz-decoded-content-length",)
        else:
            if "aws-chunked" in encoding and headers.get("x-amz-decoded-content-length"):
                raise ClientError("Content-Encoding aws-chunked needs x-amz-content-sha256 "
                                  "STREAMING-*")
            self.declared_length = _int_header(headers, "Content-Length")
        if self.declared_length is not None and self.declared_length > max_size:
            raise EntityTooLarge(f"the body of {self.declared_length} bytes exceeds the "
                                 f"maximum object size {max_size}")
        self.algorithm, self._expected, self._in_trailer = requested_checksum(headers)
        if self._in_trailer and self._decoder is None:
            raise ClientError("x-amz-trailer needs an aws-chunked body")
        self._hasher = checksums.new_hasher(self.algorithm) if self.algorithm else None
        self._buffer = bytearray()
        self._eof = False
        self.received = 0

    async def _raw(self, n: int) -> bytes:
        try:
            if self._decoder is None:
                try:
                    return await self._content.readexactly(n)
                except asyncio.IncompleteReadError as exc:
                    return exc.partial
            return await self._content.read(n)
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise IncompleteBody(f"the request body ended early: {exc}") from exc

    async def read(self, n: int) -> bytes:
        """Exactly ``n`` payload bytes, fewer only at the end of the body."""
        if self._decoder is None:
            data = await self._raw(n)
        else:
            while len(self._buffer) < n and not self._eof:
                raw = await self._raw(RAW_READ)
                if not raw:
                    self._eof = True
                    break
                try:
                    self._buffer += self._decoder.feed(raw)
                except ChunkSignatureError as exc:
                    raise SignatureDoesNotMatch(str(exc)) from None
                except ChunkedFormatError as exc:
                    raise IncompleteBody(f"malformed aws-chunked body: {exc}") from None
            with memoryview(self._buffer) as view:
                data = bytes(view[:n])  # one copy of the segment, not two
            del self._buffer[:n]
        self.received += len(data)
        if self._hasher is not None and data:
            self._hasher.update(data)
        return data

    @property
    def reader(self) -> BodyReader:
        return self.read

    def finish(self) -> tuple[str, str] | None:
        """Check completeness and the checksum; the ``(algorithm, value)`` to store."""
        if self._decoder is not None and not self._decoder.done:
            raise IncompleteBody("the aws-chunked body ended before its final chunk")
        if self.declared_length is not None and self.received != self.declared_length:
            raise IncompleteBody(f"received {self.received} of {self.declared_length} bytes")
        if self._hasher is None or self.algorithm is None:
            return None
        actual = checksums.encode(self._hasher.digest())
        expected = self._expected
        if self._in_trailer:
            assert self._decoder is not None
            expected = self._decoder.trailers.get(checksums.header_name(self.algorithm))
            if expected is None:
                raise InvalidArgument(f"the trailer lacks {checksums.header_name(self.algorithm)}")
        if expected is not None and expected != actual:
            raise BadDigest(f"The {self.algorithm} you specified did not match the calculated "
                            f"checksum.")
        return self.algorithm, actual
