"""Which TCP ports our listening servers may take: the ones the kernel never hands out as the
local port of an outgoing connection (pure: the kernel's range comes in as text).

Why. Binding port 0 picks from the kernel's ephemeral range (Linux:
``/proc/sys/net/ipv4/ip_local_port_range``, by default 32768-60999), the same range every
outgoing ``connect()`` takes its local port from. A server that is stopped and restarted on
its port (the fault tests do this to storage nodes, the origin and PostgreSQL) can find that
port taken meanwhile by some client's connection, and then fails to bind. Ports outside that
range are only ever taken by someone who binds them on purpose.
"""

from __future__ import annotations

# Used when the kernel's range cannot be read: Linux's default (32768-60999) and IANA's
# dynamic range (49152-65535, the BSDs' and macOS's default) together.
FALLBACK_EPHEMERAL = (32768, 65535)
# Below this live the well-known and commonly registered service ports (5432, 6379, 8080…);
# only used if what is left above it is too small.
LISTEN_FLOOR = 10000
UNPRIVILEGED_FLOOR = 1024
# Fewer ports than this outside the kernel's range: share the whole range instead.
MIN_POOL = 1000


def parse_port_range(text: str) -> tuple[int, int] | None:
    """``"32768\\t60999\\n"`` → ``(32768, 60999)``; ``None`` for anything else."""
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    low, high = int(parts[0]), int(parts[1])
    if not 1 <= low <= high <= 65535:
        return None
    return low, high


def listening_port_pool(ephemeral: tuple[int, int] | None) -> list[range]:
    """The unprivileged ports outside ``ephemeral`` (``None``: unknown, use the fallback),
    preferring those at or above ``LISTEN_FLOOR``. When the kernel's range leaves fewer than
    ``MIN_POOL`` ports outside it, every unprivileged port (a bind test is then all that
    keeps a restart safe, as with port 0)."""
    low, high = ephemeral if ephemeral is not None else FALLBACK_EPHEMERAL
    for floor in (LISTEN_FLOOR, UNPRIVILEGED_FLOOR):
        pool = [r for r in (range(floor, low), range(max(floor, high + 1), 65536)) if r]
        if sum(len(r) for r in pool) >= MIN_POOL:
            return pool
    return [range(UNPRIVILEGED_FLOOR, 65536)]


def pool_size(pool: list[range]) -> int:
    return sum(len(r) for r in pool)


def nth_port(pool: list[range], index: int) -> int:
    """The ``index``-th port of ``pool`` (taken modulo its size), ranges in order."""
    index %= pool_size(pool)
    for r in pool:
        if index < len(r):
            return r[index]
        index -= len(r)
    raise AssertionError("unreachable: index was reduced modulo the pool size")
