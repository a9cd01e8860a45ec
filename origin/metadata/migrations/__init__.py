"""SQL migrations of the origin, applied in order by ``cdn.migrations``."""
