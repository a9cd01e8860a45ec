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

        def launch() -> bool:
            if not candidates:
                return False
            index = candidates.popleft()
            fid = fragment_id(object_id, segment, index)
            running[self._nodes.fetch(locations[index], fid)] = index
            return True

        try:
            for _ in range(scheme.ndata):
                launch()
            while running and len(got) < scheme.ndata:
                done, _pending = await asyncio.wait(
                    running, timeout=self._hedge_after, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    launch()  # hedge against a slow node; no-op when out of candidates
                    continue
                for task in done:
                    index = running.pop(task)
                    try:
                        got[index] = task.result()
                        self._metrics.fragment_reads_ok.inc()
                    except NodeRequestError as exc:
                        self._note_failure(exc)
                        if exc.kind in ("corrupt", "not-found") and self._on_bad_fragment:
                            # Counted as missing for this read, and queued for the
                            # reconstructor so the next reader finds it healed.
                            self._on_bad_fragment(object_id, segment, index, exc.kind)
                        failures.append(f"#{index} {exc}")
                        if len(got) + len(running) < scheme.ndata:
                            launch()
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
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
