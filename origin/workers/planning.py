"""The decisions of the background workers, as pure functions (no I/O, no clock: ages and
"now" come in as numbers), so every rule is unit-tested on plain data."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

RECORD_OVERHEAD = 24  # bytes of record header before the fragment id (storagenode.record)


@dataclass(frozen=True)
class VolumeFacts:
    """A node's volume as ``GET /volumes`` describes it; ``age`` in seconds (node clock)."""

    node_id: str
    volume: int
    size: int
    active: bool
    age: float


@dataclass(frozen=True)
class RecordFact:
    """One record found by walking a volume (``error`` set for unreadable spans)."""

    offset: int
    fragment_id: str
    length: int
    error: str | None = None

    @property
    def size(self) -> int:
        """Bytes the record occupies (a corrupt span: the bytes skipped)."""
        if self.error == "corrupt-record":
            return self.length
        return RECORD_OVERHEAD + len(self.fragment_id.encode()) + self.length


class VolumeAction(Enum):
    TOO_YOUNG = "too-young"    # within the grace period: nothing in it may be called garbage
    KEEP = "keep"              # some dead space, below the compaction threshold
    CLEAN = "clean"            # no dead record at all
    SEAL = "seal"              # the active volume holds old garbage: seal, then compact later
    DELETE = "delete"          # every record is dead: remove the file
    COMPACT = "compact"        # dead space past the threshold: copy the live records, delete
    BLOCKED = "blocked"        # a referenced record is unreadable: repair must move it first
    GONE = "gone"              # deleted since it was listed (another worker): nothing to do


def may_hold_garbage(facts: VolumeFacts, *, grace: float) -> bool:
    """Whether any record of the volume may be called garbage yet: the volume's age is the
    time since its last append, so within ``grace`` every record in it is too young (a PUT
    that wrote it may still commit). GC and compactor neither walk nor lock such a volume."""
    return facts.age > grace


@dataclass(frozen=True)
class VolumePlan:
    action: VolumeAction
    live: list[RecordFact] = field(default_factory=list)
    dead_bytes: int = 0
    live_bytes: int = 0


def plan_volume(
    facts: VolumeFacts,
    records: Iterable[RecordFact],
    referenced: Collection[int],
    *,
    grace: float,
    dead_ratio: float,
) -> VolumePlan:
    """What to do with one volume, given its records and the offsets some metadata row
    references. A record is dead when no row references it and the whole volume is older than
    ``grace`` (so is every record in it: the volume's age is the time since its last append).
    """
    if not may_hold_garbage(facts, grace=grace):
        return VolumePlan(VolumeAction.TOO_YOUNG)
    live: list[RecordFact] = []
    dead_bytes = 0
    blocked = False
    for rec in records:
        if rec.error == "corrupt-record":
            if any(rec.offset <= off < rec.offset + rec.length for off in referenced):
                blocked = True
            dead_bytes += rec.size
        elif rec.offset in referenced:
            if rec.error is not None:
                blocked = True
            live.append(rec)
        else:
            dead_bytes += rec.size
    live_bytes = sum(r.size for r in live)
    if dead_bytes == 0:
        return VolumePlan(VolumeAction.CLEAN, live, 0, live_bytes)
    if facts.active:
        return VolumePlan(VolumeAction.SEAL, live, dead_bytes, live_bytes)
    if blocked:
        return VolumePlan(VolumeAction.BLOCKED, live, dead_bytes, live_bytes)
    if not live:
        return VolumePlan(VolumeAction.DELETE, [], dead_bytes, 0)
    total = dead_bytes + live_bytes
    if total and dead_bytes >= dead_ratio * total:
        return VolumePlan(VolumeAction.COMPACT, live, dead_bytes, live_bytes)
    return VolumePlan(VolumeAction.KEEP, live, dead_bytes, live_bytes)


# -- scrub -------------------------------------------------------------------------------------


