"""Which storage node holds fragment slot ``i`` of an object (pure: no I/O, no clock).

Nodes are ranked by rendezvous hashing keyed by the object id, so every origin computes the same
answer without a shared table and losing a node moves only the slots it held. Slots are then
dealt round-robin over zones (zones ordered by their best-ranked node): with 9 nodes in 3 zones
each zone gets 3 of the 9 fragments, so with 6+3 a whole zone can fail and every segment stays
readable. Only the nodes passed in are considered: the caller passes the healthy ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cdn.rendezvous import rank


@dataclass(frozen=True)
class Candidate:
    """A node placement may choose: its id and its failure domain."""

    node_id: str
    zone: str


def choose_nodes(object_id: str, candidates: Iterable[Candidate], width: int) -> list[str]:
    """Up to ``width`` distinct node ids for ``object_id``; item ``i`` serves slot ``i``.

    Fewer candidates than ``width`` gives a shorter list; the caller decides whether that is
    still enough (write quorum) and leaves the remaining slots empty for the reconstructor.
    """
    by_id = {c.node_id: c for c in candidates}
    zones: dict[str, list[str]] = {}
    for node_id in rank(object_id, by_id):
        zones.setdefault(by_id[node_id].zone, []).append(node_id)
    return _deal_round_robin(list(zones.values()), width)


def _deal_round_robin(queues: Sequence[list[str]], width: int) -> list[str]:
    """One node from each zone in turn (zone order and order within a zone kept)."""
    chosen: list[str] = []
    depth = 0
    while len(chosen) < width:
        row = [q[depth] for q in queues if depth < len(q)]
        if not row:
            break
        chosen.extend(row[: width - len(chosen)])
        depth += 1
    return chosen


def fragments_per_zone(slots: Sequence[str | None], zone_of: dict[str, str]) -> dict[str, int]:
    """How many slots each zone holds (for tests and for the future rebalancer)."""
    counts: dict[str, int] = {}
    for node_id in slots:
        if node_id is not None:
            zone = zone_of[node_id]
            counts[zone] = counts.get(zone, 0) + 1
    return counts


def choose_repair_targets(
    key: str,
    holders: dict[int, str],
    wanted: Sequence[int],
    candidates: Iterable[Candidate],
) -> dict[int, str]:
    """New homes for the fragment indexes ``wanted`` of one segment.

    ``holders`` maps the fragment indexes that still exist to their nodes (those nodes hold a
    fragment of this segment already and are never chosen again: two fragments on one node
    would be lost together). Each wanted index goes to the healthy candidate in the zone that
    holds the fewest fragments of this segment so far, ties broken by rendezvous rank of
    ``key`` — so a rebuilt segment is spread over zones as evenly as the survivors allow.
    Indexes for which no node is left are absent from the result.
    """
    by_id = {c.node_id: c for c in candidates}
    zone_of = dict((c.node_id, c.zone) for c in by_id.values())
    per_zone: dict[str, int] = {}
    for node_id in holders.values():
        zone = zone_of.get(node_id)
        if zone is not None:
            per_zone[zone] = per_zone.get(zone, 0) + 1
    used = set(holders.values())
    ranked = [n for n in rank(key, by_id) if n not in used]
    chosen: dict[int, str] = {}
    for index in wanted:
        if not ranked:
            break
        best = min(range(len(ranked)),
                   key=lambda pos: (per_zone.get(zone_of[ranked[pos]], 0), pos))
        node_id = ranked.pop(best)
        chosen[index] = node_id
        per_zone[zone_of[node_id]] = per_zone.get(zone_of[node_id], 0) + 1
    return chosen
