-- S3 features (issue 5): versioning, delete markers, tags, checksums, multipart uploads whose
-- completed object references its parts' fragments, lifecycle configuration.
--
-- An ``objects`` row is now one *version* of a key (kind 'object': data or a delete marker) or
-- the data of one uploaded part (kind 'part', never listed). Exactly one version per key is
-- ``is_latest``; the others are noncurrent. Unversioned buckets keep one version, 'null'.

ALTER TABLE buckets ADD COLUMN versioning text CHECK (versioning IN ('Enabled', 'Suspended'));
ALTER TABLE buckets ADD COLUMN lifecycle jsonb;   -- parsed rules (origin.lifecycle.rules)

ALTER TABLE objects ADD COLUMN version_id text NOT NULL DEFAULT 'null';
ALTER TABLE objects ADD COLUMN is_latest boolean NOT NULL DEFAULT true;
ALTER TABLE objects ADD COLUMN delete_marker boolean NOT NULL DEFAULT false;
ALTER TABLE objects ADD COLUMN kind text NOT NULL DEFAULT 'object'
    CHECK (kind IN ('object', 'part'));
ALTER TABLE objects ADD COLUMN tags jsonb NOT NULL DEFAULT '{}';
ALTER TABLE objects ADD COLUMN checksum jsonb;     -- {"algorithm": "CRC32", "value": base64}
ALTER TABLE objects ADD COLUMN part_count integer; -- set on completed multipart objects
ALTER TABLE objects ADD COLUMN seq bigserial;      -- version order within a key
ALTER TABLE objects ADD COLUMN noncurrent_since timestamptz;
-- The class a lifecycle Transition asked for; the storage-class worker moves the data.
ALTER TABLE objects ADD COLUMN lifecycle_storage_class text;

ALTER TABLE objects DROP CONSTRAINT objects_bucket_key_key;
-- The listing index: one current version per key; ``key`` is COLLATE "C", so a prefix is the
-- btree range ``key >= prefix AND key < successor(prefix)``.
CREATE UNIQUE INDEX objects_current ON objects (bucket, key) WHERE is_latest;
CREATE UNIQUE INDEX objects_version_ids ON objects (bucket, key, version_id)
    WHERE kind = 'object';
CREATE INDEX objects_noncurrent ON objects (bucket, noncurrent_since)
    WHERE NOT is_latest AND kind = 'object';

CREATE TABLE multipart_uploads (
    upload_id    text PRIMARY KEY,
    bucket       text NOT NULL REFERENCES buckets (name),
    key          text COLLATE "C" NOT NULL,
    owner        text NOT NULL,
    initiated    timestamptz NOT NULL DEFAULT now(),
    -- what CreateMultipartUpload said about the final object (content type, metadata, tags…)
    attributes   jsonb NOT NULL DEFAULT '{}',
    -- set once completed: {"etag", "version_id"}; completing again answers the same
    completed    jsonb,
    completed_at timestamptz
);
CREATE INDEX multipart_uploads_listing ON multipart_uploads (bucket, key, initiated)
    WHERE completed IS NULL;

-- The parts uploaded so far; the data is an ``objects`` row of kind 'part' (with fragments).
CREATE TABLE upload_parts (
    upload_id    text NOT NULL REFERENCES multipart_uploads ON DELETE CASCADE,
    part_number  integer NOT NULL,
    object_id    uuid NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    size         bigint NOT NULL,
    etag         text NOT NULL,
    last_modified timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (upload_id, part_number)
);

-- A completed multipart object is the concatenation of part data rows: no byte is copied.
CREATE TABLE object_parts (
    object_id      uuid NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    part_number    integer NOT NULL,
    part_object_id uuid NOT NULL REFERENCES objects (id),
    "offset"       bigint NOT NULL,
    size           bigint NOT NULL,
    etag           text NOT NULL,
    PRIMARY KEY (object_id, part_number)
);
CREATE INDEX object_parts_by_part ON object_parts (part_object_id);
