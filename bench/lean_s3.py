"""A lean S3 client for the 4 KiB ops/s part of ``origin_datapath.py``: every request still
signed with SigV4 (``origin.sigv4.sign_request``, the payload's SHA-256 signed like
``origin.client.S3Client`` does), sent on keep-alive connections of our own.

The benchmark client shares the machine's two cores with the servers it measures; with
aiohttp's client it spent ≈ 0.2-0.3 ms of CPU per 4 KiB operation, a fifth of a GET's total.
This one writes one head and body per request and parses the answer's head itself (the
origin always answers these with ``Content-Length``). One request at a time per connection;
a connection is taken from an idle list or opened, and put back after a complete answer.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

from origin import sigv4


class LeanS3Error(Exception):
    """An error status, or an answer this client does not parse."""


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body_start = -1
        self.status = 0
        self.length = 0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.body_start < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            self.status = int(lines[0].split(b" ", 2)[1])
            self.length = -1
            for line in lines[1:]:
                name, _c, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    self.length = int(value)
            if self.length < 0:
                self._fail("answer without Content-Length")
                return
            self.body_start = end + 4
        stop = self.body_start + self.length
        if len(self.buffer) >= stop and self.waiter is not None and not self.waiter.done():
            body = bytes(self.buffer[self.body_start:stop])
            del self.buffer[:stop]
            self.body_start = -1
            self.waiter.set_result((self.status, body))

    def _fail(self, why: str) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(LeanS3Error(why))
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class LeanS3:
    """``put(bucket, key, data)`` and ``get(bucket, key)`` against one origin."""

    def __init__(self, host: str, port: int, access_key: str, secret_key: str,
                 region: str = "us-east-1") -> None:
        self.host, self.port = host, port
        self.host_header = f"{host}:{port}"
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self._idle: list[_Conn] = []

    async def put(self, bucket: str, key: str, data: bytes) -> None:
        status, body = await self._request("PUT", f"/{bucket}/{key}", data)
        if status != 200:
            raise LeanS3Error(f"PUT /{bucket}/{key}: {status} {body[:200]!r}")

    async def get(self, bucket: str, key: str) -> bytes:
        status, body = await self._request("GET", f"/{bucket}/{key}", b"")
        if status != 200:
            raise LeanS3Error(f"GET /{bucket}/{key}: {status} {body[:200]!r}")
        return body

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()

    async def _request(self, method: str, path: str, data: bytes) -> tuple[int, bytes]:
        payload_hash = hashlib.sha256(data).hexdigest()
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"Host": self.host_header}
        signed = sigv4.sign_request(method=method, path=path, query=[], headers=headers,
                                    access_key=self.access_key, secret_key=self.secret_key,
                                    region=self.region, amz_date=amz_date,
                                    payload_hash=payload_hash)
        head = "".join(f"{k}: {v}\r\n" for k, v in signed.items())
        length = f"Content-Length: {len(data)}\r\n" if method == "PUT" else ""
        raw = (f"{method} {sigv4.canonical_uri(path)} HTTP/1.1\r\nHost: {self.host_header}\r\n"
               f"{head}{length}\r\n").encode() + data
        conn = self._idle.pop() if self._idle else None
        if conn is None or conn.lost:
            _t, conn = await asyncio.get_running_loop().create_connection(
                _Conn, self.host, self.port)
        assert conn.transport is not None
        conn.waiter = asyncio.get_running_loop().create_future()
        conn.transport.write(raw)
        try:
            answer = await conn.waiter
        except BaseException:
            conn.lost = True
            conn.transport.close()
            raise
        conn.waiter = None
        if not conn.lost:
            self._idle.append(conn)
        return answer
