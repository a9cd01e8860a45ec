"""The origin's memo of committed ``volumes`` rows (``metadata.volume_memo``): when a commit
may skip the upsert, and when the memo forgets."""

from __future__ import annotations

from origin.metadata.volume_memo import KnownVolumes

A1, B1, A2 = ("a", 1), ("b", 1), ("a", 2)


def _commit(memo: KnownVolumes, pairs: list[tuple[str, int]], now: float) -> bool:
    needed = memo.needs_upsert(pairs, now)
    if needed:
        memo.committed(pairs)
    return needed


def test_known_pairs_skip_the_upsert_and_a_new_pair_needs_it() -> None:
    memo = KnownVolumes(ttl=60)
    assert _commit(memo, [A1, B1], 0)
    assert not _commit(memo, [A1, B1], 1)
    assert _commit(memo, [A2, B1], 2)
    assert not _commit(memo, [A2, B1], 3)


def test_a_volume_below_the_nodes_highest_is_taken_as_a_renumbering() -> None:
    """A wiped node starts again at volume 1: the memo forgets that node and upserts."""
    memo = KnownVolumes(ttl=60)
    _commit(memo, [A1, B1], 0)
    _commit(memo, [A2, B1], 1)
    assert _commit(memo, [A1, B1], 2)  # a is back at 1
    assert A2 not in memo and A1 in memo and B1 in memo
    assert not _commit(memo, [A1, B1], 3)


def test_a_late_commit_into_the_previous_volume_costs_an_upsert_or_two() -> None:
    memo = KnownVolumes(ttl=60)
    _commit(memo, [A1], 0)
    _commit(memo, [A2], 1)
    assert _commit(memo, [A1], 2)  # a PUT that wrote into volume 1 before a switched to 2
    assert _commit(memo, [A2], 3)
    assert not _commit(memo, [A2], 4)


def test_everything_is_forgotten_after_the_ttl() -> None:
    memo = KnownVolumes(ttl=60)
    _commit(memo, [A1, B1], 0)
    assert not _commit(memo, [A1, B1], 59.9)
    assert _commit(memo, [A1, B1], 60)
    assert not _commit(memo, [A1, B1], 61)
