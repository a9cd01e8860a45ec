"""Object-store metadata in PostgreSQL: buckets, objects and their fragment maps, nodes,
volumes, credentials."""
