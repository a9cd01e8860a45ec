"""The flexible checksums of S3 (``x-amz-checksum-*``), as pure incremental hashers.

CRC-32 comes from ``zlib``, SHA-1/SHA-256 from ``hashlib``; CRC-32C and CRC-64/NVME are
table-driven here (no wheel needed; slow for big bodies, which only clients that ask for
them pay). Values travel base64-encoded, big-endian, as S3 sends them.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Protocol

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
HEADER_PREFIX = "x-amz-checksum-"


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...

    def digest(self) -> bytes: ...


def _reflected_table(poly: int) -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _reflected_table(0x82F63B78)
_CRC64NVME_TABLE = _reflected_table(0x9A6C9329AC4BC9B5)


class _TableCRC:
    def __init__(self, table: list[int], width: int) -> None:
        self._table = table
        self._mask = (1 << width) - 1
        self._width = width
        self._crc = self._mask

    def update(self, data: bytes) -> None:
        crc, table = self._crc, self._table
        for byte in data:
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        self._crc = crc

    def digest(self) -> bytes:
        return (self._crc ^ self._mask).to_bytes(self._width // 8, "big")


class _CRC32:
    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(4, "big")


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher for ``algorithm`` (one of ``ALGORITHMS``, any case)."""
    name = algorithm.upper()
    if name == "CRC32":
        return _CRC32()
    if name == "CRC32C":
        return _TableCRC(_CRC32C_TABLE, 32)
    if name == "CRC64NVME":
        return _TableCRC(_CRC64NVME_TABLE, 64)
    if name == "SHA1":
        return hashlib.sha1()
    if name == "SHA256":
        return hashlib.sha256()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def encode(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def checksum(algorithm: str, data: bytes) -> str:
    """The base64 checksum of ``data`` (one shot)."""
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return encode(hasher.digest())


def header_name(algorithm: str) -> str:
    return HEADER_PREFIX + algorithm.lower()


def algorithm_of_header(name: str) -> str | None:
    """``x-amz-checksum-crc32`` → ``CRC32``; ``None`` for other headers."""
    lower = name.lower()
    if not lower.startswith(HEADER_PREFIX):
        return None
    algorithm = lower[len(HEADER_PREFIX):].upper()
    return algorithm if algorithm in ALGORITHMS else None
