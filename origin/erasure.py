"""Erasure coding of object segments: pyeclib behind a small, typed, pure interface.

An object is cut into segments of ``segment_size`` bytes (the last one shorter); each segment is
encoded into ``ndata`` data fragments and ``nparity`` parity fragments (Swift's vocabulary), any
``ndata`` of which rebuild the segment. This module does no I/O: it turns bytes into fragments
and back, and answers "which segments does this byte range touch". pyeclib exceptions never
leave it; callers see ``ErasureError`` and its subclasses.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from pyeclib.ec_iface import ECDriver, ECDriverError, ECInsufficientFragments


class ErasureError(Exception):
    """The codec refused: bad scheme, corrupt fragment headers, or a length that is off."""


class InsufficientFragmentsError(ErasureError):
    """Fewer than ``ndata`` usable fragments were given for a segment."""


@dataclass(frozen=True)
class SegmentSlice:
    """The part of segment ``index`` a byte range covers: ``[start, stop)`` within it."""

    index: int
    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


REPLICATED = "replicated"


class ECScheme:
    """``ndata`` + ``nparity`` Reed-Solomon (or any pyeclib ``ec_type``) over fixed segments.

    ``ReplicatedScheme`` below is the degenerate case with the same interface: one data
    fragment and ``nparity`` identical copies, so the data path, the fragment map and every
    worker treat both alike.
    """

    def __init__(self, ndata: int, nparity: int, segment_size: int, ec_type: str) -> None:
        if segment_size < 1:
            raise ErasureError(f"segment_size must be positive, got {segment_size}")
        self.ndata = ndata
        self.nparity = nparity
        self.segment_size = segment_size
        self.ec_type = ec_type
        self._driver = self._make_driver()

    def _make_driver(self) -> ECDriver | None:
        try:
            return ECDriver(k=self.ndata, m=self.nparity, ec_type=self.ec_type)
        except ECDriverError as exc:
            raise ErasureError(str(exc)) from None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.ec_type} {self.ndata}+{self.nparity}, "
                f"segment_size={self.segment_size})")

    @property
    def is_replicated(self) -> bool:
        return False

    @property
    def tolerated_losses(self) -> int:
        """Fragments of a segment that may be lost while it stays readable."""
        return self.nparity

    def rebuild(self, fragments: Mapping[int, bytes], wanted: list[int],
                segment_length: int) -> dict[int, bytes]:
        """Fragments ``wanted`` of a segment, recomputed from any ``ndata`` others (decode,
        then encode again: the codec is deterministic, and the decoded length is checked
        against the metadata on the way)."""
        all_fragments = self.encode(self.decode(fragments, segment_length))
        for index, payload in fragments.items():
            if all_fragments[index] != payload:
                raise ErasureError(f"fragment {index} differs from its re-encoding")
        return {i: all_fragments[i] for i in wanted}

    @property
    def fragments_per_segment(self) -> int:
        return self.ndata + self.nparity

    @property
    def data_indexes(self) -> range:
        """Fragment indexes that hold the segment's bytes verbatim (cheapest to decode)."""
        return range(self.ndata)

    # -- codec ------------------------------------------------------------------------------

    def encode(self, segment: bytes) -> list[bytes]:
        """``ndata + nparity`` fragments for one segment (fragment ``i`` is list item ``i``)."""
        if len(segment) > self.segment_size:
            raise ErasureError(f"segment of {len(segment)} bytes exceeds segment_size "
                               f"{self.segment_size}")
        assert self._driver is not None
        try:
            return list(self._driver.encode(segment))
        except ECDriverError as exc:
            raise ErasureError(f"encode failed: {exc}") from None

    def decode(self, fragments: Mapping[int, bytes], expected_length: int) -> bytes:
        """Rebuild a segment from any ``ndata`` fragments (index → bytes).

        ``expected_length`` comes from the metadata (not from the fragments): a decoded length
        that differs means something upstream is wrong, and we would rather fail than serve it.
        """
        if len(fragments) < self.ndata:
            raise InsufficientFragmentsError(
                f"{len(fragments)} fragments given, {self.ndata} needed")
        chosen = [fragments[i] for i in sorted(fragments)[: self.ndata]]
        assert self._driver is not None
        try:
            data = self._driver.decode(chosen)
        except ECInsufficientFragments as exc:
            raise InsufficientFragmentsError(str(exc)) from None
        except ECDriverError as exc:
            raise ErasureError(f"decode failed: {exc}") from None
        if len(data) != expected_length:
            raise ErasureError(f"decoded {len(data)} bytes, metadata says {expected_length}")
        return bytes(data)

    def fragment_length(self, segment_length: int) -> int:
        """Bytes of each fragment of a segment of ``segment_length`` bytes (header included)."""
        if segment_length == 0:
            return len(self.encode(b"")[0])
        assert self._driver is not None
        info = self._driver.get_segment_info(segment_length, self.segment_size)
        return int(info["fragment_size"])

    # -- segment arithmetic -----------------------------------------------------------------

    def segment_count(self, size: int) -> int:
        """Segments of an object of ``size`` bytes (an empty object has none)."""
        return -(-size // self.segment_size)

    def segment_length(self, index: int, size: int) -> int:
        """Bytes in segment ``index`` of an object of ``size`` bytes."""
        if not 0 <= index < self.segment_count(size):
            raise ErasureError(f"segment {index} outside an object of {size} bytes")
        return min(self.segment_size, size - index * self.segment_size)

    def segment_slices(self, size: int, first: int, last: int) -> list[SegmentSlice]:
        """The segments the inclusive byte range ``[first, last]`` touches, with the part of
        each that is needed, so a Range read decodes only those segments."""
        if not 0 <= first <= last < size:
            raise ErasureError(f"byte range {first}-{last} outside an object of {size} bytes")
        step = self.segment_size
        slices = []
        for index in range(first // step, last // step + 1):
            base = index * step
            start = max(first, base) - base
            stop = min(last + 1, base + step) - base
            slices.append(SegmentSlice(index, start, stop))
        return slices


class ReplicatedScheme(ECScheme):
    """``1 + copies_extra`` identical copies of each segment (``ec_type == "replicated"``).

    Fragment ``i`` is the segment's bytes verbatim (no codec header), so a tiny object costs
    ``copies × (bytes + record header)`` instead of ``(k+m) × (bytes/k + 80-byte pyeclib
    header + record header)``; with ``nparity = m`` it survives the same ``m`` losses as
    ``k+m`` erasure coding.
    """

    def __init__(self, ndata: int, nparity: int, segment_size: int,
                 ec_type: str = REPLICATED) -> None:
        if ndata != 1 or nparity < 1:
            raise ErasureError(f"replication stores 1 data copy + n >= 1 extra copies, got "
                               f"{ndata}+{nparity}")
        super().__init__(ndata, nparity, segment_size, REPLICATED)

    def _make_driver(self) -> None:
        return None

    @property
    def is_replicated(self) -> bool:
        return True

    def encode(self, segment: bytes) -> list[bytes]:
        if len(segment) > self.segment_size:
            raise ErasureError(f"segment of {len(segment)} bytes exceeds segment_size "
                               f"{self.segment_size}")
        return [bytes(segment)] * self.fragments_per_segment

    def decode(self, fragments: Mapping[int, bytes], expected_length: int) -> bytes:
        if not fragments:
            raise InsufficientFragmentsError("no copy given")
        data = fragments[min(fragments)]
        if len(data) != expected_length:
            raise ErasureError(f"copy holds {len(data)} bytes, metadata says {expected_length}")
        return bytes(data)

    def fragment_length(self, segment_length: int) -> int:
        return segment_length


@functools.lru_cache(maxsize=32)
def cached_scheme(ndata: int, nparity: int, segment_size: int, ec_type: str) -> ECScheme:
    """One scheme object per distinct scheme: objects record their own scheme, and building a
    pyeclib driver per request would be wasted work. ``ec_type == "replicated"`` gives a
    ``ReplicatedScheme``."""
    if ec_type == REPLICATED:
        return ReplicatedScheme(ndata, nparity, segment_size)
    return ECScheme(ndata, nparity, segment_size, ec_type)
