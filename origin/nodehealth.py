"""Which storage nodes the origin currently believes are up.

Two signals feed it: a background probe of every node's ``/_health`` every few seconds, and the
data path reporting a node it could not reach (so the very next PUT already places around it,
without waiting for the probe). A node is believed up again only when a probe succeeds. All
nodes start "up" so the origin serves at once; the first failed request or probe corrects that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger("cdn.origin.health")


class NodeHealth:
    """Up/down belief per node id, plus the probe loop that refreshes it."""

    def __init__(self, node_ids: Iterable[str]) -> None:
        self._down: set[str] = set()
        self._all = sorted(node_ids)
        self._task: asyncio.Task[None] | None = None

    def is_up(self, node_id: str) -> bool:
        return node_id not in self._down

    @property
    def all_up(self) -> bool:
        """No node is believed down (the common case, which readers order for cheaply)."""
        return not self._down

    @property
    def node_ids(self) -> list[str]:
        return list(self._all)

    def add(self, node_id: str) -> None:
        """A node that registered after start-up: eligible at once (believed up)."""
        if node_id not in self._all:
            log.info("storage node %s joined", node_id)
            self._all = sorted([*self._all, node_id])

    def remove(self, node_id: str) -> None:
        """A node declared lost for good: never placed on again."""
        if node_id in self._all:
            log.warning("storage node %s removed (lost)", node_id)
            self._all = [n for n in self._all if n != node_id]

    def up_nodes(self) -> list[str]:
        return [n for n in self._all if n not in self._down]

    def mark_down(self, node_id: str, reason: str) -> None:
        if node_id not in self._down:
            log.warning("storage node %s marked down: %s", node_id, reason)
            self._down.add(node_id)

    def mark_up(self, node_id: str) -> None:
        if node_id in self._down:
            log.info("storage node %s is up again", node_id)
            self._down.discard(node_id)

    async def probe_all(self, probe: Callable[[str], Awaitable[bool]]) -> list[str]:
        """Probe every node concurrently, update beliefs, return the ids found up."""
        nodes = list(self._all)
        results = await asyncio.gather(*(probe(n) for n in nodes))
        for node_id, ok in zip(nodes, results, strict=True):
            if ok:
                self.mark_up(node_id)
            else:
                self.mark_down(node_id, "health probe failed")
        return [n for n, ok in zip(nodes, results, strict=True) if ok]

    def start(
        self,
        probe: Callable[[str], Awaitable[bool]],
        interval: float,
        on_round: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> None:
        """Run ``probe_all`` every ``interval`` seconds (with jitter, so many origins do not
        probe in lock-step); ``on_round`` gets the ids found up (e.g. to record last_seen)."""

        async def loop() -> None:
            while True:
                try:
                    up = await self.probe_all(probe)
                    if on_round is not None:
                        await on_round(up)
                except Exception:  # noqa: BLE001 - a probe round must never kill the loop
                    log.exception("health probe round failed")
                await asyncio.sleep(interval * random.uniform(0.8, 1.2))

        self._task = asyncio.get_running_loop().create_task(loop(), name="node-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
