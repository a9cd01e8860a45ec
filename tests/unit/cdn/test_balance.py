"""The placing rule and the shared ledger of ``cdn.balance`` (one process; the workers'
side is ``tests/integration/cache/test_worker_balance.py``)."""

from __future__ import annotations

import pytest

from cdn.balance import GONE, Ledger, destination


@pytest.mark.parametrize(("loads", "me", "slack", "expected"), [
    ([0, 0], 0, 1, 0),  # level: stay
    ([1, 0], 0, 1, 0),  # one above, within the slack: stay
    ([2, 0], 0, 1, 1),  # two above: move to the least loaded
    ([2, 0], 0, 0, 1),
    ([1, 0], 0, 0, 1),  # no slack: only the least loaded keeps its arrivals
    ([0, 5], 1, 1, 0),
    ([3, 1, 1, 9], 3, 1, 1),  # a tie goes to the lower index
    ([3, 1, 1, 2], 3, 1, 3),
    ([4, GONE], 0, 1, 0),  # an exited worker is never the least loaded
    ([7], 0, 0, 0),
])
def test_destination(loads: list[int], me: int, slack: int, expected: int) -> None:
    assert destination(loads, me, slack) == expected


def test_ledger_counts_where_it_places_and_keeps_the_spread_within_the_slack() -> None:
    ledger = Ledger(3)
    placed = [ledger.place(0, 1) for _ in range(30)]  # every arrival at worker 0
    assert ledger.loads() == [11, 10, 9]  # within the slack of 1 at every step
    assert placed.count(0) == 11
    ledger.release(1, 4)
    assert ledger.loads() == [11, 6, 9]
    assert ledger.place(2, 1) == 1
    ledger.release(0, 50)  # a late sweep never counts below zero
    assert ledger.loads()[0] == 0


def test_a_gone_worker_keeps_its_mark() -> None:
    ledger = Ledger(2)
    ledger.gone(1)
    ledger.release(1)
    ledger.add(1)
    assert ledger.loads()[1] == GONE
    assert {ledger.place(0, 0) for _ in range(5)} == {0}


def test_a_held_lock_means_serve_here_uncounted() -> None:
    ledger = Ledger(2)
    lock = ledger._loads.get_lock()  # as a worker that died holding it leaves it
    lock.acquire()
    try:
        assert ledger.place(0, 0) is None
        ledger.add(0)  # gives up too, rather than wait
    finally:
        lock.release()
    assert ledger.loads() == [0, 0]
