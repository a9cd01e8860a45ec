"""The read half of the data path: fetch k fragments per segment, decode, stream bytes out.

A fragment that comes back corrupt (checksum mismatch, wrong record) or not found counts as
missing for this read and is reported through ``on_bad_fragment`` (the origin queues it for
the reconstructor).

For each segment the reader asks for ``ndata`` fragments in parallel, data fragments first
(decoding from them is a plain copy), and on any failure (node down, timeout, checksum mismatch,
missing record) asks for the next candidate (parity) instead. A node that is slow to answer
gets a hedge: after ``hedge_after`` seconds one more candidate is requested, and whichever k
arrive first are used. Only the segments a byte range touches are read, ``pipeline_depth`` of
them at a time so fetching the next segment overlaps sending the current one.

Either a segment decodes to exactly the length the metadata says, or the reader raises
``InsufficientFragments`` / ``InternalError``; it never yields bytes it could not verify.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable

from origin.cpu import run_cpu
from origin.erasure import ECScheme, ErasureError, InsufficientFragmentsError, SegmentSlice
from origin.errors import InsufficientFragments, InternalError
from origin.layout import FragmentLocation, FragmentMap, fragment_id
from origin.metrics import OriginMetrics
from origin.nodeclient import NodeClient, NodeRequestError
from origin.nodehealth import NodeHealth

# (first segment, last segment) -> fragment map of those segments
MapLoader = Callable[[int, int], Awaitable[FragmentMap]]

# (object_id, segment, fragment index, failure kind): a fragment found corrupt or missing.
BadFragmentReporter = Callable[[str, int, int, str], None]

# Segments whose fragment map is loaded per metadata query during a long read.
MAP_WINDOW = 128


class ECReader:
    def __init__(
        self,
        nodes: NodeClient,
        health: NodeHealth,
        *,
        pipeline_depth: int,
        metrics: OriginMetrics,
        hedge_after: float = 1.0,
        on_bad_fragment: BadFragmentReporter | None = None,
    ) -> None:
        self._on_bad_fragment = on_bad_fragment
        self._nodes = nodes
        self._health = health
        self._depth = pipeline_depth
        self._metrics = metrics
        self._hedge_after = hedge_after

    def candidate_order(
        self, scheme: ECScheme, locations: dict[int, FragmentLocation]
    ) -> list[int]:
        """Fragment indexes in the order to try: data before parity, nodes believed down
        last (still tried: the belief may be stale and the read would fail anyway)."""
        if self._health.all_up:  # data indexes are the low ones: plain order is the order
            return sorted(locations)
        return sorted(locations, key=lambda i: (not self._health.is_up(locations[i].node_id),
                                                i >= scheme.ndata, i))

    async def read_segment(
        self,
        object_id: str,
        scheme: ECScheme,
        segment: int,
        length: int,
        locations: dict[int, FragmentLocation],
    ) -> bytes:
        """The ``length`` bytes of one segment, decoded from the first k good fragments."""
        candidates = deque(self.candidate_order(scheme, locations))
        running: dict[asyncio.Future[bytes], int] = {}
        got: dict[int, bytes] = {}
        failures: list[str] = []
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        hedge: asyncio.TimerHandle | None = None

        def launch() -> None:
            if candidates:
                index = candidates.popleft()
                fetch = self._nodes.fetch(locations[index],
                                          fragment_id(object_id, segment, index))
                running[fetch] = index
                fetch.add_done_callback(settle)

        last_answer = loop.time()

        def hedge_check() -> None:
            # One more candidate after ``hedge_after`` seconds without any answer, as often
            # as that happens (no-op once out of candidates). One timer, moved on lazily.
            nonlocal hedge, last_answer
            due = last_answer + self._hedge_after
            if loop.time() < due:
                hedge = loop.call_at(due, hedge_check)
                return
            launch()
            last_answer = loop.time()
            hedge = loop.call_at(last_answer + self._hedge_after, hedge_check)

        def settle(fetch: asyncio.Future[bytes]) -> None:
            nonlocal last_answer
            index = running.pop(fetch, None)
            if index is None or finished.done():
                return
            try:
                got[index] = fetch.result()
            except NodeRequestError as exc:
                self._note_failure(exc)
                if exc.kind in ("corrupt", "not-found") and self._on_bad_fragment:
                    # Counted as missing for this read, and queued for the reconstructor
                    # so the next reader finds it healed.
                    self._on_bad_fragment(object_id, segment, index, exc.kind)
                failures.append(f"#{index} {exc}")
                if len(got) + len(running) < scheme.ndata:
                    launch()
            except BaseException as exc:  # noqa: BLE001 - cancelled or a bug: the read fails
                if isinstance(exc, asyncio.CancelledError):
                    finished.cancel()
                else:
                    finished.set_exception(exc)
                return
            if len(got) >= scheme.ndata or not running:
                finished.set_result(None)
            else:
                last_answer = loop.time()

        try:
            for _ in range(scheme.ndata):
                launch()
            if running:
                hedge = loop.call_at(last_answer + self._hedge_after, hedge_check)
                await finished
        finally:
            if hedge is not None:
                hedge.cancel()
            if running:  # hedged or abandoned reads (a gather of nothing still costs a future)
                left = list(running)
                running.clear()
                for fetch in left:
                    fetch.cancel()
                await asyncio.gather(*left, return_exceptions=True)
        # one increment per segment: each takes the metric's lock
        self._metrics.fragment_reads_ok.inc(len(got))
        if len(got) < scheme.ndata:
            raise InsufficientFragments(
                f"segment {segment}: {len(got)} of {scheme.ndata} needed fragments readable "
                f"({len(locations)} recorded); " + "; ".join(failures[:4]))
        if any(i >= scheme.ndata for i in got):
            self._metrics.degraded_segments.inc()
        try:
            return await run_cpu(length, scheme.decode, got, length)
        except InsufficientFragmentsError as exc:
            raise InsufficientFragments(f"segment {segment}: {exc}") from exc
        except ErasureError as exc:
            raise InternalError(f"segment {segment} could not be decoded: {exc}") from exc

    def _note_failure(self, exc: NodeRequestError) -> None:
        self._metrics.fragment_reads.labels(result=exc.kind).inc()
        if exc.node_is_down:
            self._health.mark_down(exc.node_id, str(exc))

    async def stream(
        self,
        object_id: str,
        scheme: ECScheme,
        size: int,
        slices: list[SegmentSlice],
        load_map: MapLoader,
    ) -> AsyncGenerator[bytes, None]:
        """Yield the bytes of ``slices`` in order, reading up to ``pipeline_depth`` segments
        ahead. Closing the generator early cancels the read-ahead."""
        if not slices:
            return
        last = slices[-1].index
        maps: FragmentMap = {}
        pending: deque[asyncio.Task[bytes]] = deque()
        upcoming = iter(slices)

        async def launch_next() -> None:
            piece = next(upcoming, None)
            if piece is None:
                return
            if piece.index not in maps:
                maps.update(await load_map(piece.index, min(piece.index + MAP_WINDOW - 1, last)))
            locations = maps.pop(piece.index)
            pending.append(asyncio.ensure_future(
                self._read_slice(object_id, scheme, size, piece, locations)))

        try:
            for _ in range(self._depth):
                await launch_next()
            while pending:
                chunk = await pending.popleft()
                await launch_next()
                yield chunk
        finally:
            for task in pending:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*pending, return_exceptions=True)

    async def _read_slice(
        self,
        object_id: str,
        scheme: ECScheme,
        size: int,
        piece: SegmentSlice,
        locations: dict[int, FragmentLocation],
    ) -> bytes:
        length = scheme.segment_length(piece.index, size)
        data = await self.read_segment(object_id, scheme, piece.index, length, locations)
        if piece.start == 0 and piece.stop == length:
            return data
        return data[piece.start: piece.stop]
