"""A storage node's disk as the metadata knows it: the reports that record it (the node's
heartbeat, and the origin's health probe), and what a replaced disk means for the node's
fragment rows.

Every heartbeat reports the disk behind the node's data dir (``storagenode/identity.py``): a
random ``disk_id`` and ``volume_base``, the first volume number that disk uses. A fresh disk
numbers its volumes above every number an earlier disk of the node started, so the rows of
the node pointing below ``volume_base`` are exactly the rows written to earlier disks. When
``nodes.disk_id`` changes from one recorded id to another, those fragments are gone: they are
queued in ``repair_queue`` (reason ``disk-replaced``; the reconstructor confirms each by
reading it, as for the scrubber's ``missing-on-node``, and the node answers ``not-found`` for
a volume it does not have), and fsck stops counting them (``fragments.object_redundancy``
compares every row's volume with its node's ``volume_base``), so durability accounting is
right from the first heartbeat of the new disk, not from the next scrub.

A node started without ``--database-url`` sends no heartbeat; its ``GET /_health`` answers
the same two numbers, and every origin's health probe records them (``record_disk``, called
by ``origin/disk_probe.py`` when they differ from what ``nodes`` holds), so for such a node
the accounting is right from the first probe round that reaches the new disk. Heartbeat and
probe go through one transition (``_switch_disk``): what follows holds for either report,
and for both at once.

Why in the report's own transaction rather than in an origin worker: the change is seen
there and nowhere else (the previous id is overwritten by it), so recording the new id and
queueing the old disk's rows commit together or not at all: no window, and no crash point,
where the new id is recorded but the rows are not queued. It is idempotent and safe when
reports race (two heartbeats, a heartbeat and probes of several origins): the node's row is
locked (``FOR UPDATE``) before it is compared, so the second report of a new disk sees the
id the first one recorded and does nothing, and queueing a fragment twice updates one
``repair_queue`` row. A report (heartbeat or probe) of a disk whose base is *below* the
recorded one (an earlier disk come back, a second process with the same node id, or a clock
set back) is refused with ``DiskRegressed`` and changes nothing (the node logs the refusal
every interval, an origin once per disk): its volume numbers may alias the recorded disk's,
so the rows must not be judged by them. The cost of a replacement is one ``INSERT … SELECT``
over the node's rows (through the ``segment_fragments_by_node`` index), once.

Rows committed after the replacement but written to the old disk (a PUT in flight while the
node was replaced) are below ``volume_base`` too: fsck counts them as missing at once, and the
scrubber queues them on its next pass (their volume is not on the node). Tables other than
``segment_fragments`` that hold fragment locations one per row (none today,
``fragments.reference_tables``) are left to the scrubber as well.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from origin.metadata.db import translate_db_errors

log = logging.getLogger("cdn.origin.metadata.node_disks")


class DiskRegressed(Exception):
    """A heartbeat reported a disk numbering from below the disk recorded for its node."""


@dataclass(frozen=True)
class NodeBeat:
    """What a storage node reports in a heartbeat."""

    node_id: str
    zone: str
    address: str
    capacity: int
    free_bytes: int
    disk_id: str
    volume_base: int


@dataclass(frozen=True)
class DiskReplaced:
    """The heartbeat found another disk than the recorded one and queued the earlier disk's
    fragments for repair."""

    node_id: str
    old_disk_id: str
    new_disk_id: str
    volume_base: int
    fragments_queued: int


# The node's fragments below the new disk's first volume number (every element of every row
# naming the node, found through segment_fragments_by_node), queued once each.
_QUEUE_EARLIER_DISKS = """
    WITH gone AS (
        SELECT DISTINCT s.object_id, s.segment, s.frag_indexes[p] AS frag_index
        FROM segment_fragments s
        CROSS JOIN LATERAL unnest(array_positions(s.node_ids, $1)) AS p
        WHERE s.node_ids && ARRAY[$1]::text[] AND s.volumes[p] < $2),
    queued AS (
        INSERT INTO repair_queue (object_id, segment, frag_index, reason)
        SELECT object_id, segment, frag_index, 'disk-replaced' FROM gone
        ON CONFLICT (object_id, segment, frag_index) DO UPDATE SET reason = EXCLUDED.reason
        RETURNING 1)
    SELECT count(*) FROM queued"""


@dataclass(frozen=True)
class NodeDisk:
    """A node's disk as one report gives it: by heartbeat (``NodeBeat``) or by the origin's
    health probe of the node's ``GET /_health`` (``origin/disk_probe.py``)."""

    node_id: str
    disk_id: str
    volume_base: int