def rows_without_their_record(rows: Iterable[tuple[int, str]], records: Mapping[int, str],
                              unreadable: Iterable[range], walked: range) -> list[str]:
    """Fragment ids of the rows ``(offset, fragment id)`` of one volume that point inside
    ``walked`` at no record carrying their fragment id: the node lost that fragment.

    ``records``: offset → fragment id of every readable record header the walk met;
    ``unreadable``: the spans it could not parse (their rows are reported as corrupt, not
    here); ``walked``: from where the walk started to the volume's size in the listing taken
    before it. A record appended after that listing lies past it, so a row committed since
    (a PUT, a repair, a compaction moving records into the active volume) is never judged on
    a walk that could not have seen its record.

    Why sizes alone do not catch this: a node of a build before disk identities
    (``storagenode/identity.py``) whose disk was wiped or replaced started numbering volumes at
    1 again, so a row of the old disk can point inside a new volume of the same
    number, at someone else's record or mid-record, and look present by volume and size."""
    spans = list(unreadable)
    return [fid for offset, fid in rows
            if offset in walked and records.get(offset) != fid
            and not any(offset in span for span in spans)]


# -- repair ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentRepair:
    """``good``: indexes read back intact; ``wanted``: indexes to rebuild."""

    good: frozenset[int]
    wanted: tuple[int, ...]

    def possible(self, ndata: int) -> bool:
        return len(self.good) >= ndata and bool(self.wanted)


def plan_segment_repair(width: int, recorded: Collection[int], bad: Collection[int],
                        unreachable: Collection[int]) -> SegmentRepair:
    """Fragments ``0..width-1`` of a segment: ``recorded`` have a row, ``bad`` were read back
    corrupt/missing or sit on a lost node, ``unreachable`` are on nodes down right now (not
    rebuilt: the node may come back, and the fragment is intact there)."""
    good = frozenset(i for i in recorded if i not in bad and i not in unreachable)
    wanted = tuple(i for i in range(width) if i not in recorded or i in bad)
    return SegmentRepair(good, wanted)


@dataclass(frozen=True)
class RepairReads:
    """Which fragments of a segment the reconstructor reads.

    ``on_lost``: recorded on a lost node (bad without asking). ``verify``: reported bad
    (reader, scrubber) — read to confirm, since a report may be stale (compaction moved the
    record, the node came back); a confirmed one is rebuilt, a good one counts towards k.
    ``order``: the others, to be read until k are good: data fragments first (decoding from
    them is a copy), nodes believed down last, as the read path does."""

    on_lost: frozenset[int]
    verify: tuple[int, ...]
    order: tuple[int, ...]


def plan_repair_reads(ndata: int, recorded: Mapping[int, str], suspects: Collection[int],
                      lost_nodes: Collection[str], down_nodes: Collection[str]) -> RepairReads:
    """``recorded`` maps fragment index → node id."""
    on_lost = frozenset(i for i, node in recorded.items() if node in lost_nodes)
    verify = tuple(sorted(i for i in suspects if i in recorded and i not in on_lost))
    rest = [i for i in recorded if i not in on_lost and i not in verify]
    order = tuple(sorted(rest, key=lambda i: (recorded[i] in down_nodes, i >= ndata, i)))
    return RepairReads(on_lost, verify, order)


# -- fsck --------------------------------------------------------------------------------------


class Redundancy(Enum):
    FULL = "full"          # every segment has all k+m fragments on usable nodes
    DEGRADED = "degraded"  # some segment lacks fragments but still has >= k
    LOST = "lost"          # some segment has fewer than k: unreadable


def classify(ndata: int, width: int, segments: int, weakest: int) -> Redundancy:
    """Redundancy of an object whose weakest segment has ``weakest`` usable fragments."""
    if segments == 0 or weakest >= width:
        return Redundancy.FULL
    if weakest >= ndata:
        return Redundancy.DEGRADED
    return Redundancy.LOST


def fsck_exit_code(counts: Mapping[Redundancy, int], max_degraded: int) -> int:
    """0 clean, 1 more than ``max_degraded`` degraded objects, 2 anything lost."""
    if counts.get(Redundancy.LOST, 0):
        return 2
    if counts.get(Redundancy.DEGRADED, 0) > max_degraded:
        return 1
    return 0
