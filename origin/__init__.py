"""The object store: S3-style API, PostgreSQL metadata, erasure-coded data on storage nodes."""