async def _switch_disk(conn: asyncpg.Connection, disk: NodeDisk) -> DiskReplaced | None:
    """The one transition of a node's recorded disk, inside the caller's transaction: lock
    the node's row, compare, refuse a regression, queue the earlier disks' fragments when the
    id changed from a recorded one, record the reported disk. Nothing is written when the
    report matches the record. A node without a row records nothing (the heartbeat inserts
    the row first; the probe only knows nodes that have one)."""
    before = await conn.fetchrow(
        "SELECT disk_id, volume_base FROM nodes WHERE id = $1 FOR UPDATE", disk.node_id)
    if before is None:
        return None
    old_id = None if before["disk_id"] is None else str(before["disk_id"])
    old_base = before["volume_base"]
    if (old_id, old_base) == (disk.disk_id, disk.volume_base):
        return None
    replaced = old_id is not None and old_id != disk.disk_id
    if replaced and old_base is not None and disk.volume_base < old_base:
        raise DiskRegressed(
            f"node {disk.node_id}: disk {disk.disk_id} numbers volumes from "
            f"{disk.volume_base}, below {old_base} of the recorded disk {old_id}; "
            "refusing it (an earlier disk, a second process with this node id, or a "
            "clock set back)")
    queued = 0
    if replaced:
        queued = int(await conn.fetchval(_QUEUE_EARLIER_DISKS, disk.node_id, disk.volume_base))
    await conn.execute(
        """UPDATE nodes SET
               disk_since = CASE WHEN disk_id IS DISTINCT FROM $2::uuid THEN now()
                                 ELSE disk_since END,
               disk_id = $2::uuid, volume_base = $3
           WHERE id = $1""", disk.node_id, disk.disk_id, disk.volume_base)
    if not replaced:
        return None
    assert old_id is not None
    return DiskReplaced(disk.node_id, old_id, disk.disk_id, disk.volume_base, queued)


@translate_db_errors
async def record_heartbeat(pool: asyncpg.Pool, beat: NodeBeat) -> DiskReplaced | None:
    """Upsert the node's row (``heartbeat = now()``) with its disk; when the disk replaced a
    recorded one, queue the earlier disks' fragments in the same transaction and say so."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO nodes (id, zone, address) VALUES ($1, $2, $3)
               ON CONFLICT (id) DO NOTHING""", beat.node_id, beat.zone, beat.address)
        replaced = await _switch_disk(conn, NodeDisk(beat.node_id, beat.disk_id,
                                                     beat.volume_base))
        await conn.execute(
            """UPDATE nodes SET zone = $2, address = $3, capacity = $4, free_bytes = $5,
                   heartbeat = now()
               WHERE id = $1""",
            beat.node_id, beat.zone, beat.address, beat.capacity, beat.free_bytes)
    return replaced


@translate_db_errors
async def record_disk(pool: asyncpg.Pool, disk: NodeDisk) -> DiskReplaced | None:
    """Record the disk a health probe found on a node (no heartbeat, no other column): the
    same transition as a heartbeat's, in a transaction of its own, so a heartbeat and any
    number of origins' probes that see one replacement queue its predecessor's rows once.
    ``DiskRegressed`` as for a heartbeat."""
    async with pool.acquire() as conn, conn.transaction():
        return await _switch_disk(conn, disk)
