-- Disk identity of storage nodes (storagenode/identity.py). A node reports in its heartbeat
-- the random id of the disk behind its data dir and the first volume number that disk uses;
-- fresh disks number their volumes above anything an earlier disk of the node started, so a
-- fragment row of the node below `volume_base` points at an earlier disk. When `disk_id`
-- changes from one recorded id to another, the heartbeat's transaction queues those rows for
-- repair (metadata/node_disks.py) and fsck counts them as missing. `disk_since`: when the
-- current disk was first reported. NULL in all three until the node runs a build that
-- reports them (a NULL id is not a change: nothing is queued on upgrade). Additive only.
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS disk_id uuid;
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS volume_base integer;
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS disk_since timestamptz;
