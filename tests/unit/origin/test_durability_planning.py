"""Pure durability decisions: GC/compaction plans, repair plans, fsck classification, repair
targets, storage classes, replication scheme, the rate limiter."""

from __future__ import annotations

import asyncio

import pytest

from origin.erasure import ReplicatedScheme, cached_scheme
from origin.placement import Candidate, choose_repair_targets
from origin.storage_class import StorageClassError, default_policy, parse_class_spec
from origin.workers.base import RateLimiter
from origin.workers.planning import (
    RecordFact,
    Redundancy,
    VolumeAction,
    VolumeFacts,
    classify,
    fsck_exit_code,
    may_hold_garbage,
    plan_repair_reads,
    plan_segment_repair,
    plan_volume,
    rows_without_their_record,
)

RECS = [RecordFact(0, "a/0/0", 100), RecordFact(164, "b/0/0", 100),
        RecordFact(328, "c/0/0", 100)]


def _facts(age: float = 100.0, active: bool = False) -> VolumeFacts:
    return VolumeFacts("n1", 1, 492, active, age)


def test_nothing_is_garbage_within_the_grace_period() -> None:
    assert plan_volume(_facts(age=5), RECS, set(), grace=10, dead_ratio=0.5).action is \
        VolumeAction.TOO_YOUNG


def test_only_a_volume_past_the_grace_period_may_hold_garbage() -> None:
    """GC and compactor walk and lock only these volumes (the age is since the last append,
    so exactly ``grace`` is still too young)."""
    assert [may_hold_garbage(_facts(age=age), grace=10) for age in (5, 10, 10.5)] == \
        [False, False, True]


def test_an_old_volume_with_no_reference_is_deleted() -> None:
    plan = plan_volume(_facts(), RECS, set(), grace=10, dead_ratio=0.5)
    assert plan.action is VolumeAction.DELETE and plan.dead_bytes == 3 * (24 + 5 + 100)


def test_a_fully_referenced_volume_is_clean() -> None:
    plan = plan_volume(_facts(), RECS, {0, 164, 328}, grace=10, dead_ratio=0.5)
    assert plan.action is VolumeAction.CLEAN and plan.dead_bytes == 0


def test_dead_space_past_the_threshold_compacts_only_the_live_records() -> None:
    plan = plan_volume(_facts(), RECS, {164}, grace=10, dead_ratio=0.5)
    assert plan.action is VolumeAction.COMPACT
    assert [r.offset for r in plan.live] == [164]
    assert plan_volume(_facts(), RECS, {0, 164}, grace=10, dead_ratio=0.5).action is \
        VolumeAction.KEEP


def test_the_active_volume_is_sealed_before_it_is_reclaimed() -> None:
    assert plan_volume(_facts(active=True), RECS, {0}, grace=10, dead_ratio=0.5).action is \
        VolumeAction.SEAL


def test_a_referenced_unreadable_record_blocks_compaction() -> None:
    recs = [RecordFact(0, "", 200, "corrupt-record"), RecordFact(200, "b/0/0", 10)]
    assert plan_volume(_facts(), recs, {100}, grace=10, dead_ratio=0.1).action is \
        VolumeAction.BLOCKED


def test_segment_repair_rebuilds_bad_and_absent_but_not_unreachable() -> None:
    plan = plan_segment_repair(9, recorded={0, 1, 2, 3, 4, 5, 6, 7}, bad={2}, unreachable={3})
    assert plan.wanted == (2, 8)
    assert plan.good == frozenset({0, 1, 4, 5, 6, 7})
    assert plan.possible(6)
    assert not plan_segment_repair(9, set(range(9)), set(), set()).wanted


@pytest.mark.parametrize(("weakest", "state"), [(9, Redundancy.FULL), (7, Redundancy.DEGRADED),
                                                (6, Redundancy.DEGRADED), (5, Redundancy.LOST)])
def test_fsck_classification(weakest: int, state: Redundancy) -> None:
    assert classify(6, 9, 3, weakest) is state
    assert classify(6, 9, 0, 0) is Redundancy.FULL  # empty objects have no segment


def test_fsck_exit_code() -> None:
    assert fsck_exit_code({Redundancy.FULL: 10}, 0) == 0
    assert fsck_exit_code({Redundancy.DEGRADED: 2}, 5) == 0
    assert fsck_exit_code({Redundancy.DEGRADED: 2}, 1) == 1
    assert fsck_exit_code({Redundancy.LOST: 1, Redundancy.FULL: 9}, 100) == 2


NODES = [Candidate(f"node-{i}", f"zone-{'abc'[i % 3]}") for i in range(9)]


def test_repair_targets_avoid_holders_and_even_out_zones() -> None:
    holders = {i: f"node-{i}" for i in range(8) if i != 3}  # node-3 (zone-a) lost slot 3
    targets = choose_repair_targets("obj/0", holders, [3, 8], NODES)
    assert set(targets) == {3, 8}
    assert not set(targets.values()) & set(holders.values())
    zones = [n.zone for n in NODES if n.node_id in targets.values()]
    assert sorted(zones) == ["zone-a", "zone-c"]  # the zones short of fragments


