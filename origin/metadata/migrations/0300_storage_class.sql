-- The storage class an object version was put in (or moved to), as S3 reports it
-- (x-amz-storage-class, StorageClass in listings). The scheme columns say how the bytes are
-- encoded; the class name cannot be recovered from them (a tiny STANDARD object is stored
-- replicated, exactly like a REPLICATED one). Additive only.
ALTER TABLE objects ADD COLUMN IF NOT EXISTS storage_class text NOT NULL DEFAULT 'STANDARD';
-- Rows written before this column: replicated objects of at least one segment's worth were
-- put in a replicated class (tiny ones may have been STANDARD; they keep the default).
UPDATE objects SET storage_class = 'REPLICATED'
    WHERE ec_type = 'replicated' AND size >= 512 AND NOT delete_marker;
