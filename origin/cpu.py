"""Run CPU-bound work (erasure coding, hashing) off the event loop when it is big enough.

hashlib and the ISA-L codec release the GIL on large buffers, so a worker thread lets them run
alongside the loop (and on a second core). Below ``INLINE_LIMIT`` the thread hand-off costs
more than the work (encoding 64 KiB takes a few tens of microseconds), so it runs inline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")

INLINE_LIMIT = 64 << 10


async def run_cpu(nbytes: int, fn: Callable[..., R], *args: object) -> R:
    """``fn(*args)``, in the default executor when it processes at least ``INLINE_LIMIT``."""
    if nbytes < INLINE_LIMIT:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
