"""The loop every background worker shares (``origin.workers.base.run_forever``)."""

from __future__ import annotations

from origin.lifecycle.worker import LifecycleStats
from origin.workers.base import run_forever


class FlakyWorker:
    """Fails its first pass, then counts passes."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    async def run_once(self) -> LifecycleStats:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("first pass fails")
        return LifecycleStats(buckets=self.calls)


async def test_a_failing_pass_does_not_end_the_loop() -> None:
    worker = FlakyWorker()
    await run_forever(worker, 0.0, max_passes=3)
    assert worker.calls == 3
