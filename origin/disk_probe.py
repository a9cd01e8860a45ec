"""The origin's health probe as a second reporter of storage nodes' disks.

A node reports its disk identity (``storagenode/identity.py``: ``disk_id``, ``volume_base``)
in its heartbeat, but a node started without ``--database-url`` (listed in an origin's
``--nodes``) sends none: a wiped or replaced disk there would go unnoticed until the
scrubber's next pass over the node, and fsck would count the old disk's fragments as present
meanwhile. Its ``GET /_health`` answers the same two numbers, and every origin probes every
node each ``health_interval`` (``nodehealth.py``); so after each round the disks the probe
found are compared with what ``nodes`` records (the round reads that table anyway,
``workers/runtime.refresh_node_directory``), and each one that differs goes through the
heartbeat's own transition (``metadata/node_disks.record_disk``): a replaced disk has its
predecessor's fragments queued for repair and fsck stops counting them, within a round or
two of the node coming back. Nothing is written while probe and record agree (the common
case: one comparison per node and round, no query).

Heartbeats and the probes of any number of origins may all see one replacement: the
transition locks the node's row and compares there, so its rows are queued once. A disk
numbering below the recorded one is refused (``DiskRegressed``) and changes nothing; this
process logs it once per disk and does not ask again. The answer must name the node probed
(``node_id``): a different node now listening at a node's old address says nothing about
that node's disk. Answers without a disk identity (a node of an older build) are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import asyncpg

from origin.metadata.fragments import NodeRow
from origin.metadata.node_disks import DiskRegressed, DiskReplaced, NodeDisk, record_disk
from origin.nodehealth import NodeStatus

log = logging.getLogger("cdn.origin.disks")


def disks_to_record(up: Mapping[str, NodeStatus], recorded: Iterable[NodeRow]) -> list[NodeDisk]:
    """The disks the probe found (``up``: answers by node id) that differ from the recorded
    ones (``recorded``: rows of ``nodes``), for nodes that have a row, answered with their
    own node id and reported a whole disk identity. Pure."""
    rows = {row.node_id: row for row in recorded}
    found = []
    for node_id, status in sorted(up.items()):
        row = rows.get(node_id)
        if (row is None or status.node_id != node_id or status.disk_id is None
                or status.volume_base is None):
            continue
        if (row.disk_id, row.volume_base) != (status.disk_id, status.volume_base):
            found.append(NodeDisk(node_id, status.disk_id, status.volume_base))
    return found


class DiskProbe:
    """Records the disks one origin process's probe rounds find; remembers the refused ones
    (``DiskRegressed``) so each is logged and tried once."""

    def __init__(self) -> None:
        self._refused: set[NodeDisk] = set()

    async def record(self, pool: asyncpg.Pool, up: Mapping[str, NodeStatus],
                     recorded: Iterable[NodeRow]) -> list[DiskReplaced]:
        """Record every changed disk; the replacements this call found (a race lost to a
        heartbeat or another origin is not one)."""
        replaced = []
        for disk in disks_to_record(up, recorded):
            if disk in self._refused:
                continue
            try:
                change = await record_disk(pool, disk)
            except DiskRegressed as exc:
                self._refused.add(disk)
                log.error("health probe: %s", exc)
                continue
            if change is not None:
                log.warning("health probe: node %s has disk %s in place of disk %s; %d "
                            "fragments of the earlier disk (volumes below %d) queued for "
                            "repair", change.node_id, change.new_disk_id, change.old_disk_id,
                            change.fragments_queued, change.volume_base)
                replaced.append(change)
        return replaced
