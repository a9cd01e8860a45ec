"""Cache-Control parsing (RFC 9111 §5.2) and targeted field selection (RFC 9213), pure.

``Cache-Control`` (and ``Surrogate-Control``) follow RFC 9111's grammar:
``directive = token [ "=" ( token / quoted-string ) ]`` in a comma-separated list. There is no
whitespace around ``=``, so ``max-age =100`` and ``max-age= 100`` are not ``max-age``
directives at all: such list members are skipped, like any other member that does not parse
(and quoted strings are skipped whole, so ``ext="max-age=100, x"`` hides no directive).
Directive names are case-insensitive; §5.2 "recipients SHOULD accept both forms" of an
argument (token and quoted-string). Unknown directives are kept and ignored by the policy:
§5.2.3 "Caches MUST ignore unrecognized cache directives".

``CDN-Cache-Control`` is a Structured Field Dictionary (RFC 9213 §2.1, RFC 8941 §3.2); a
value that fails to parse, or carries a known directive with an argument of the wrong type
(``max-age="10"``), is not "valid" and the next field in the target list is used.
"""

from __future__ import annotations

import functools
import re
from dataclasses import field

from httpcache.headers import Fields, split_list
from httpcache.records import record

_TOKEN_CHARS = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(rf"[{_TOKEN_CHARS}]+")
_DELTA_SECONDS = re.compile(r"\d+")
# The largest delta-seconds a cache must handle; larger values are capped (RFC 9111 §1.2.2:
# "If a cache receives a delta-seconds value greater than the greatest integer it can
# represent, or if any of its subsequent calculations overflows, the cache MUST consider the
# value to be 2147483648 (2^31) or the greatest positive integer it can conveniently
# represent").
DELTA_MAX = 2**31

# RFC 9213 §2.1: the targeted fields this CDN obeys, highest precedence first. Surrogate-Control
# (W3C Edge Architecture) is the older targeted field many origins still send to CDNs.
DEFAULT_TARGETED_FIELDS: tuple[str, ...] = ("CDN-Cache-Control", "Surrogate-Control")

# Directives whose argument is delta-seconds; in a Structured Field it must be an Integer.
_NUMERIC = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error",
                      "min-fresh", "max-stale"})


def delta_seconds(raw: str | None) -> int | None:
    """RFC 9111 §1.2.2 ``delta-seconds = 1*DIGIT``, capped at 2^31; ``None`` if invalid."""
    if raw is None or not _DELTA_SECONDS.fullmatch(raw):
        return None
    return min(int(raw), DELTA_MAX)


@record
class CacheControl:
    """Parsed directives: name (lower-case) → argument (``None`` when given without one)."""

    directives: dict[str, str | None] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.directives

    def seconds(self, name: str) -> int | None:
        """A valid delta-seconds argument of ``name``, else ``None``."""
        return delta_seconds(self.directives.get(name))

    def _lifetime(self, name: str) -> int | None:
        """A freshness directive: absent → ``None``; present but invalid (``-1``, ``1.5``,
        ``a1``, no argument) → 0, i.e. stale, the conservative reading of §4.2.1."""
        if name not in self.directives:
            return None
        value = self.seconds(name)
        return 0 if value is None else value

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
    def must_understand(self) -> bool:
        return "must-understand" in self.directives

    @property
    def max_age(self) -> int | None:
        return self._lifetime("max-age")

    @property
    def s_maxage(self) -> int | None:
        return self._lifetime("s-maxage")

    @property
    def stale_while_revalidate(self) -> int | None:
        """RFC 5861 §3; an invalid argument disables it."""
        return self.seconds("stale-while-revalidate")

    @property
    def stale_if_error(self) -> int | None:
        """RFC 5861 §4 (response and request directive); invalid disables it."""
        return self.seconds("stale-if-error")

    # request directives (§5.2.1)
    @property
    def only_if_cached(self) -> bool:
        return "only-if-cached" in self.directives

    @property
    def min_fresh(self) -> int | None:
        return self.seconds("min-fresh")

    @property
    def request_max_age(self) -> int | None:
        """§5.2.1.1 request ``max-age``; an invalid argument is ignored (it only ever
        restricts reuse, so ignoring it is the safe fallback for the client)."""
        return self.seconds("max-age")

    @property
    def max_stale(self) -> int | None:
        """§5.2.1.2: "If no value is assigned to max-stale, then the client will accept a
        stale response of any age" — ``DELTA_MAX``; invalid → ``None`` (not accepted)."""
        if "max-stale" not in self.directives:
            return None
        raw = self.directives["max-stale"]
        return DELTA_MAX if raw is None else delta_seconds(raw)


