"""One compactor per volume at a time, across processes: a PostgreSQL advisory lock.

Several compactors can reach the same sealed volume at once: the background worker of each
origin with workers and ``cdn repair --compact``. Without a lock both copy the volume's live
records; the rows follow one copy (the repointing is conditional on the old place) and the
other is garbage, written for nothing. ``compaction_lock`` lets one of them have the volume;
the other is told so at once (``pg_try_…``: no waiting) and skips it.

The lock is transaction-scoped (``pg_try_advisory_xact_lock``), taken in a transaction of its
own on a pooled connection kept for as long as the volume is worked on. That transaction does
nothing else (READ COMMITTED takes a snapshot per statement and it writes nothing, so the idle
transaction holds back no vacuum). The lock ends with it:

* when the block ends, whatever the reason (done, failed, cancelled): rolled back here, or by
  asyncpg when the connection goes back to the pool (and if that fails, the connection is
  closed). So it cannot stay behind on a pooled connection, whose release resets no session
  state (``db._keep_session``): the reason for not using a session-level lock.
* when the holder's process dies: PostgreSQL ends the session of a client that went away, and
  the session's locks with it. A crashed compactor blocks nobody and no lease needs an expiry.
  (A holder cut off by the network keeps it until its TCP connection is found dead.)

Key: the two-int form ``(hashtext(node_id), volume)``, a key space of its own beside the
single 64-bit keys of ``rows.lock_key`` and of the migrations. Two node ids with the same
``hashtext`` would share the locks of their equal volume numbers: a volume now and then
skipped for a pass, never two copies.

A server configured with an ``idle_in_transaction_session_timeout`` shorter than a volume's
compaction ends the lock's session under it (off by default): the compaction then goes on
unprotected, as before this lock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg

from origin.metadata.db import translate_db_errors

log = logging.getLogger("cdn.origin.metadata")

_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext($1), $2)"


@translate_db_errors
async def _acquire(pool: asyncpg.Pool) -> asyncpg.Connection:
    return await pool.acquire()


@translate_db_errors
async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    await pool.release(conn)


@translate_db_errors
async def _begin_and_try(conn: asyncpg.Connection, node_id: str, volume: int) -> bool:
    await conn.execute("BEGIN")
    return bool(await conn.fetchval(_TRY_LOCK, node_id, volume))


async def _end(conn: asyncpg.Connection) -> None:
    """Roll back the lock's transaction. A broken connection has lost the lock already; the
    pool closes it on release."""
    try:
        await conn.execute("ROLLBACK")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        log.warning("compaction lock's session ended early: %r", exc)


@contextlib.asynccontextmanager
async def compaction_lock(pool: asyncpg.Pool, node_id: str, volume: int
                          ) -> AsyncIterator[bool]:
    """Hold the cluster-wide compaction lock of ``volume`` on ``node_id`` for the block:
    yields True, or False when another session holds it (then nothing is held)."""
    conn = await _acquire(pool)
    try:
        held = await _begin_and_try(conn, node_id, volume)
        try:
            yield held
        finally:
            await _end(conn)
    finally:
        await _release(pool, conn)
