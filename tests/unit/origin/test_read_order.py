"""The order in which a GET asks for a segment's fragments: data before parity, nodes believed
down last (their reads are still tried: the belief may be stale)."""

from __future__ import annotations

from typing import cast

from origin.ec_reader import ECReader
from origin.erasure import cached_scheme
from origin.layout import FragmentLocation
from origin.metrics import OriginMetrics
from origin.nodeclient import NodeClient
from origin.nodehealth import NodeHealth

NODES = [f"n{i}" for i in range(9)]
SCHEME = cached_scheme(6, 3, 1 << 20, "isa_l_rs_cauchy")


def _reader(health: NodeHealth) -> ECReader:
    # candidate_order reads only the health belief; no request is made here.
    return ECReader(cast(NodeClient, None), health, pipeline_depth=1, metrics=OriginMetrics())


def _locations(indexes: list[int]) -> dict[int, FragmentLocation]:
    return {i: FragmentLocation(NODES[i], 1, 100 * i, 700, 0) for i in indexes}


def test_all_nodes_up_data_fragments_come_first_in_index_order() -> None:
    reader = _reader(NodeHealth(NODES))
    assert reader.candidate_order(SCHEME, _locations([8, 3, 0, 6, 5, 1, 2, 7, 4])) == \
        list(range(9))
    assert reader.candidate_order(SCHEME, _locations([7, 2, 6, 4])) == [2, 4, 6, 7]


def test_a_node_believed_down_is_asked_last_even_for_a_data_fragment() -> None:
    health = NodeHealth(NODES)
    health.mark_down("n1", "probe failed")
    reader = _reader(health)
    assert reader.candidate_order(SCHEME, _locations(list(range(9)))) == \
        [0, 2, 3, 4, 5, 6, 7, 8, 1]
    health.mark_up("n1")
    assert reader.candidate_order(SCHEME, _locations(list(range(9)))) == list(range(9))
