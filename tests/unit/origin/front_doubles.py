"""Test doubles for the protocol-level fronts (``origin.api.front``,
``origin.storagenode.front``): a transport that keeps what is written, and the aiohttp
protocol a connection is handed over to, which keeps the raw bytes it is fed."""

from __future__ import annotations

import asyncio


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.protocol: asyncio.BaseProtocol | None = None
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class RawSink(asyncio.Protocol):
    def __init__(self) -> None:
        self.raw = bytearray()

    def data_received(self, data: bytes) -> None:
        self.raw += data


async def feed(conn: asyncio.Protocol, transport: RecordingTransport, chunks: list[bytes],
               *, turns: int) -> None:
    """Each chunk as one read, to the front or, once it handed the connection over, to the
    protocol that took it; then ``turns`` event-loop turns for the answers to be written."""
    conn.connection_made(transport)
    for chunk in chunks:
        if transport.protocol is not None:
            transport.protocol.data_received(chunk)  # type: ignore[attr-defined]
        else:
            conn.data_received(chunk)
        await asyncio.sleep(0)
    for _ in range(turns):
        await asyncio.sleep(0)
