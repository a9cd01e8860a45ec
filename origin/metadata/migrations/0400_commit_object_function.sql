-- A PUT's metadata commit in one round trip (issue 6): the same steps ``commit_object`` ran as
-- eight statements in a client-side transaction (key lock, 'null' version replaced, previous
-- latest made noncurrent, object row, fragment rows, volumes), run as one statement. Called
-- in autocommit, the call is its own transaction: all of it commits or none does.
--
-- In READ COMMITTED every statement of a VOLATILE function takes a fresh snapshot, so the
-- statements after the advisory lock see whatever a writer of the same key committed while
-- this one waited, exactly as the separate statements did.
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
        INSERT INTO fragments (object_id, segment, frag_index, node_id, volume, "offset",
                length, checksum)
            SELECT p_id, * FROM unnest(f_segment, f_index, f_node, f_volume, f_offset,
                f_length, f_checksum);
        INSERT INTO volumes (node_id, volume)
            SELECT DISTINCT n, v FROM unnest(f_node, f_volume) AS u (n, v) ORDER BY n, v
            ON CONFLICT DO NOTHING;  -- sorted: concurrent commits lock rows in one order
    END IF;
    RETURN NEXT created;
END
$$;
