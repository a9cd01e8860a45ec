"""The ``Cache-Status`` response field (RFC 9211), pure.

It is a structured-field List; each cache the response passed through appends one member,
so the origin-most cache comes first: §2 "caches ... SHOULD append a list member to the
field value". Example: ``cdn-shield-1; fwd=uri-miss; fwd-status=200; stored, cdn-edge-local;
hit; ttl=57``.
"""

from __future__ import annotations

import re
from typing import Literal

from httpcache.records import record

# RFC 9211 §2.2: "fwd" values.
ForwardReason = Literal["bypass", "method", "uri-miss", "vary-miss", "miss", "request",
                        "stale", "partial"]

_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")


def _sf_item(value: str) -> str:
    """An sf-token when the name allows it, otherwise an sf-string (RFC 8941 §3.3)."""
    if _TOKEN.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@record
class CacheStatus:
    """One cache's member. ``hit`` and ``fwd`` are mutually exclusive (§2.1/§2.2)."""

    cache: str
    hit: bool = False
    fwd: ForwardReason | None = None
    fwd_status: int | None = None
    ttl: int | None = None
    stored: bool = False
    collapsed: bool = False
    detail: str | None = None
    # Not a parameter of this field: the purge sequence the answer reflects, sent as
    # ``CDN-Purge-Seq`` to a tier that asked (``httpcache.purge_watermark``); None: not sent.
    purge_seq: int | None = None

    def format(self) -> str:
        parts = [_sf_item(self.cache)]
        if self.hit:
            parts.append("hit")
        if self.fwd is not None:
            parts.append(f"fwd={self.fwd}")
        if self.fwd_status is not None:
            parts.append(f"fwd-status={self.fwd_status}")
        if self.ttl is not None:
            parts.append(f"ttl={self.ttl}")
        if self.stored:
            parts.append("stored")
        if self.collapsed:
            parts.append("collapsed")
        if self.detail:
            parts.append(f"detail={_sf_item(self.detail)}")
        return "; ".join(parts)


def append_cache_status(existing: str | None, member: CacheStatus) -> str:
    """The upstream's members first, then ours."""
    ours = member.format()
    return f"{existing}, {ours}" if existing else ours


def parse_members(value: str | None) -> list[tuple[str, dict[str, str | bool]]]:
    """Cache names and parameters, origin-most first (for tests and tooling; lenient)."""
    members: list[tuple[str, dict[str, str | bool]]] = []
    for raw in (value or "").split(","):
        pieces = [p.strip() for p in raw.split(";") if p.strip()]
        if not pieces:
            continue
        params: dict[str, str | bool] = {}
        for piece in pieces[1:]:
            key, sep, val = piece.partition("=")
            params[key.strip()] = val.strip().strip('"') if sep else True
        members.append((pieces[0].strip('"'), params))
    return members
