"""Single byte-range requests served from a complete stored body (RFC 9110 §14), pure.

Only one ``bytes=`` range is served; a multi-range request is answered with the whole
representation, which §14.2 allows ("A server MAY ignore the Range header field").
"""

from __future__ import annotations

import re
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
