"""What the origin's health probe records of a node's disk (``origin/disk_probe.py``,
``origin/nodehealth.node_status``): pure rules, no server."""

from __future__ import annotations

import json
import uuid

from origin.disk_probe import disks_to_record
from origin.metadata.fragments import NodeRow
from origin.metadata.node_disks import NodeDisk
from origin.nodehealth import NodeStatus, node_status

DISK_A, DISK_B = str(uuid.uuid4()), str(uuid.uuid4())


def _row(node_id: str, disk_id: str | None, volume_base: int | None) -> NodeRow:
    return NodeRow(node_id, "z", f"http://{node_id}", "active", 0.1, disk_id, volume_base)


def test_a_disk_that_matches_the_record_is_not_recorded_again() -> None:
    up = {"n1": NodeStatus("n1", DISK_A, 5)}
    assert disks_to_record(up, [_row("n1", DISK_A, 5)]) == []


def test_a_replaced_disk_and_a_first_disk_are_recorded() -> None:
    up = {"n1": NodeStatus("n1", DISK_B, 9), "n2": NodeStatus("n2", DISK_A, 3)}
    rows = [_row("n1", DISK_A, 5), _row("n2", None, None)]
    assert disks_to_record(up, rows) == [NodeDisk("n1", DISK_B, 9), NodeDisk("n2", DISK_A, 3)]


def test_a_disk_below_the_recorded_base_is_still_handed_on_for_the_transition_to_refuse() -> None:
    up = {"n1": NodeStatus("n1", DISK_B, 1)}
    assert disks_to_record(up, [_row("n1", DISK_A, 5)]) == [NodeDisk("n1", DISK_B, 1)]


def test_answers_without_a_whole_identity_another_node_id_or_a_row_are_skipped() -> None:
    up = {"n1": NodeStatus("n1", None, None),        # an older build
          "n2": NodeStatus("n2", DISK_B, None),
          "n3": NodeStatus("n9", DISK_B, 9),         # another node at n3's address
          "n4": NodeStatus(None, DISK_B, 9),         # not a storage node's answer
          "n5": NodeStatus("n5", DISK_B, 9)}         # no row
    rows = [_row(n, DISK_A, 5) for n in ("n1", "n2", "n3", "n4")]
    assert disks_to_record(up, rows) == []


def test_node_status_reads_the_health_answer_and_ignores_what_it_cannot_use() -> None:
    body = json.dumps({"status": "ok", "node_id": "n1", "zone": "z",
                       "disk_id": DISK_A.upper(), "volume_base": 12}).encode()
    assert node_status(body) == NodeStatus("n1", DISK_A, 12)  # the id as the metadata prints it
    assert node_status(b'{"status": "ok", "node_id": "n1"}') == NodeStatus("n1", None, None)
    assert node_status(b'{"node_id": 3, "disk_id": "nope", "volume_base": true}') == \
        NodeStatus()
    assert node_status(b"ok") == NodeStatus()
    assert node_status(b"[1]") == NodeStatus()
