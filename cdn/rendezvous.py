"""Rendezvous (highest-random-weight) hashing.

Used by the edge to pick a shield for a cache key and by the origin to place fragments: every
caller ranks the same candidates the same way without a shared table, and removing one candidate
moves only the keys that ranked it first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def score(key: str, candidate: str) -> int:
    """A stable 64-bit weight for ``candidate`` under ``key``."""
    digest = hashlib.blake2b(f"{candidate}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(key: str, candidates: Iterable[str]) -> list[str]:
    """Candidates ordered best first for ``key`` (ties broken by name, so order is total)."""
    return sorted(candidates, key=lambda c: (-score(key, c), c))
