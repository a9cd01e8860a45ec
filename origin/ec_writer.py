"""The write half of the data path: stream a body into erasure-coded fragments on the nodes.

The body is read in ``segment_size`` pieces (never whole), each piece is encoded into k+m
fragments and fragment ``i`` is sent to the node of placement slot ``i``, all slots in parallel.
A segment counts as stored once ``quorum`` fragments are durable; up to ``pipeline_depth``
segments are in flight while the next one is read, so network, codec and client upload overlap
with bounded memory. Once a segment has its quorum, slow slots get ``straggler_wait`` more
seconds and are then left missing (the reconstructor fills them). Any segment missing its
quorum fails the whole write with ``InsufficientNodes`` and nothing is committed: the caller
writes metadata only after ``write`` returns, so a failure leaves orphan fragments (for GC),
never dangling metadata.

The storage class is chosen per object: ``write`` reads the first segment before placing
anything, so an object that turns out smaller than the policy's small-object threshold is
stored replicated (``m + 1`` copies) instead of erasure coded, even when its length was not
declared. ``WrittenObject.scheme`` says what was used; it goes into the object row.

Write deadline (the garbage collector's safety rests on it): ``write`` refuses to finish when
more than ``max_write_seconds`` passed since it started, so no PUT ever commits metadata that
references fragments older than that. The collector only reclaims records older than its grace
period, which configuration keeps at least twice as long (see ``origin.workers.gc``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from origin.cpu import run_cpu
from origin.erasure import ECScheme, ErasureError, cached_scheme
from origin.errors import EntityTooLarge, InsufficientNodes, InternalError, RequestTimeout
from origin.layout import FragmentLocation, FragmentMap, fragment_id
from origin.metrics import OriginMetrics
from origin.nodeclient import NodeClient, NodeRequestError
from origin.nodehealth import NodeHealth
from origin.placement import Candidate, choose_nodes
from origin.storage_class import StorageClass, StorageClassPolicy

# ``read(n)`` returns exactly n bytes, or fewer only at the end of the body (b"" at EOF).
BodyReader = Callable[[int], Awaitable[bytes]]


@dataclass(frozen=True)
class WrittenObject:
    size: int
    md5_hex: str
    sha256_hex: str | None
    fragments: FragmentMap
    missing_fragments: int
    scheme: ECScheme


class _Digests:
    """MD5 (the ETag) and, when the client declared one, SHA-256 of the body."""

    def __init__(self, want_sha256: bool) -> None:
        self.md5 = hashlib.md5()
        self.sha256 = hashlib.sha256() if want_sha256 else None

    def update(self, data: bytes) -> None:
        self.md5.update(data)
        if self.sha256 is not None:
            self.sha256.update(data)


class ECWriter:
    def __init__(
        self,
        scheme: ECScheme,
        nodes: NodeClient,
        health: NodeHealth,
        zones: Mapping[str, str],
        *,
        quorum: int,
        pipeline_depth: int,
        metrics: OriginMetrics,
        straggler_wait: float = 1.0,
        policy: StorageClassPolicy | None = None,
        max_write_seconds: float = 3600.0,
    ) -> None:
        self.scheme = scheme
        self._nodes = nodes
        self._health = health
        # Shared with whoever learns about new nodes (zones of late registrations).
        self._zones = zones if isinstance(zones, dict) else dict(zones)
        self._quorum = quorum
        self._policy = policy
        self._max_write_seconds = max_write_seconds
        self._depth = pipeline_depth
        self._metrics = metrics
        self._straggler_wait = straggler_wait

    def quorum(self, scheme: ECScheme) -> int:
        """The configured quorum for the default scheme; ``k + 1`` (at most the width) for
        any other class."""
        if scheme is self.scheme:
            return self._quorum
        return min(scheme.ndata + 1, scheme.fragments_per_segment)

    def scheme_for(self, storage_class: StorageClass | None, size: int | None) -> ECScheme:
        """The scheme an object of ``size`` bytes (``None``: larger than one segment) in
        ``storage_class`` is written with."""
        if self._policy is None:
            return self.scheme
        cls = self._policy.for_object(storage_class or self._policy.get(None), size)
        return cached_scheme(cls.ndata, cls.nparity, self.scheme.segment_size, cls.ec_type)

    def place(self, object_id: str, scheme: ECScheme | None = None) -> list[str | None]:
        """Slot → node among the nodes believed up; empty slots (``None``) when fewer than
        k+m are up. Fails at once when even the quorum cannot be met."""
        scheme = scheme or self.scheme
        width = scheme.fragments_per_segment
        quorum = self.quorum(scheme)
        up = [Candidate(n, self._zones[n]) for n in self._health.up_nodes() if n in self._zones]
        chosen: list[str | None] = list(choose_nodes(object_id, up, width))
        if len(chosen) < quorum:
            raise InsufficientNodes(f"{len(chosen)} of {width} storage nodes are up; "
                                    f"{quorum} are needed to store an object")
        return chosen + [None] * (width - len(chosen))

    async def write(
        self, object_id: str, read: BodyReader, *, max_size: int, want_sha256: bool = False,
        storage_class: StorageClass | None = None,
    ) -> WrittenObject:
        """Store the body ``read`` yields; returns sizes, digests and the fragment map."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        digests = _Digests(want_sha256)
        step = self.scheme.segment_size
        size = 0
        scheme = self.scheme
        slots: list[str | None] | None = None
        tasks: list[asyncio.Task[dict[int, FragmentLocation]]] = []
        single: dict[int, FragmentLocation] | None = None
        room = asyncio.Semaphore(self._depth)
        try:
            while True:
                data = await read(step)
                if not data:
                    break
                size += len(data)
                if size > max_size:
                    raise EntityTooLarge(f"object exceeds the maximum size of {max_size} bytes")
                await run_cpu(len(data), digests.update, data)
                if slots is None:
                    scheme = self.scheme_for(storage_class,
                                             len(data) if len(data) < step else None)
                    slots = self.place(object_id, scheme)
                    if len(data) < step:  # the whole body is one segment: no task for it
                        single = await self._store_segment(object_id, 0, data, slots, scheme)
                        break
                await room.acquire()
                _raise_first_failure(tasks)
                task = asyncio.ensure_future(
                    self._store_segment(object_id, len(tasks), data, slots, scheme))
                task.add_done_callback(lambda _t: room.release())
                tasks.append(task)
                if len(data) < step:
                    break
            stored = [single] if single is not None else await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if slots is None:  # empty body: nothing placed, record the class it would have used
            scheme = self.scheme_for(storage_class, 0)
        elapsed = loop.time() - started
        if elapsed > self._max_write_seconds:
            # Its fragments may already be past the GC grace period's safety margin.
            raise RequestTimeout(f"the upload took {elapsed:.0f} s, more than the "
                                 f"{self._max_write_seconds:.0f} s a PUT may take")
        width = scheme.fragments_per_segment
        missing = sum(width - len(s) for s in stored)
        return WrittenObject(size, digests.md5.hexdigest(),
                             digests.sha256.hexdigest() if digests.sha256 else None,
                             dict(enumerate(stored)), missing, scheme)

    async def _store_segment(
        self, object_id: str, segment: int, data: bytes, slots: list[str | None],
        scheme: ECScheme,
    ) -> dict[int, FragmentLocation]:
        try:
            fragments = await run_cpu(len(data), scheme.encode, data)
        except ErasureError as exc:
            raise InternalError(f"erasure coding failed: {exc}") from exc
        tasks: dict[asyncio.Future[FragmentLocation], int] = {}
        for i, node_id in enumerate(slots):
            if node_id is None:
                self._metrics.fragment_writes.labels(result="skipped").inc()
            else:
                tasks[self._nodes.store(node_id, fragment_id(object_id, segment, i),
                                        fragments[i])] = i
        quorum = self.quorum(scheme)
        stored = await self._await_quorum(tasks, quorum)
        if len(stored) < quorum:
            self._metrics.failed_segment_writes.inc()
            raise InsufficientNodes(
                f"segment {segment}: {len(stored)} of {len(slots)} fragments stored, "
                f"write quorum is {quorum}")
        if len(stored) < len(slots):
            self._metrics.incomplete_segment_writes.inc()
        return stored

    async def _await_quorum(
        self, tasks: dict[asyncio.Future[FragmentLocation], int], quorum: int
    ) -> dict[int, FragmentLocation]:
        """Collect stored fragments until all slots answered, or the quorum became
        impossible, or the quorum was reached and stragglers had ``straggler_wait`` more
        seconds. A straggler left behind is a missing fragment for the reconstructor, so one
        stalled node does not hold every PUT for the full node timeout.

        Each store's outcome is taken by a done-callback as it arrives (not by a loop of
        ``asyncio.wait``, which re-registers on every pending future per answer)."""
        loop = asyncio.get_running_loop()
        stored: dict[int, FragmentLocation] = {}
        pending = set(tasks)
        finished: asyncio.Future[None] = loop.create_future()
        timer: asyncio.TimerHandle | None = None

        def stop_waiting() -> None:
            if not finished.done():
                finished.set_result(None)

        def settle(store: asyncio.Future[FragmentLocation]) -> None:
            nonlocal timer
            if finished.done() or store not in pending:
                return
            pending.discard(store)
            if store.cancelled():
                finished.cancel()  # as the wait loop did: a store cancelled under us
                return
            try:
                location = self._outcome(store)
            except Exception as exc:  # noqa: BLE001 - not a node failure: the write fails
                finished.set_exception(exc)
                return
            if location is not None:
                stored[tasks[store]] = location
            if not pending or len(stored) + len(pending) < quorum:
                stop_waiting()
            elif timer is None and len(stored) >= quorum:
                timer = loop.call_later(self._straggler_wait, stop_waiting)

        for store in tasks:
            store.add_done_callback(settle)
        try:
            if pending:
                await finished
        finally:
            if timer is not None:
                timer.cancel()
            left = list(pending)
            for store in left:
                store.remove_done_callback(settle)
                store.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        if pending:
            self._metrics.fragment_writes.labels(result="straggler").inc(len(pending))
        if stored:  # one increment per segment: each takes the metric's lock
            self._metrics.fragment_writes_ok.inc(len(stored))
        return stored

    def _outcome(self, store: asyncio.Future[FragmentLocation]) -> FragmentLocation | None:
        """A finished store's location, or None after counting (and, for a node that did
        not answer, reporting) its failure."""
        try:
            location = store.result()
        except NodeRequestError as exc:
            self._metrics.fragment_writes.labels(result=exc.kind).inc()
            if exc.node_is_down:
                self._health.mark_down(exc.node_id, str(exc))
            return None
        return location  # counted with the segment's others (_await_quorum)


def _raise_first_failure(tasks: list[asyncio.Task[dict[int, FragmentLocation]]]) -> None:
    """Stop reading the body as soon as any earlier segment has failed."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
