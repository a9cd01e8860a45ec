-- One fragment-map row per segment (issue 6). A 4 KiB object's nine fragment rows, each with
-- its primary-key entry, its (node_id, volume) index entry and its foreign-key check, were a
-- third of a PUT's commit in PostgreSQL; one row holding the segment's fragments as parallel
-- arrays costs one of each (measured, one connection, 3,000 commits after 10,000: backend CPU
-- per commit 297 -> 223 us, GIN pending list cleaned inside the measurement).
--
-- Element i of the arrays is one fragment: frag_indexes[i] stored on node_ids[i] in volume
-- volumes[i] at offsets[i] (record start), lengths[i] payload bytes, checksums[i] the CRC-32
-- the origin computed before sending. A fragment that could not be written has no element;
-- a segment has a row once any of its fragments is stored. The order of elements carries no
-- meaning.
CREATE TABLE segment_fragments (
    object_id    uuid NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    segment      integer NOT NULL,
    frag_indexes smallint[] NOT NULL,
    node_ids     text[] NOT NULL,
    volumes      integer[] NOT NULL,
    offsets      bigint[] NOT NULL,
    lengths      integer[] NOT NULL,
    checksums    bigint[] NOT NULL,
    PRIMARY KEY (object_id, segment),
    CHECK (cardinality(node_ids) = cardinality(frag_indexes)
           AND cardinality(volumes) = cardinality(frag_indexes)
           AND cardinality(offsets) = cardinality(frag_indexes)
           AND cardinality(lengths) = cardinality(frag_indexes)
           AND cardinality(checksums) = cardinality(frag_indexes))
);

-- "What lives in volume V of node N" (GC, compaction, scrubber) through a GIN index over
-- each row's (node, volume) places, as 'node/volume' text: a volume number holds no '/', so
-- the text names one pair. plpgsql rather than a SQL function: a SQL function whose body
-- is a sub-select cannot be inlined and was planned again for every insert (~80 us per
-- commit; this one ~10 us). GIN's pending list (fastupdate, the default) makes an insert one
-- append; the merge into the index is done later in bulk, and costs about nothing per row.
CREATE FUNCTION origin_fragment_place(node_id text, volume integer) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT node_id || '/' || volume $$;

