"""Which storage nodes the origin currently believes are up.

Two signals feed it: a background probe of every node's ``/_health`` every few seconds, and the
data path reporting a node it could not reach (so the very next PUT already places around it,
without waiting for the probe). A node is believed up again only when a probe succeeds. All
nodes start "up" so the origin serves at once; the first failed request or probe corrects that.

A probe that succeeds also says what the node answered (``NodeStatus``: its id and disk
identity); each round hands those of the nodes found up to ``on_round``, which records the
disks (``origin/disk_probe.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("cdn.origin.health")


@dataclass(frozen=True)
class NodeStatus:
    """What a node's ``GET /_health`` answered: the node id it serves and its disk identity
    (``storagenode/identity.py``); ``None`` for what the answer did not carry (another build,
    another kind of server)."""

    node_id: str | None = None
    disk_id: str | None = None
    volume_base: int | None = None


Probe = Callable[[str], Awaitable[NodeStatus | None]]


def node_status(body: bytes) -> NodeStatus:
    """The fields of a ``/_health`` body this probe uses; each one missing, mistyped or
    unparsable is ``None`` (never an error: the node answered, so it is up)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return NodeStatus()
    if not isinstance(doc, dict):
        return NodeStatus()
    node_id, disk_id, base = doc.get("node_id"), doc.get("disk_id"), doc.get("volume_base")
    return NodeStatus(node_id if isinstance(node_id, str) else None, _canonical_uuid(disk_id),
                      base if isinstance(base, int) and not isinstance(base, bool) else None)


def _canonical_uuid(value: object) -> str | None:
    """The form the metadata prints a ``uuid`` in (and the node writes), so a disk id is
    compared as a value, never as spelling."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


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

    async def probe_all(self, probe: Probe) -> dict[str, NodeStatus]:
        """Probe every node concurrently (``probe`` answers ``None`` for a node that is
        down), update beliefs, return what the nodes found up answered, by node id."""
        nodes = list(self._all)
        results = await asyncio.gather(*(probe(n) for n in nodes))
        up: dict[str, NodeStatus] = {}
        for node_id, status in zip(nodes, results, strict=True):
            if status is not None:
                self.mark_up(node_id)
                up[node_id] = status
            else:
                self.mark_down(node_id, "health probe failed")
        return up

    def start(
        self,
        probe: Probe,
        interval: float,
        on_round: Callable[[dict[str, NodeStatus]], Awaitable[None]] | None = None,
    ) -> None:
        """Run ``probe_all`` every ``interval`` seconds (with jitter, so many origins do not
        probe in lock-step); ``on_round`` gets what the nodes found up answered (e.g. to
        record last_seen and their disks)."""

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
