"""The lifecycle worker: applies every bucket's lifecycle rules, and cleans up abandoned
multipart uploads.

Worker contract (``origin.workers.base``): ``run_once()`` does one pass and returns
``LifecycleStats``; the shared ``run_forever`` / ``Closeable`` repeat it. Time comes from
``clock`` so tests advance it instead of waiting days. Only metadata changes here; the
bytes of what expired become garbage for the collector (issue 4's GC). A Transition records
the target class (``objects.lifecycle_storage_class``) and asks the ``transition`` hook
(``origin.storage_class_change.lifecycle_mover`` in the origin) to move the data; the object
is done once its ``storage_class`` is the target, so a move that failed is tried again on the
next pass. Without a hook a transition is only recorded.

Each action is planned by a scan, then applied per version under the key's advisory lock
(the lock every writer of the key takes) and only if the version still qualifies: an
overwrite or a version promoted back to current between plan and apply wins. ``on_planned``
(tests) runs between the two steps, so such interleavings can be driven deterministically.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from origin.lifecycle.rules import Rule, cutoff, matches
from origin.metadata import buckets as bucket_store
from origin.metadata import multipart as upload_store
from origin.metadata.objects import key_successor
from origin.metadata.rows import insert_delete_marker, lock_key, make_room, purge_rows

log = logging.getLogger("cdn.origin.lifecycle")

Clock = Callable[[], datetime]
# (object id, target storage class) -> moved?: moves an object's data to another class.
TransitionHook = Callable[[str, str], Awaitable[bool]]
# (action, object id) -> None: called after an action was planned, before it is applied.
PlanHook = Callable[[str, str], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LifecycleStats:
    buckets: int = 0
    expired: int = 0
    delete_markers_removed: int = 0
    noncurrent_expired: int = 0
    uploads_aborted: int = 0
    transitioned: int = 0
    completed_uploads_forgotten: int = 0
    errors: int = 0


class LifecycleWorker:
    name = "lifecycle"

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Clock = utc_now,
        batch: int = 1000,
        abandoned_after: timedelta | None = timedelta(days=7),
        forget_completed_after: timedelta = timedelta(days=1),
        transition: TransitionHook | None = None,
        on_planned: PlanHook | None = None,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._batch = batch
        self._abandoned_after = abandoned_after
        self._forget_after = forget_completed_after
        self._transition = transition
        self._on_planned = on_planned

    async def _planned(self, action: str, object_id: str) -> None:
        if self._on_planned is not None:
            await self._on_planned(action, object_id)

    async def run_once(self) -> LifecycleStats:
        stats = LifecycleStats()
        now = self._clock()
        for bucket in await bucket_store.buckets_with_lifecycle(self._pool):
            stats.buckets += 1
            for rule in bucket.lifecycle or []:
                if rule["status"] != "Enabled":
                    continue
                try:
                    await self._apply(bucket.name, bucket.versioning, rule, now, stats)
                except Exception:  # noqa: BLE001 - one bad rule must not stop the others
                    stats.errors += 1
                    log.exception("lifecycle rule %s of %s failed", rule["id"], bucket.name)
        if self._abandoned_after is not None:
            for upload in await upload_store.stale_uploads(self._pool,
                                                           now - self._abandoned_after):
                if await upload_store.abort_upload(self._pool, upload.upload_id):
                    stats.uploads_aborted += 1
        stats.completed_uploads_forgotten = await upload_store.forget_completed(
            self._pool, now - self._forget_after)
        return stats

    async def _apply(self, bucket: str, versioning: str | None, rule: Rule, now: datetime,
                     stats: LifecycleStats) -> None:
        if rule["expiration_days"]:
            for row in await self._current(bucket, rule, cutoff(rule["expiration_days"], now)):
                await self._planned("expire", str(row["id"]))
                if await self._expire(bucket, row["key"], str(row["id"]), versioning):
                    stats.expired += 1
        if rule["expired_object_delete_marker"]:
            stats.delete_markers_removed += await self._lone_markers(bucket, rule)
        if rule["noncurrent_days"]:
            stats.noncurrent_expired += await self._noncurrent(
                bucket, rule, cutoff(rule["noncurrent_days"], now))
        if rule["abort_days"]:
            limit = cutoff(rule["abort_days"], now)
            for upload in await upload_store.stale_uploads(self._pool, limit):
                if upload.bucket == bucket and upload.key.startswith(rule["prefix"]) \
                        and await upload_store.abort_upload(self._pool, upload.upload_id):
                    stats.uploads_aborted += 1
        for transition in rule["transitions"]:
            target = transition["storage_class"]
            for row in await self._current(bucket, rule, cutoff(transition["days"], now),
                                           not_in_class=target):
                await self._planned("transition", str(row["id"]))
                try:
                    if await self._transition_one(str(row["id"]), target):
                        stats.transitioned += 1
                except Exception:  # noqa: BLE001 - the next object (and pass) goes on
                    stats.errors += 1
                    log.exception("transition of %s to %s failed", row["id"], target)

    async def _transition_one(self, object_id: str, target: str) -> bool:
        await self._pool.execute(
            "UPDATE objects SET lifecycle_storage_class = $2 WHERE id = $1",
            uuid.UUID(object_id), target)
        if self._transition is None:
            return True
        return await self._transition(object_id, target)

    def _range(self, rule: Rule) -> tuple[str, str | None]:
        prefix = rule["prefix"]
        return prefix, key_successor(prefix) if prefix else None

    async def _current(self, bucket: str, rule: Rule, before: datetime,
                       not_in_class: str | None = None) -> list[asyncpg.Record]:
        """Current (non-delete-marker) versions under the rule's filter, older than
        ``before`` (and, for a transition, not in the target class yet; without a data
        mover, not recorded as transitioned yet)."""
        low, high = self._range(rule)
        rows = await self._pool.fetch(
            """SELECT id, key, tags FROM objects
               WHERE bucket = $1 AND is_latest AND NOT delete_marker AND key >= $2
               AND ($3::text IS NULL OR key < $3) AND last_modified <= $4
               AND ($5::text IS NULL OR (storage_class <> $5 AND
                    ($7 OR lifecycle_storage_class IS DISTINCT FROM $5)))
               ORDER BY key LIMIT $6""", bucket, low, high, before, not_in_class, self._batch,
            self._transition is not None)
        return [r for r in rows if matches(rule, r["key"], dict(r["tags"]))]

    async def _expire(self, bucket: str, key: str, object_id: str,
                      versioning: str | None) -> bool:
        """Expire the current version if it is still ``object_id`` (an overwrite since the
        scan wins): gone when unversioned, hidden behind a delete marker otherwise."""
        async with self._pool.acquire() as conn, conn.transaction():
            await lock_key(conn, bucket, key)
            still = await conn.fetchval(
                "SELECT 1 FROM objects WHERE id = $1 AND is_latest", uuid.UUID(object_id))
            if not still:
                return False
            if versioning is None:
                await purge_rows(conn, [object_id])
                return True
            version_id = uuid.uuid4().hex if versioning == "Enabled" else "null"
            await make_room(conn, bucket, key, version_id)
            await insert_delete_marker(conn, bucket, key, version_id)
        return True

    async def _lone_markers(self, bucket: str, rule: Rule) -> int:
        """Delete markers that hide nothing any more (no other version of their key)."""
        low, high = self._range(rule)
        status = await self._pool.execute(
            """DELETE FROM objects o WHERE bucket = $1 AND is_latest AND delete_marker
               AND key >= $2 AND ($3::text IS NULL OR key < $3)
               AND NOT EXISTS (SELECT 1 FROM objects v WHERE v.bucket = o.bucket
                               AND v.key = o.key AND v.kind = 'object' AND v.id <> o.id)""",
            bucket, low, high)
        return int(status.split()[-1])

    async def _noncurrent(self, bucket: str, rule: Rule, before: datetime) -> int:
        low, high = self._range(rule)
        rows = await self._pool.fetch(
            """SELECT id, key, tags FROM objects
               WHERE bucket = $1 AND NOT is_latest AND kind = 'object' AND key >= $2
               AND ($3::text IS NULL OR key < $3) AND noncurrent_since <= $4 LIMIT $5""",
            bucket, low, high, before, self._batch)
        expired = 0
        for row in rows:
            if not matches(rule, row["key"], dict(row["tags"])):
                continue
            await self._planned("noncurrent", str(row["id"]))
            async with self._pool.acquire() as conn, conn.transaction():
                await lock_key(conn, bucket, row["key"])
                # Promoted back to current (its successor was deleted) since the scan: keep.
                still = await conn.fetchval(
                    """SELECT 1 FROM objects WHERE id = $1 AND NOT is_latest
                       AND noncurrent_since <= $2""", row["id"], before)
                if still:
                    await purge_rows(conn, [str(row["id"])])
                    expired += 1
        return expired


def stats_dict(stats: LifecycleStats) -> dict[str, Any]:
    return dict(stats.__dict__)