def _skip_member(value: str, pos: int) -> int:
    """The position after the next top-level comma (quoted strings skipped whole)."""
    in_quotes = False
    while pos < len(value):
        char = value[pos]
        if in_quotes:
            if char == "\\":
                pos += 1
            elif char == '"':
                in_quotes = False
        elif char == '"':
            in_quotes = True
        elif char == ",":
            return pos + 1
        pos += 1
    return pos


def _quoted_string(value: str, pos: int) -> tuple[str, int] | None:
    """Parse a quoted-string starting at ``value[pos] == '"'``: (content, end) or None."""
    out: list[str] = []
    pos += 1
    while pos < len(value):
        char = value[pos]
        if char == "\\" and pos + 1 < len(value):
            out.append(value[pos + 1])
            pos += 2
            continue
        if char == '"':
            return "".join(out), pos + 1
        out.append(char)
        pos += 1
    return None


def _parse_member(value: str, pos: int) -> tuple[str, str | None, int] | None:
    """One ``token [ "=" ( token / quoted-string ) ] OWS`` ending at a comma or the end."""
    while pos < len(value) and value[pos] in " \t":
        pos += 1
    name = _TOKEN.match(value, pos)
    if not name:
        return None
    pos = name.end()
    arg: str | None = None
    if pos < len(value) and value[pos] == "=":
        pos += 1
        if pos < len(value) and value[pos] == '"':
            quoted = _quoted_string(value, pos)
            if quoted is None:
                return None
            arg, pos = quoted
        else:
            token = _TOKEN.match(value, pos)
            if not token:
                return None
            arg, pos = token.group(0), token.end()
    while pos < len(value) and value[pos] in " \t":
        pos += 1
    if pos < len(value) and value[pos] != ",":
        return None
    return name.group(0).lower(), arg, pos + 1


@functools.lru_cache(maxsize=4096)
def parse_cache_control(value: str | None) -> CacheControl:
    """Parse one (combined) Cache-Control field value; members that do not parse are skipped.

    Memoised: responses repeat a few values ("public, max-age=3600") and a miss asks for its
    directives several times. The result is shared, so it is read-only to every caller.

    Duplicate directives keep the first occurrence: §4.2.1 "When there is more than one value
    present for a given directive ... either the first occurrence should be used or the
    response should be considered stale".
    """
    directives: dict[str, str | None] = {}
    if not value:
        return CacheControl(directives)
    pos = 0
    while pos < len(value):
        parsed = _parse_member(value, pos)
        if parsed is None:
            pos = _skip_member(value, pos)
            continue
        name, arg, pos = parsed
        directives.setdefault(name, arg)
    return CacheControl(directives)


# -- Structured Field Dictionary (RFC 8941 §4.2.2), as much as CDN-Cache-Control needs --------

_SF_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_SF_INTEGER = re.compile(r"-?\d{1,15}")
_SF_DECIMAL = re.compile(r"-?\d{1,12}\.\d{1,3}")
_SF_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_SF_BYTES = re.compile(r":[A-Za-z0-9+/=]*:")
_SF_BOOLEAN = re.compile(r"\?[01]")

_SfValue = int | float | str | bool


class _SfError(ValueError):
    pass


def _sf_bare_item(value: str, pos: int) -> tuple[_SfValue, str, int]:
    """(value, kind, end) of an sf bare item at ``pos``."""
    if pos < len(value) and value[pos] == '"':
        quoted = _quoted_string(value, pos)
        if quoted is None or any(ord(c) < 0x20 or ord(c) > 0x7E for c in quoted[0]):
            raise _SfError("bad string")
        return quoted[0], "string", quoted[1]
    for pattern, kind in ((_SF_DECIMAL, "decimal"), (_SF_INTEGER, "integer"),
                          (_SF_TOKEN, "token"), (_SF_BYTES, "bytes"),
                          (_SF_BOOLEAN, "boolean")):
        match = pattern.match(value, pos)
        if match:
            text = match.group(0)
            item: _SfValue
            if kind == "integer":
                item = int(text)
            elif kind == "decimal":
                item = float(text)
            elif kind == "boolean":
                item = text == "?1"
            else:
                item = text
            return item, kind, match.end()
    raise _SfError(f"bad item at {pos}")