def test_repair_targets_stop_when_no_node_is_left() -> None:
    holders = {i: f"node-{i}" for i in range(8)}
    assert choose_repair_targets("k", holders, [8], NODES[:8]) == {}


def test_storage_classes_and_the_small_object_rule() -> None:
    policy = default_policy(6, 3, "isa_l_rs_cauchy", {"cold": "ec:10+4"})
    standard = policy.get(None)
    assert standard.describe() == "ec:6+3"
    assert policy.get("replicated").describe() == "replicated:4"
    assert policy.get("COLD").width == 14
    tiny = policy.for_object(standard, 100)
    assert tiny.is_replicated and tiny.nparity == 3  # same losses tolerated
    assert policy.for_object(standard, 1024) == standard
    assert policy.for_object(standard, None) == standard
    assert policy.name_of("replicated", 1, 3) == "REPLICATED"
    with pytest.raises(StorageClassError):
        policy.get("GLACIER")
    with pytest.raises(StorageClassError):
        parse_class_spec("X", "replicated:1", "isa_l_rs_cauchy")
    with pytest.raises(StorageClassError):
        parse_class_spec("X", "raid:5", "isa_l_rs_cauchy")


def test_replicated_scheme_round_trip_and_rebuild() -> None:
    scheme = cached_scheme(1, 3, 4096, "replicated")
    assert isinstance(scheme, ReplicatedScheme)
    copies = scheme.encode(b"hello")
    assert copies == [b"hello"] * 4
    assert scheme.decode({3: b"hello"}, 5) == b"hello"
    assert scheme.rebuild({2: b"hello"}, [0, 1], 5) == {0: b"hello", 1: b"hello"}


def test_ec_rebuild_recomputes_lost_fragments_exactly() -> None:
    scheme = cached_scheme(6, 3, 4096, "isa_l_rs_cauchy")
    data = bytes(range(256)) * 10
    fragments = scheme.encode(data)
    survivors = {i: fragments[i] for i in (1, 3, 5, 6, 7, 8)}
    assert scheme.rebuild(survivors, [0, 2, 4], len(data)) == \
        {0: fragments[0], 2: fragments[2], 4: fragments[4]}


def test_rate_limiter_sleeps_for_the_excess() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def run() -> None:
        limiter = RateLimiter(1000, clock=lambda: now[0], sleep=sleep)
        await limiter.acquire(500)   # within the first second's burst
        await limiter.acquire(1500)  # 1000 over: one second
        await RateLimiter(0).acquire(10**9)  # unlimited

    asyncio.run(run())
    assert slept == [pytest.approx(1.0)]


def test_repair_reads_check_reports_then_prefer_data_fragments_on_up_nodes() -> None:
    recorded = {0: "a", 1: "b", 2: "c", 3: "d", 4: "e", 5: "f"}
    plan = plan_repair_reads(4, recorded, suspects={2, 7}, lost_nodes={"f"},
                             down_nodes={"a"})
    assert plan.on_lost == frozenset({5})
    assert plan.verify == (2,)  # 7 has no row: nothing to verify, it is simply missing
    assert plan.order == (1, 3, 4, 0)  # data first, the down node's fragment last


def test_repair_reads_a_reported_fragment_on_a_lost_node_is_not_read() -> None:
    plan = plan_repair_reads(2, {0: "a", 1: "b", 2: "c"}, suspects={0}, lost_nodes={"a"},
                             down_nodes=())
    assert (plan.on_lost, plan.verify, plan.order) == (frozenset({0}), (), (1, 2))


# -- scrub: rows matched against the records a walk found -------------------------------------

HEADERS = {0: "a/0/0", 164: "b/0/0", 328: "c/0/0"}


def test_rows_on_their_own_records_are_found() -> None:
    rows = [(0, "a/0/0"), (164, "b/0/0"), (328, "c/0/0")]
    assert rows_without_their_record(rows, HEADERS, [], range(0, 492)) == []


def test_a_row_on_someone_elses_record_is_lost() -> None:
    """A wiped disk's volume 1 again: the old row's offset now starts another record."""
    rows = [(164, "old/3/2"), (0, "a/0/0")]
    assert rows_without_their_record(rows, HEADERS, [], range(0, 492)) == ["old/3/2"]


def test_a_row_pointing_mid_record_is_lost() -> None:
    assert rows_without_their_record([(200, "old/0/1")], HEADERS, [],
                                     range(0, 492)) == ["old/0/1"]


def test_rows_past_the_walk_are_not_judged() -> None:
    """Appended after the listing (a PUT or repair committing meanwhile), or before where a
    resumed walk started: the walk could not have seen their records."""
    rows = [(492, "new/0/0"), (600, "new/0/1"), (0, "x/0/0")]
    assert rows_without_their_record(rows, HEADERS, [], range(164, 492)) == []


def test_rows_inside_an_unreadable_span_are_left_to_the_corruption_report() -> None:
    rows = [(164, "b/0/0"), (170, "other/0/0")]
    assert rows_without_their_record(rows, {0: "a/0/0"}, [range(164, 328)],
                                     range(0, 492)) == []
