"""Byte-range requests served from a complete stored body (RFC 9110 §14), pure.

One range is answered with a 206 and Content-Range; several with a ``multipart/byteranges``
206 (§14.6); none satisfiable with a 416 (§15.5.17). Syntax errors make the Range field
ignored (§14.2: "a server MAY ignore the Range header field").
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Inclusive ``first``..``last`` of a representation of ``length`` bytes."""

    first: int
    last: int
    length: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.length}"


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    """§15.5.17: a 416 "SHOULD generate a Content-Range header field specifying the current
    length of the selected representation"."""

    length: int

    def content_range(self) -> str:
        return f"bytes */{self.length}"


def parse_range(value: str | None, length: int) -> ByteRange | Unsatisfiable | None:
    """The range to serve, ``Unsatisfiable`` for a 416, or ``None`` to serve everything.

    §14.1.1: "a client can request the last N bytes" with a suffix range; a first-pos beyond
    the end makes the range unsatisfiable; a last-pos past the end is clamped ("if the value
    is greater than or equal to the current length ... the byte range is interpreted as the
    remainder of the representation"). Syntax errors are ignored (§14.2: "a server MAY
    ignore the Range header field").
    """
    if not value or length <= 0:
        return None
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _SPEC.fullmatch(spec)
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first_s, last_s = match.group(1), match.group(2)
    if not first_s:  # suffix-range
        suffix = int(last_s)
        if suffix == 0:
            return Unsatisfiable(length)
        return ByteRange(max(0, length - suffix), length - 1, length)
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # invalid range-spec: ignored
    if first >= length:
        return Unsatisfiable(length)
    last = int(last_s) if last_s else length - 1
    return ByteRange(first, min(last, length - 1), length)


# §14.2: a server "MAY ignore the Range header field" when it has "more than two overlapping
# ranges" or "many small ranges that are not listed in ascending order"; we cap the count.
MAX_RANGES = 64


def parse_ranges(value: str | None, length: int) -> list[ByteRange] | Unsatisfiable | None:
    """Every satisfiable range of a ``bytes=`` Range field, ``Unsatisfiable`` when none is
    (§14.1.1: "If a valid ranges-specifier contains no satisfiable ranges, the server SHOULD
    send a 416"), or ``None`` to ignore the field (invalid syntax, other units, too many).
    Overlapping or adjacent ranges are coalesced (§14.2 allows it)."""
    if not value or length <= 0:
        return None
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    specs = [s for s in spec.split(",") if s.strip()]
    if not specs or len(specs) > MAX_RANGES:
        return None
    parts: list[ByteRange] = []
    for one in specs:
        parsed = parse_range(f"bytes={one}", length)
        if parsed is None:
            return None  # a syntax error anywhere invalidates the whole field
        if isinstance(parsed, ByteRange):
            parts.append(parsed)
    if not parts:
        return Unsatisfiable(length)
    return _coalesce(parts) if len(parts) > 1 else parts


def _coalesce(parts: list[ByteRange]) -> list[ByteRange]:
    merged: list[ByteRange] = []
    for part in sorted(parts, key=lambda p: p.first):
        if merged and part.first <= merged[-1].last + 1:
            last = merged[-1]
            merged[-1] = ByteRange(last.first, max(last.last, part.last), last.length)
        else:
            merged.append(part)
    return merged


def multipart_heads(parts: list[ByteRange], content_type: str | None, boundary: str
                    ) -> tuple[list[bytes], bytes]:
    """The framing of a ``multipart/byteranges`` payload (RFC 9110 §14.6): the head before
    each part (its Content-Type when known, and Content-Range) and the closing delimiter.
    Each part's bytes are followed by CRLF, which the heads after the first begin with."""
    heads: list[bytes] = []
    for index, part in enumerate(parts):
        head = ("\r\n" if index else "") + f"--{boundary}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        head += f"Content-Range: {part.content_range()}\r\n\r\n"
        heads.append(head.encode("latin-1"))
    return heads, f"\r\n--{boundary}--\r\n".encode("latin-1")


def multipart_content_type(boundary: str) -> str:
    return f"multipart/byteranges; boundary={boundary}"


def new_boundary() -> str:
    return secrets.token_hex(12)


def multipart_byteranges(body: bytes | bytearray, parts: list[ByteRange],
                         content_type: str | None, boundary: str | None = None
                         ) -> tuple[str, bytes]:
    """(Content-Type, payload) of a ``multipart/byteranges`` answer (RFC 9110 §14.6): each
    part carries its Content-Type (when known) and Content-Range."""
    boundary = boundary or new_boundary()
    heads, tail = multipart_heads(parts, content_type, boundary)
    out: list[bytes | bytearray] = []
    for head, part in zip(heads, parts, strict=True):
        out += [head, body[part.first:part.last + 1]]
    out.append(tail)
    return multipart_content_type(boundary), b"".join(out)
