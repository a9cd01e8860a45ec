-- Origin metadata: who may sign requests, buckets, objects with their fragment maps, and the
-- storage nodes and volumes fragments live in.

CREATE TABLE credentials (
    access_key  text PRIMARY KEY,
    secret_key  text NOT NULL,
    owner       text NOT NULL,
    created     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE buckets (
    name        text PRIMARY KEY,
    owner       text NOT NULL,
    public_read boolean NOT NULL DEFAULT false,
    created     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE nodes (
    id          text PRIMARY KEY,
    zone        text NOT NULL,
    address     text NOT NULL,
    capacity    bigint,              -- bytes; NULL until a node reports it
    last_seen   timestamptz          -- last successful health probe by any origin
);

-- Volumes any fragment was ever written to; sizes are filled in by the compactor/scrubber from
-- the nodes' own reports (GET /volumes). Live bytes per volume come from ``fragments``.
CREATE TABLE volumes (
    node_id     text NOT NULL REFERENCES nodes (id),
    volume      integer NOT NULL,
    size        bigint,
    first_used  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, volume)
);

-- One row per current object version. ``id`` is chosen by the origin when the PUT starts (it is
-- also embedded in every fragment's on-disk id), so a record found on disk can be traced back.
-- Keys compare byte-wise (COLLATE "C" = UTF-8 code point order), as S3 lists them.
CREATE TABLE objects (
    id                  uuid PRIMARY KEY,
    bucket              text NOT NULL REFERENCES buckets (name),
    key                 text COLLATE "C" NOT NULL,
    size                bigint NOT NULL,
    etag                text NOT NULL,               -- MD5 hex of the body, without quotes
    content_type        text NOT NULL,
    cache_control       text,
    content_disposition text,
    content_encoding    text,
    surrogate_keys      text[] NOT NULL DEFAULT '{}',
    metadata            jsonb NOT NULL DEFAULT '{}', -- x-amz-meta-* (lower-case names)
    last_modified       timestamptz NOT NULL DEFAULT now(),
    ec_type             text NOT NULL,
    ec_ndata            smallint NOT NULL,
    ec_nparity          smallint NOT NULL,
    segment_size        integer NOT NULL,
    -- Fragments that could not be written (quorum met without them); the reconstructor
    -- looks for objects with missing_fragments > 0 and fills the gaps.
    missing_fragments   integer NOT NULL DEFAULT 0,
    UNIQUE (bucket, key)
);

CREATE INDEX objects_with_missing_fragments ON objects (id) WHERE missing_fragments > 0;

-- The fragment map, one row per stored fragment (absent row = fragment missing). A table
-- rather than a JSONB column on ``objects``: a Range read fetches only the segments it needs,
-- and GC/compaction/rebuild ask "what lives in volume V of node N" through the index below.
CREATE TABLE fragments (
    object_id   uuid NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    segment     integer NOT NULL,
    frag_index  smallint NOT NULL,
    node_id     text NOT NULL,
    volume      integer NOT NULL,
    "offset"    bigint NOT NULL,
    length      integer NOT NULL,
    checksum    bigint NOT NULL,     -- CRC-32 computed by the origin before sending
    PRIMARY KEY (object_id, segment, frag_index)
);

CREATE INDEX fragments_by_volume ON fragments (node_id, volume);
