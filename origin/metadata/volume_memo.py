"""The origin's memo of ``volumes`` rows it committed, so a PUT's commit skips the upsert of
pairs whose row exists (migration 0510: ~37 us of a ~240 us commit in PostgreSQL).

A row leaves ``volumes`` only when the GC deletes its volume, and a node numbers its volumes
upwards, so a pair committed once keeps its row, with one exception: a node whose directory
was wiped starts again at volume 1 (a node of a build before disk identities: a fresh disk now
numbers above its predecessor, ``storagenode/identity.py``), and a pair the memo holds may
then name a *new* volume whose row was deleted with the old one. Two rules bound that:

* a commit naming a volume of a node below the highest this memo has seen of that node is
  taken as a renumbering: the node's pairs are forgotten and the commit upserts. A commit
  that merely raced the node's switch to its next volume (a PUT that wrote into volume 5 and
  commits after another committed 6) looks the same and costs one upsert more, no harm;
* the whole memo is forgotten every ``ttl`` seconds, for what the first rule cannot see (this
  process never saw the wiped node's higher volumes): a missing row is back within ``ttl``,
  where before it waited for the GC's next check of that volume, which skips volumes younger
  than its grace period (72 h by default).

Pure: the caller gives the time (``now``, any monotonic clock).
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_TTL = 600.0


class KnownVolumes:
    """(node, volume) pairs whose ``volumes`` rows this process committed."""

    def __init__(self, ttl: float = DEFAULT_TTL) -> None:
        self.ttl = ttl
        self._pairs: set[tuple[str, int]] = set()
        self._highest: dict[str, int] = {}
        self._since: float | None = None

    def __contains__(self, pair: object) -> bool:
        return pair in self._pairs

    def needs_upsert(self, pairs: Iterable[tuple[str, int]], now: float) -> bool:
        """Whether a commit of ``pairs`` must upsert their rows (then call ``committed``)."""
        if self._since is None or now - self._since >= self.ttl:
            self._pairs.clear()
            self._highest.clear()
            self._since = now
        renumbered = False
        unknown = False
        for node, volume in pairs:
            if volume < self._highest.get(node, volume):
                renumbered = True
                self._forget_node(node)
            elif (node, volume) not in self._pairs:
                unknown = True
        return unknown or renumbered

    def committed(self, pairs: Iterable[tuple[str, int]]) -> None:
        """The commit that upserted ``pairs`` is durable: their rows exist."""
        for node, volume in pairs:
            self._pairs.add((node, volume))
            if volume > self._highest.get(node, -1):
                self._highest[node] = volume

    def _forget_node(self, node: str) -> None:
        self._pairs = {p for p in self._pairs if p[0] != node}
        self._highest.pop(node, None)
