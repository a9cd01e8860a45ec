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
