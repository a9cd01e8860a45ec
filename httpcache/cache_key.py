"""Cache keys (pure): the request target minus the query parameters a tier strips.

GET and HEAD share a key, so a HEAD is answered from a stored GET. The query keeps its
original order and encoding (only the stripped parameters are removed): reordering could
merge URLs an application treats differently.
"""

from __future__ import annotations

from urllib.parse import unquote_plus


def split_target(target: str) -> tuple[str, str]:
    """``/path?query`` → (``/path``, ``query``)."""
    path, _, query = target.partition("?")
    return path, query


def strip_query_params(query: str, names: frozenset[str]) -> str:
    """``query`` without the parameters in ``names`` (compared after percent-decoding)."""
    if not query or not names:
        return query
    kept = [part for part in query.split("&")
            if part and unquote_plus(part.partition("=")[0]) not in names]
    return "&".join(kept)


def make_target(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def cache_key(path: str, query: str) -> str:
    """The key for a (path, query); identical to the upstream target we request."""
    return make_target(path, query)
