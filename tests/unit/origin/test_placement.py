"""Placement: distinct nodes, zones dealt round-robin, deterministic, healthy only."""

from __future__ import annotations

from origin.placement import Candidate, choose_nodes, fragments_per_zone

NODES = [Candidate(f"node-{i}", f"zone-{'abc'[i % 3]}") for i in range(9)]
ZONE_OF = {c.node_id: c.zone for c in NODES}


def test_nine_nodes_in_three_zones_get_three_fragments_each() -> None:
    for object_id in (f"object-{i}" for i in range(50)):
        slots = choose_nodes(object_id, NODES, 9)
        assert len(set(slots)) == 9
        assert fragments_per_zone(slots, ZONE_OF) == {"zone-a": 3, "zone-b": 3, "zone-c": 3}
        # consecutive slots alternate zones, so the 6 data fragments are spread too
        assert len({ZONE_OF[n] for n in slots[:3]}) == 3


def test_placement_is_deterministic_and_varies_per_object() -> None:
    assert choose_nodes("abc", NODES, 9) == choose_nodes("abc", list(reversed(NODES)), 9)
    firsts = {choose_nodes(f"o{i}", NODES, 9)[0] for i in range(100)}
    assert len(firsts) > 5  # load spreads over nodes


def test_only_healthy_candidates_are_used() -> None:
    healthy = NODES[:7]
    slots = choose_nodes("obj", healthy, 9)
    assert len(slots) == 7
    assert set(slots) <= {c.node_id for c in healthy}


def test_losing_a_node_moves_only_its_slots_in_the_ranking() -> None:
    before = choose_nodes("obj", NODES, 3)
    survivors = [c for c in NODES if c.node_id != before[0]]
    after = choose_nodes("obj", survivors, 3)
    assert before[0] not in after


def test_uneven_zones_still_spread() -> None:
    nodes = [Candidate("a1", "a"), Candidate("a2", "a"), Candidate("a3", "a"),
             Candidate("a4", "a"), Candidate("b1", "b"), Candidate("c1", "c")]
    slots = choose_nodes("x", nodes, 6)
    assert set(slots) == {c.node_id for c in nodes}
    assert {"b1", "c1"} <= set(slots[:3])
