"""The S3-style HTTP API of the origin (path-style buckets)."""
