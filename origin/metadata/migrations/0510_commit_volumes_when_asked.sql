-- The commit's `volumes` upsert only when the origin asks for it (issue 6): an origin that
-- already saw a (node, volume) pair committed does not upsert it on every PUT (measured alone:
-- ~37 us of a ~240 us commit in PostgreSQL for the nine pairs of a 4 KiB PUT, which every
-- PUT into the same active volumes repeated). A row leaves `volumes` only when its volume is
-- deleted, and a node numbers its volumes upwards, so a pair seen once keeps its row; a node
-- whose directory was wiped starts again at volume 1, whose row may then be missing until the
-- GC's next check of that volume upserts it (record_volume_check): `volumes` is a catalogue,
-- no read of a fragment depends on it.
DROP FUNCTION origin_commit_object(uuid, text, text, bigint, text, text, text, text, text,
    text[], jsonb, text, smallint, smallint, integer, integer, text, jsonb, jsonb, integer,
    text, integer[], smallint[], text[], integer[], bigint[], integer[], bigint[]);

-- As in 0500, with the volumes upsert run only when p_note_volumes is true.
CREATE FUNCTION origin_commit_object(
    p_id uuid, p_bucket text, p_key text, p_size bigint, p_etag text, p_content_type text,
    p_cache_control text, p_content_disposition text, p_content_encoding text,
    p_surrogate_keys text[], p_metadata jsonb, p_ec_type text, p_ec_ndata smallint,
    p_ec_nparity smallint, p_segment_size integer, p_missing_fragments integer,
    p_version_id text, p_tags jsonb, p_checksum jsonb, p_part_count integer,
    p_storage_class text,
    f_segment integer[], f_index smallint[], f_node text[], f_volume integer[],
    f_offset bigint[], f_length integer[], f_checksum bigint[], p_note_volumes boolean)
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
    END IF;
    IF p_note_volumes THEN
        INSERT INTO volumes (node_id, volume)
            SELECT DISTINCT n, v FROM unnest(f_node, f_volume) AS u (n, v) ORDER BY n, v
            ON CONFLICT DO NOTHING;  -- sorted: concurrent commits lock rows in one order
    END IF;
    RETURN NEXT created;
END
$$;
