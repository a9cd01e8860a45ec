"""The shield tier: the shared cache engine facing the origin, authenticated to edges."""
