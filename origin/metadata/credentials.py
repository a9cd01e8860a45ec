"""Access keys allowed to sign requests, and who they act for."""

from __future__ import annotations

import asyncpg

from origin.metadata.db import translate_db_errors
from origin.metadata.models import Credential


@translate_db_errors
async def upsert_credential(pool: asyncpg.Pool, credential: Credential) -> None:
    """Create or rotate the secret of ``credential.access_key`` (used for the admin key at
    start-up, so changing the configured secret takes effect on restart)."""
    await pool.execute(
        """INSERT INTO credentials (access_key, secret_key, owner) VALUES ($1, $2, $3)
           ON CONFLICT (access_key) DO UPDATE
           SET secret_key = EXCLUDED.secret_key, owner = EXCLUDED.owner""",
        credential.access_key, credential.secret_key, credential.owner)


@translate_db_errors
async def get_credential(pool: asyncpg.Pool, access_key: str) -> Credential | None:
    row = await pool.fetchrow(
        "SELECT access_key, secret_key, owner FROM credentials WHERE access_key = $1",
        access_key)
    return Credential(row["access_key"], row["secret_key"], row["owner"]) if row else None
