"""Versioned SQL migrations applied at start-up.

Each component keeps numbered files (``0001_init.sql``, ``0002_….sql``) in a package folder.
Applied versions are recorded per component in ``schema_migrations``; an advisory lock makes
concurrent start-ups (several origins, control plane) apply each file exactly once.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

_LOCK_ID = 0x5EED_CD17
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files(package: str) -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` for every migration file in ``package``, in order."""
    found = []
    for entry in resources.files(package).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


async def apply_migrations(conn: asyncpg.Connection, component: str, package: str) -> list[str]:
    """Apply the pending migrations of ``component``; returns the names applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   component text NOT NULL,
                   version integer NOT NULL,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (component, version))"""
        )
        done = {r["version"] for r in await conn.fetch(
            "SELECT version FROM schema_migrations WHERE component = $1", component)}
        for version, name, sql in migration_files(package):
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                    component, version, name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied
