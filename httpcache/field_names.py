"""Header field names as the parsers hand them over (bytes), decoded once per process.

Each ``on_header`` callback (``fast_server``, ``lean_client``) needs a field's name as sent
(decoded as latin-1) and in lower case (the key of the name index). Decoding and lowering
made two new strings per field, each lower-case one hashed again by the index; but a server
sees few distinct names, so each is decoded once and the same two strings (their hashes
cached in them) are handed out after. Bounded: the common names are known from the start,
and at most ``NAMES_MAX`` are kept; later ones are decoded each time.
"""

from __future__ import annotations

NAMES_MAX = 1024
NAMES: dict[bytes, tuple[str, str]] = {}


def learn(raw: bytes) -> tuple[str, str]:
    """``(name, lower-case name)`` for ``raw``, kept in ``NAMES`` while there is room."""
    name = raw.decode("latin-1")
    names = (name, name.lower())
    if len(NAMES) < NAMES_MAX:
        NAMES[raw] = names
    return names


for _name in (
        "Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Age",
        "Authorization", "Cache-Control", "Cache-Status", "CDN-Cache-Control", "Connection",
        "Content-Encoding", "Content-Length", "Content-Range", "Content-Type", "Cookie",
        "Date", "ETag", "Expires", "Host", "If-Match", "If-Modified-Since", "If-None-Match",
        "If-Range", "If-Unmodified-Since", "Keep-Alive", "Last-Modified", "Location",
        "Pragma", "Range", "Referer", "Server", "Set-Cookie", "Surrogate-Control",
        "Surrogate-Key", "Transfer-Encoding", "User-Agent", "Vary", "Via",
        "X-Forwarded-For"):
    learn(_name.encode("latin-1"))
    learn(_name.lower().encode("latin-1"))
