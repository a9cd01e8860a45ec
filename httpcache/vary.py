"""Secondary cache keys from ``Vary`` (RFC 9111 §4.1), pure.

§4.1: "A cache MUST NOT use a stored response ... unless all the presented request header
fields nominated by that Vary field value match in both the original request ... and the
presented request." Matching allows normalisation: "The selecting header fields from two
requests are defined to match if and only if those in the first request can be transformed
to those in the second request by applying any of the following: adding or removing
whitespace, where allowed in the field's syntax; combining multiple field lines with the same
field name ...; normalizing both header field values in a way that is known to have
identical semantics, according to the field's specification (e.g., reordering field values
when order is not significant; case-normalization, where values are defined to be
case-insensitive)". "A stored response with a Vary header field value containing a member
"*" always fails to match."
"""

from __future__ import annotations

import hashlib

from httpcache.headers import Fields, split_list

# Fields whose list members are unordered and case-insensitive (RFC 9110 §12.5: preferences
# are carried by weights, not order).
_UNORDERED_CASELESS = frozenset({"accept", "accept-encoding", "accept-language",
                                 "accept-charset"})

Selecting = tuple[tuple[str, str | None], ...]


def vary_field_names(headers: Fields) -> list[str]:
    """Lower-cased members of every ``Vary`` line, in order, without duplicates."""
    names: list[str] = []
    for name in split_list(headers.get("vary")):
        lname = name.lower()
        if lname not in names:
            names.append(lname)
    return names


def vary_is_star(headers: Fields) -> bool:
    """§4.1: a ``*`` member (on any line, in any position) never matches."""
    return "*" in vary_field_names(headers)


def normalise_field(name: str, value: str | None) -> str | None:
    """A field value in a normal form: lines combined, whitespace around commas removed;
    for the Accept-* fields also lower-cased and sorted."""
    if value is None:
        return None
    members = split_list(value)
    if name in _UNORDERED_CASELESS:
        members = sorted(m.lower().replace(" ", "") for m in members)
    return ",".join(members)


def selecting_fields(request_headers: Fields, response_headers: Fields) -> Selecting:
    """The request's normalised values of the fields the response's ``Vary`` names."""
    return tuple((name, normalise_field(name, request_headers.get(name)))
                 for name in vary_field_names(response_headers) if name != "*")


def vary_matches(selecting: Selecting, request_headers: Fields) -> bool:
    """Whether ``request_headers`` select the variant stored with ``selecting``."""
    return all(normalise_field(name, request_headers.get(name)) == value
               for name, value in selecting)


def variant_key(selecting: Selecting) -> str:
    """A short, stable secondary key for one variant ("" when the response has no Vary)."""
    if not selecting:
        return ""
    text = "\n".join(f"{n}:{'' if v is None else '=' + v}" for n, v in selecting)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def request_variant_key(names: tuple[str, ...], request_headers: Fields) -> str:
    """The secondary key a request selects, given the Vary field names stored for its URL."""
    return variant_key(tuple((n, normalise_field(n, request_headers.get(n))) for n in names))
