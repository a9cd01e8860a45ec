"""Cache-Control parsing (RFC 9111 §5.2) and CDN-Cache-Control selection (RFC 9213), pure.

Directive names are case-insensitive; arguments may be tokens or quoted strings. Unknown
directives are kept (as extensions) and ignored by the policy, as §5.2.3 requires: "Caches
MUST ignore unrecognized cache directives".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from httpcache.headers import Fields, split_list

# directive = token [ "=" ( token / quoted-string ) ]; anything after it up to the next comma
# (e.g. structured-field parameters in CDN-Cache-Control) is ignored.
_DIRECTIVE = re.compile(
    r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s;]*)))?[^,]*(?:,|$)'
)

# RFC 9213 §2.1: the targeted fields a cache of this CDN obeys, highest precedence first.
DEFAULT_TARGETED_FIELDS: tuple[str, ...] = ("CDN-Cache-Control",)


@dataclass(frozen=True, slots=True)
class CacheControl:
    """Parsed directives: name (lower-case) → argument (``None`` when given without one)."""

    directives: dict[str, str | None] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.directives

    def seconds(self, name: str) -> int | None:
        """A delta-seconds argument (RFC 9111 §1.2.2), capped at 2**31; ``None`` if invalid."""
        raw = self.directives.get(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            return None
        return max(0, min(value, 2**31))

    def fields_of(self, name: str) -> frozenset[str]:
        """Field names of a qualified directive such as ``private="Set-Cookie"``."""
        raw = self.directives.get(name)
        if raw is None:
            return frozenset()
        return frozenset(n.lower() for n in split_list(raw))

    # response directives (§5.2.2)
    @property
    def no_store(self) -> bool:
        return "no-store" in self.directives

    @property
    def no_cache(self) -> bool:
        """Unqualified ``no-cache``: every reuse needs validation (§5.2.2.4)."""
        return "no-cache" in self.directives and self.directives["no-cache"] is None

    @property
    def private(self) -> bool:
        """Unqualified ``private``: a shared cache must not store it (§5.2.2.7)."""
        return "private" in self.directives and self.directives["private"] is None

    @property
    def public(self) -> bool:
        return "public" in self.directives

    @property
    def must_revalidate(self) -> bool:
        return "must-revalidate" in self.directives

    @property
    def proxy_revalidate(self) -> bool:
        return "proxy-revalidate" in self.directives

    @property
    def max_age(self) -> int | None:
        if "max-age" in self.directives and self.seconds("max-age") is None:
            return 0  # malformed: treat as already stale (§4.2.1 / §1.2.2)
        return self.seconds("max-age")

    @property
    def s_maxage(self) -> int | None:
        if "s-maxage" in self.directives and self.seconds("s-maxage") is None:
            return 0
        return self.seconds("s-maxage")

    # request directives (§5.2.1)
    @property
    def only_if_cached(self) -> bool:
        return "only-if-cached" in self.directives

    @property
    def min_fresh(self) -> int | None:
        return self.seconds("min-fresh")


def parse_cache_control(value: str | None) -> CacheControl:
    """Parse one (combined) Cache-Control field value; junk between directives is skipped.

    Duplicate directives keep the first occurrence: §4.2.1 says "When there is more than one
    value present for a given directive ... the directive's value is considered invalid", and
    reading the first is the conservative choice for ``max-age`` since §4.2.1 also allows
    treating such responses as stale; we keep it simple and documented.
    """
    directives: dict[str, str | None] = {}
    if not value:
        return CacheControl(directives)
    pos = 0
    while pos < len(value):
        match = _DIRECTIVE.match(value, pos)
        if not match or match.end() == pos:
            nxt = value.find(",", pos)
            if nxt < 0:
                break
            pos = nxt + 1
            continue
        name = match.group(1).lower()
        if match.group(2) is not None:
            arg: str | None = re.sub(r"\\(.)", r"\1", match.group(2))
        elif match.group(3):
            arg = match.group(3)
        else:
            arg = None
        directives.setdefault(name, arg)
        pos = match.end()
    return CacheControl(directives)


@dataclass(frozen=True, slots=True)
class ResponseDirectives:
    """The directives a CDN tier obeys for one response, and where they came from."""

    cc: CacheControl
    targeted: bool  # True when taken from CDN-Cache-Control (then Expires is ignored)


def response_directives(
    headers: Fields, targeted_fields: tuple[str, ...] = DEFAULT_TARGETED_FIELDS
) -> ResponseDirectives:
    """Select the directives for this tier (RFC 9213 §2.1).

    "the cache MUST select the first (in target-list order) field with a valid, non-empty
    value and use its value to determine the caching policy for the response, and it MUST
    ignore the Cache-Control and Expires header fields in that response, unless no valid,
    non-empty value is available from the listed header fields."
    """
    for name in targeted_fields:
        parsed = parse_cache_control(headers.get(name))
        if parsed.directives:
            return ResponseDirectives(parsed, targeted=True)
    return ResponseDirectives(parse_cache_control(headers.get("cache-control")), targeted=False)
