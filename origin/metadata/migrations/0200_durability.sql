-- Durability (issue 4): node registration and loss, repair queue, GC/compaction accounting,
-- resumable worker cursors. Additive only.

-- state 'lost': the node is gone for good; its fragments are rebuilt elsewhere and it is never
-- placed on again. heartbeat/free_bytes come from the node itself (it registers on start-up).
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'active';
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS heartbeat timestamptz;
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS free_bytes bigint;

-- Written by the garbage collector: bytes of unreferenced records past the grace period.
ALTER TABLE volumes ADD COLUMN IF NOT EXISTS dead_bytes bigint;
ALTER TABLE volumes ADD COLUMN IF NOT EXISTS checked timestamptz;

-- Fragments a reader or the scrubber found bad (checksum mismatch, missing record). No foreign
-- key: the object may be deleted meanwhile, the reconstructor then drops the entry.
CREATE TABLE IF NOT EXISTS repair_queue (
    object_id   uuid NOT NULL,
    segment     integer NOT NULL,
    frag_index  smallint NOT NULL,
    reason      text NOT NULL,
    reported    timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (object_id, segment, frag_index)
);

-- Where a long pass (scrub of a node, repair scan) stopped, so a restart resumes there.
CREATE TABLE IF NOT EXISTS worker_progress (
    worker      text NOT NULL,
    scope       text NOT NULL,
    position    jsonb NOT NULL,
    updated     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker, scope)
);
