"""Decoder of ``aws-chunked`` request bodies, as a pure state machine (bytes in, payload out).

The wire format ("Signature Calculations for the Authorization Header: Transferring Payload in
Multiple Chunks", and the trailer variants)::

    <hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n      (repeated)
    0[;chunk-signature=<sig>]\\r\\n                        (final, empty chunk)
    <trailer name>:<value>\\r\\n ... [x-amz-trailer-signature:<sig>\\r\\n]\\r\\n   (-TRAILER)
    \\r\\n                                                 (no trailer)

With ``ChunkSigning`` every chunk signature is checked, each chained from the previous one
(the first from the request's own "seed" signature), and so is the trailer signature. Payload
bytes are handed out as they arrive, before their chunk's signature can be checked; a caller
must not commit anything before ``done`` (which is how the origin's PUT works anyway).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from origin import sigv4

MAX_LINE = 4096
_CRLF = b"\r\n"


class ChunkedFormatError(ValueError):
    """The body is not well-formed aws-chunked."""


class ChunkSignatureError(ValueError):
    """A chunk or trailer signature is missing or wrong."""


@dataclass(frozen=True)
class ChunkSigning:
    """What verifies chunk signatures: the derived signing key of the request's scope."""

    key: bytes
    amz_date: str
    scope: sigv4.Scope
    seed_signature: str


class ChunkedDecoder:
    """``feed(raw)`` returns the payload bytes ``raw`` completed; ``done`` once the final
    chunk (and trailer) were read; ``trailers`` holds the trailing headers (lower-case)."""

    def __init__(self, signing: ChunkSigning | None, *, trailer: bool) -> None:
        self._signing = signing
        self._expect_trailer = trailer
        self._previous = signing.seed_signature if signing else ""
        self._buffer = bytearray()
        self._state = "size"
        self._remaining = 0
        self._chunk_signature: str | None = None
        self._hash = hashlib.sha256()
        self.trailers: dict[str, str] = {}
        self._trailer_lines: list[tuple[str, str]] = []
        self.payload_bytes = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> bytes:
        if self._state == "done":
            if data.strip(b"\r\n"):
                raise ChunkedFormatError("data after the end of the aws-chunked body")
            return b""
        self._buffer += data
        out = bytearray()
        while self._step(out):
            pass
        return bytes(out)

    def _line(self) -> str | None:
        end = self._buffer.find(_CRLF)
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise ChunkedFormatError("aws-chunked header line too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        try:
            return line.decode("ascii")
        except UnicodeDecodeError:
            raise ChunkedFormatError("aws-chunked header line is not ASCII") from None

    def _step(self, out: bytearray) -> bool:
        """Advance one state; ``False`` when more input is needed (or done)."""
        if self._state == "size":
            line = self._line()
            if line is None:
                return False
            self._start_chunk(line)
            return True
        if self._state == "data":
            if not self._buffer:
                return False
            take = min(self._remaining, len(self._buffer))
            piece = bytes(self._buffer[:take])
            del self._buffer[:take]
            self._remaining -= take
            self.payload_bytes += take
            if self._signing is not None:
                self._hash.update(piece)
            out += piece
            if self._remaining == 0:
                self._state = "data-end"
            return True
        if self._state == "data-end":
            if len(self._buffer) < 2:
                return False
            if self._buffer[:2] != _CRLF:
                raise ChunkedFormatError("chunk data is longer than its declared size")
            del self._buffer[:2]
            self._verify_chunk()
            self._state = "size"
            return True
        if self._state == "trailer":
            line = self._line()
            if line is None:
                return False
            if line == "":
                self._finish_trailer()
                return False
            name, sep, value = line.partition(":")
            if not sep:
                raise ChunkedFormatError(f"malformed trailer line {line[:80]!r}")
            self._trailer_lines.append((name.strip().lower(), value.strip()))
            return True
        if self._state == "final-crlf":
            if len(self._buffer) < 2:
                return False
            if self._buffer[:2] != _CRLF:
                raise ChunkedFormatError("missing CRLF after the final chunk")
            del self._buffer[:2]
            self._state = "done"
            return False
        return False

    def _start_chunk(self, line: str) -> None:
        size_text, _sep, extension = line.partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise ChunkedFormatError(f"bad chunk size {size_text[:32]!r}") from None
        if size < 0:
            raise ChunkedFormatError("negative chunk size")
        self._chunk_signature = None
        if extension:
            name, _eq, value = extension.partition("=")
            if name.strip() == "chunk-signature":
                self._chunk_signature = value.strip()
        if self._signing is not None and not self._chunk_signature:
            raise ChunkSignatureError("chunk without chunk-signature")
        self._hash = hashlib.sha256()
        if size == 0:
            self._verify_chunk()
            self._state = "trailer" if self._expect_trailer else "final-crlf"
        else:
            self._remaining = size
            self._state = "data"

    def _verify_chunk(self) -> None:
        if self._signing is None:
            return
        s = self._signing
        expected = sigv4.sign_with_key(s.key, sigv4.chunk_string_to_sign(
            s.amz_date, s.scope, self._previous, self._hash.hexdigest()))
        if not sigv4.signatures_match(expected, self._chunk_signature or ""):
            raise ChunkSignatureError("chunk signature does not match")
        self._previous = expected

    def _finish_trailer(self) -> None:
        signature = None
        for name, value in self._trailer_lines:
            if name == "x-amz-trailer-signature":
                signature = value
            else:
                self.trailers[name] = value
        if self._signing is not None:
            if signature is None:
                raise ChunkSignatureError("trailer without x-amz-trailer-signature")
            s = self._signing
            canonical = "".join(f"{n}:{v}\n" for n, v in self.trailers.items())
            expected = sigv4.sign_with_key(s.key, sigv4.trailer_string_to_sign(
                s.amz_date, s.scope, self._previous,
                hashlib.sha256(canonical.encode()).hexdigest()))
            if not sigv4.signatures_match(expected, signature):
                raise ChunkSignatureError("trailer signature does not match")
        self._state = "done"


def encode_chunks(
    chunks: list[bytes], signing: ChunkSigning | None, trailers: dict[str, str] | None = None
) -> bytes:
    """The aws-chunked encoding of ``chunks`` (the client side; used by ``origin.client``
    and tests). Signs each chunk when ``signing`` is given."""
    previous = signing.seed_signature if signing else ""
    out = bytearray()
    for data in [*chunks, b""]:
        if signing is not None:
            previous = sigv4.sign_with_key(signing.key, sigv4.chunk_string_to_sign(
                signing.amz_date, signing.scope, previous, hashlib.sha256(data).hexdigest()))
            out += f"{len(data):x};chunk-signature={previous}\r\n".encode()
        else:
            out += f"{len(data):x}\r\n".encode()
        if data:
            out += data + _CRLF
    if trailers is None:
        return bytes(out + _CRLF)
    canonical = "".join(f"{n}:{v}\n" for n, v in trailers.items())
    for name, value in trailers.items():
        out += f"{name}:{value}\r\n".encode()
    if signing is not None:
        sig = sigv4.sign_with_key(signing.key, sigv4.trailer_string_to_sign(
            signing.amz_date, signing.scope, previous,
            hashlib.sha256(canonical.encode()).hexdigest()))
        out += f"x-amz-trailer-signature:{sig}\r\n".encode()
    return bytes(out + _CRLF)
