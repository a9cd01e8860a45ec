"""One worker per volume at a time, across processes: a PostgreSQL advisory lock.

Two kinds of worker act on a sealed volume past the grace period, in every origin with
workers and in ``cdn repair --gc/--compact``: the compactor (copies the live records,
repoints their rows, waits ``drain`` s, deletes the volume) and the garbage collector (walks
the volume and deletes it when nothing in it is referenced, or seals it, or notes its dead
bytes). Both take ``volume_lock`` for the volume's whole work and skip a volume whose lock is
taken (``pg_try_…``: no waiting), counting it ``volumes_busy``. Without it:

* two compactors copy the same live records; the rows follow one copy (the repointing is
  conditional on the old place) and the other is garbage, written for nothing;
* a GC walking a volume whose compactor has repointed every row finds nothing live and
  deletes it during the compactor's drain, under readers still holding the old map (they
  fall back to parity: no wrong bytes, but redundancy lost for nothing), and the compactor's
  own delete then finds the volume gone.

The lock is transaction-scoped (``pg_try_advisory_xact_lock``), taken in a transaction of its
own on a pooled connection kept for as long as the volume is worked on. That transaction does
nothing else (READ COMMITTED takes a snapshot per statement and it writes nothing, so the idle
transaction holds back no vacuum). The lock ends with it:

* when the block ends, whatever the reason (done, failed, cancelled): rolled back here, or by
  asyncpg when the connection goes back to the pool (and if that fails, the connection is
  closed). So it cannot stay behind on a pooled connection, whose release resets no session
  state (``db._keep_session``): the reason for not using a session-level lock.
* when the holder's process dies: PostgreSQL ends the session of a client that went away, and
  the session's locks with it. A crashed worker blocks nobody and no lease needs an expiry.
  (A holder cut off by the network keeps it until its TCP connection is found dead.)

The transaction is *idle* for nearly all of the work: the walk, the copies and the drain run
on the nodes and on other pooled connections. A server, database or role configured with
``idle_in_transaction_session_timeout`` (off by default, and we set none; managed servers
and DBAs often do) would end the session after that long idle, and the lock with it, while
the worker goes on believing it holds it; ``transaction_timeout`` (PostgreSQL 17) likewise.
So the lock's transaction turns both off for itself with ``SET LOCAL``, which ends with the
transaction and leaves the pooled session as it was.

The lock can still be lost while the holder works: its session ended by
``pg_terminate_backend``, a server restart or failover, or a network cut. The holder would
hear of it only at its next statement on that connection, the final ROLLBACK, after it had
deleted the volume. So the holder confirms the lock (``VolumeLock.confirm``) right
before each step that is only safe alone: deleting a volume (GC and compactor) and the
compactor's repointing of rows. One cheap query on the lock's own connection: the lock is in
``pg_locks``, granted, for this session's backend pid (a dead session fails the query; a cut
connection fails it within ``CONFIRM_TIMEOUT``, and the connection is then closed, so the
final ROLLBACK does not wait on it too). If not, ``VolumeLockLost`` ends the
volume's work: the workers count it (``volumes_lock_lost``), log it and delete nothing; a
later pass, under a new lock, sees what is left. The confirmation narrows the unguarded
window to the time between it and the step (one round trip to the node or the database),
not the whole walk, copy or drain; the node's delete is not fenced by the lock.

Key: the two-int form ``(hashtext(node_id), volume)``, a key space of its own beside the
single 64-bit keys of ``rows.lock_key`` and of the migrations. Two node ids with the same
``hashtext`` would share the locks of their equal volume numbers: a volume now and then
skipped for a pass, never two workers on one volume.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from origin.metadata.db import translate_db_errors

log = logging.getLogger("cdn.origin.metadata")

_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext($1), $2)"
# One round trip (simple query protocol: several statements, no parameters).
_BEGIN = "BEGIN; SET LOCAL idle_in_transaction_session_timeout = 0"
_BEGIN_17 = _BEGIN + "; SET LOCAL transaction_timeout = 0"  # a setting since PostgreSQL 17


@translate_db_errors
async def _acquire(pool: asyncpg.Pool) -> asyncpg.Connection:
    return await pool.acquire()


@translate_db_errors
async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    await pool.release(conn)


@translate_db_errors
async def _begin_and_try(conn: asyncpg.Connection, node_id: str, volume: int) -> bool:
    await conn.execute(_BEGIN_17 if conn.get_server_version().major >= 17 else _BEGIN)
    return bool(await conn.fetchval(_TRY_LOCK, node_id, volume))


async def _end(conn: asyncpg.Connection) -> None:
    """Roll back the lock's transaction. A broken connection has lost the lock already; the
    pool closes it on release."""
    try:
        await conn.execute("ROLLBACK")
    except Exception as exc:  # noqa: BLE001 - as in VolumeLock.confirm: any failure, a lost lock
        log.warning("volume lock's session ended early: %r", exc)


class VolumeLockLost(Exception):
    """The volume's lock is no longer held (its session ended or its transaction is gone):
    the holder must stop working on the volume."""


# Whether this session holds the two-int advisory lock: classid and objid are the keys as
# oids (hashtext may be negative: the int4 -> oid cast keeps its bits), objsubid 2 the form.
_HOLDS = """SELECT EXISTS (SELECT 1 FROM pg_locks
                           WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                             AND classid = hashtext($1)::oid AND objid = $2::oid
                             AND objsubid = 2)"""
# A confirmation that takes longer than this counts as a lost lock: a connection cut by the
# network would otherwise hang the holder until TCP gives up (minutes).
CONFIRM_TIMEOUT = 10.0


@dataclass
class VolumeLock:
    """The lock of one volume as its block sees it: ``held`` when it was taken."""

    node_id: str
    volume: int
    held: bool
    _conn: asyncpg.Connection

    async def confirm(self) -> None:
        """Return only while the lock's session is alive and holds the lock; otherwise raise
        ``VolumeLockLost``. Call right before a step that is only safe alone."""
        if not self.held:
            raise VolumeLockLost(f"{self.node_id} volume {self.volume}: lock not held")
        try:
            holds = await self._conn.fetchval(_HOLDS, self.node_id, self.volume,
                                              timeout=CONFIRM_TIMEOUT)
        # Any failure is a lock we cannot vouch for: besides PostgresError, InterfaceError,
        # OSError and TimeoutError, a session ended by the server can surface as asyncpg's
        # InternalClientError when its FATAL notice races the query (seen in the tests).
        except Exception as exc:  # noqa: BLE001
            # Dead or not answering: close it (a connection the server ended is detached
            # from its pool already, and says so). The pool replaces it on release.
            with contextlib.suppress(Exception):
                self._conn.terminate()
            raise VolumeLockLost(f"{self.node_id} volume {self.volume}: the lock's session "
                                 f"is gone ({exc!r})") from exc
        if not holds:
            raise VolumeLockLost(f"{self.node_id} volume {self.volume}: the lock's session "
                                 "no longer holds it")


@contextlib.asynccontextmanager
async def volume_lock(pool: asyncpg.Pool, node_id: str, volume: int
                      ) -> AsyncIterator[VolumeLock]:
    """Hold the cluster-wide lock of ``volume`` on ``node_id`` (compactor and GC) for the
    block: yields a ``VolumeLock`` whose ``held`` is False when another session holds it
    (then nothing is held). ``confirm()`` before each step that needs the lock."""
    conn = await _acquire(pool)
    try:
        held = await _begin_and_try(conn, node_id, volume)
        try:
            yield VolumeLock(node_id, volume, held, conn)
        finally:
            await _end(conn)
    finally:
        await _release(pool, conn)
