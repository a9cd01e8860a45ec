"""Validation of a purge request body (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control.errors import BadPurgeRequest


@dataclass(frozen=True)
class PurgeRequest:
    tags: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    soft: bool = False
    requested_by: str = field(default="", compare=False)

    @property
    def size(self) -> int:
        return len(self.tags) + len(self.urls) + len(self.prefixes)


def _strings(body: dict[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadPurgeRequest(f"{name!r} must be a list of non-empty strings")
    return tuple(dict.fromkeys(value))  # de-duplicate, keep order


def _path(value: str, name: str) -> str:
    """URL purges name the request path the caches keyed (``/bucket/key``); a full URL is
    accepted and reduced to its path and query, since caches of every host share the path."""
    if value.startswith(("http://", "https://")):
        rest = value.split("://", 1)[1]
        slash = rest.find("/")
        value = rest[slash:] if slash >= 0 else "/"
    if not value.startswith("/"):
        raise BadPurgeRequest(f"{name} entry {value!r} must be a path starting with '/' or a URL")
    return value


def parse_purge_request(body: Any, *, max_items: int) -> PurgeRequest:
    if not isinstance(body, dict):
        raise BadPurgeRequest("body must be a JSON object like {\"tags\": [\"t1\"]}")
    unknown = set(body) - {"tags", "urls", "prefixes", "soft"}
    if unknown:
        raise BadPurgeRequest(f"unknown fields {sorted(unknown)}; use tags, urls, prefixes, soft")
    soft = body.get("soft", False)
    if not isinstance(soft, bool):
        raise BadPurgeRequest("'soft' must be true or false")
    request = PurgeRequest(
        tags=_strings(body, "tags"),
        urls=tuple(_path(u, "urls") for u in _strings(body, "urls")),
        prefixes=tuple(_path(p, "prefixes") for p in _strings(body, "prefixes")),
        soft=soft,
    )
    if request.size == 0:
        raise BadPurgeRequest("nothing to purge: give at least one of tags, urls, prefixes")
    if request.size > max_items:
        raise BadPurgeRequest(f"{request.size} items in one purge; the limit is {max_items}")
    return request