def _sf_parameters(value: str, pos: int) -> int:
    """Skip ``*( ";" OWS key [ "=" bare-item ] )`` (parameters are not used)."""
    while pos < len(value) and value[pos] == ";":
        pos += 1
        while pos < len(value) and value[pos] == " ":
            pos += 1
        key = _SF_KEY.match(value, pos)
        if not key:
            raise _SfError("bad parameter key")
        pos = key.end()
        if pos < len(value) and value[pos] == "=":
            _item, _kind, pos = _sf_bare_item(value, pos + 1)
    return pos


@functools.lru_cache(maxsize=1024)
def parse_sf_directives(value: str | None) -> CacheControl | None:
    """``CDN-Cache-Control`` as directives, or ``None`` when it is not a valid SF Dictionary.
    Memoised like ``parse_cache_control`` (the result is read-only).

    Keys are lower-cased before matching (lenient on case only). Known delta-seconds
    directives must be Integers ≥ 0; Boolean false members are dropped (RFC 8941: ``a=?0``).
    """
    if value is None or not value.strip():
        return None
    directives: dict[str, str | None] = {}
    text = value.strip()
    pos = 0
    try:
        while pos < len(text):
            key = _SF_KEY.match(text.lower(), pos)
            if not key:
                raise _SfError("bad key")
            name, pos = key.group(0), key.end()
            item: _SfValue = True
            kind = "boolean"
            if pos < len(text) and text[pos] == "=":
                item, kind, pos = _sf_bare_item(text, pos + 1)
            pos = _sf_parameters(text, pos)
            if name in _NUMERIC and kind != "integer" and item is not True:
                raise _SfError(f"{name} must be an Integer")
            if name in _NUMERIC and isinstance(item, int) and not isinstance(item, bool) \
                    and item < 0:
                raise _SfError(f"{name} must not be negative")
            if item is not False:
                directives[name] = None if item is True else str(item)
            while pos < len(text) and text[pos] in " \t":
                pos += 1
            if pos < len(text):
                if text[pos] != ",":
                    raise _SfError("expected ','")
                pos += 1
                while pos < len(text) and text[pos] in " \t":
                    pos += 1
                if pos >= len(text):
                    raise _SfError("trailing comma")
    except _SfError:
        return None
    return CacheControl(directives)


def parse_targeted_field(name: str, value: str | None) -> CacheControl | None:
    """A targeted field's directives if it has a valid, non-empty value (RFC 9213 §2.1)."""
    if name.lower() == "cdn-cache-control":
        parsed = parse_sf_directives(value)
    else:  # Surrogate-Control and other legacy targeted fields use Cache-Control's grammar
        parsed = parse_cache_control(value)
    return parsed if parsed is not None and parsed.directives else None


@record
class ResponseDirectives:
    """The directives a CDN tier obeys for one response, and where they came from."""

    cc: CacheControl
    targeted: bool  # True when taken from a targeted field (then Expires is ignored)


def response_directives(
    headers: Fields, targeted_fields: tuple[str, ...] = DEFAULT_TARGETED_FIELDS
) -> ResponseDirectives:
    """Select the directives for this tier (RFC 9213 §2.1).

    "the cache MUST select the first (in target-list order) field with a valid, non-empty
    value and use its value to determine the caching policy for the response, and it MUST
    ignore the Cache-Control and Expires header fields in that response, unless no valid,
    non-empty value is available from the listed header fields."
    """
    memo = headers.memo
    if type(memo) is _DirectivesMemo and memo.targeted_fields is targeted_fields:
        return memo.directives
    found = None
    for name in targeted_fields:
        parsed = parse_targeted_field(name, headers.get(name))
        if parsed is not None:
            found = ResponseDirectives(parsed, targeted=True)
            break
    if found is None:
        found = ResponseDirectives(parse_cache_control(headers.get("cache-control")),
                                   targeted=False)
    if memo is None:
        headers.memo = _DirectivesMemo(targeted_fields, found)
    return found


class _DirectivesMemo:
    """``response_directives`` of one ``Fields``, for one list of targeted fields."""

    __slots__ = ("directives", "targeted_fields")

    def __init__(self, targeted_fields: tuple[str, ...], directives: ResponseDirectives
                 ) -> None:
        self.targeted_fields = targeted_fields
        self.directives = directives