CREATE FUNCTION origin_fragment_places(node_ids text[], volumes integer[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    places text[] := '{}';
BEGIN
    FOR i IN 1 .. cardinality(node_ids) LOOP
        places := places || (node_ids[i] || '/' || volumes[i]);
    END LOOP;
    RETURN places;
END
$$;

CREATE INDEX segment_fragments_by_volume ON segment_fragments
    USING gin (origin_fragment_places(node_ids, volumes));

-- Existing maps, one row per fragment, become one row per segment.
INSERT INTO segment_fragments (object_id, segment, frag_indexes, node_ids, volumes, offsets,
        lengths, checksums)
    SELECT object_id, segment, array_agg(frag_index ORDER BY frag_index),
        array_agg(node_id ORDER BY frag_index), array_agg(volume ORDER BY frag_index),
        array_agg("offset" ORDER BY frag_index), array_agg(length ORDER BY frag_index),
        array_agg(checksum ORDER BY frag_index)
    FROM fragments GROUP BY object_id, segment;

DROP TABLE fragments;

-- The per-fragment shape, for reading (fsck-style counts, tests, a person at psql). Not a
-- table: it is not updatable, and it has no (node_id, volume) index (ask segment_fragments
-- through origin_fragment_places for that). Its columns are those of the old table.
CREATE VIEW fragments AS
    SELECT s.object_id, s.segment, u.frag_index, u.node_id, u.volume, u."offset", u.length,
           u.checksum
    FROM segment_fragments s,
         unnest(s.frag_indexes, s.node_ids, s.volumes, s.offsets, s.lengths, s.checksums)
             AS u (frag_index, node_id, volume, "offset", length, checksum);

-- A blob's fragment rows from the per-fragment columns the origin sends (grouped by segment:
-- the fragments of one segment are contiguous). The usual case, one segment, is the arrays
-- as they came.
CREATE FUNCTION origin_insert_fragments(
    p_id uuid, f_segment integer[], f_index smallint[], f_node text[], f_volume integer[],
    f_offset bigint[], f_length integer[], f_checksum bigint[])
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF cardinality(f_segment) = 0 THEN
        RETURN;
    END IF;
    IF f_segment[1] = f_segment[cardinality(f_segment)] THEN
        INSERT INTO segment_fragments VALUES (p_id, f_segment[1], f_index, f_node, f_volume,
            f_offset, f_length, f_checksum);
    ELSE
        INSERT INTO segment_fragments
            SELECT p_id, seg, array_agg(i ORDER BY ord), array_agg(n ORDER BY ord),
                array_agg(v ORDER BY ord), array_agg(o ORDER BY ord),
                array_agg(l ORDER BY ord), array_agg(c ORDER BY ord)
            FROM unnest(f_segment, f_index, f_node, f_volume, f_offset, f_length, f_checksum)
                WITH ORDINALITY AS u (seg, i, n, v, o, l, c, ord)
            GROUP BY seg;
    END IF;
END
$$;

-- As in 0400, with the fragment rows written by origin_insert_fragments.
CREATE OR REPLACE FUNCTION origin_commit_object(
    p_id uuid, p_bucket text, p_key text, p_size bigint, p_etag text, p_content_type text,
    p_cache_control text, p_content_disposition text, p_content_encoding text,
    p_surrogate_keys text[], p_metadata jsonb, p_ec_type text, p_ec_ndata smallint,
    p_ec_nparity smallint, p_segment_size integer, p_missing_fragments integer,
    p_version_id text, p_tags jsonb, p_checksum jsonb, p_part_count integer,
    p_storage_class text,
    f_segment integer[], f_index smallint[], f_node text[], f_volume integer[],
    f_offset bigint[], f_length integer[], f_checksum bigint[])
RETURNS SETOF objects
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    old_ids uuid[];
    part_ids uuid[];
    created objects;
BEGIN
    -- rows.lock_key: the same lock text, so Python-side transactions and this one exclude
    -- each other.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_bucket || '/' || p_key, 0));
    -- rows.make_room
    IF p_version_id = 'null' THEN
        SELECT array_agg(id) INTO old_ids FROM objects
            WHERE bucket = p_bucket AND key = p_key AND version_id = 'null' AND kind = 'object';
        IF old_ids IS NOT NULL THEN
            -- rows.purge_rows: a completed multipart object takes its part rows along.
            SELECT array_agg(part_object_id) INTO part_ids FROM object_parts
                WHERE object_id = ANY(old_ids);
            DELETE FROM objects WHERE id = ANY(old_ids);
            IF part_ids IS NOT NULL THEN
                DELETE FROM objects WHERE id = ANY(part_ids);
            END IF;
        END IF;
    END IF;
    UPDATE objects SET is_latest = false, noncurrent_since = now()
        WHERE bucket = p_bucket AND key = p_key AND is_latest;
    INSERT INTO objects (id, bucket, key, size, etag, content_type, cache_control,
            content_disposition, content_encoding, surrogate_keys, metadata, ec_type, ec_ndata,
            ec_nparity, segment_size, missing_fragments, version_id, tags, checksum,
            part_count, storage_class)
        VALUES (p_id, p_bucket, p_key, p_size, p_etag, p_content_type, p_cache_control,
            p_content_disposition, p_content_encoding, p_surrogate_keys, p_metadata, p_ec_type,
            p_ec_ndata, p_ec_nparity, p_segment_size, p_missing_fragments, p_version_id,
            p_tags, p_checksum, p_part_count, p_storage_class)
        RETURNING * INTO created;
    -- objects.insert_fragments
    IF cardinality(f_segment) > 0 THEN
        PERFORM origin_insert_fragments(p_id, f_segment, f_index, f_node, f_volume, f_offset,
            f_length, f_checksum);
        INSERT INTO volumes (node_id, volume)
            SELECT DISTINCT n, v FROM unnest(f_node, f_volume) AS u (n, v) ORDER BY n, v
            ON CONFLICT DO NOTHING;  -- sorted: concurrent commits lock rows in one order
    END IF;
    RETURN NEXT created;
END
$$;
