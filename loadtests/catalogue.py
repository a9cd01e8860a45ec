"""The load-test catalogue: object names, sizes and a Zipf popularity law (pure).

Real CDN traffic is heavy-tailed: a few objects take most requests. A Zipf law with exponent
``s`` (≈ 0.8–1.2 for web objects) over ``n`` ranked objects reproduces that, so hit ratios and
shield fan-in in a load test look like production rather than uniform noise.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

BUCKET = "load"
# A mix of small web assets and a few larger media-like objects.
SIZES = (1024, 4096, 16384, 65536, 262144, 1048576)


@dataclass(frozen=True)
class Catalogue:
    count: int = 500
    zipf_s: float = 1.0

    def key(self, rank: int) -> str:
        return f"obj-{rank:06d}.bin"

    def path(self, rank: int) -> str:
        return f"/{BUCKET}/{self.key(rank)}"

    def size(self, rank: int) -> int:
        # Popular objects skew small, like real sites (thumbnails, scripts), big ones are rarer.
        return SIZES[(rank * 7919) % len(SIZES)] if rank % 10 else SIZES[0]

    def tag(self, rank: int) -> str:
        return f"group-{rank % 20}"

    def cumulative_weights(self) -> list[float]:
        return list(itertools.accumulate(1.0 / (r ** self.zipf_s)
                                         for r in range(1, self.count + 1)))

    def sampler(self, rng: random.Random) -> Callable[[], int]:
        """Draws ranks 1..count with probability ∝ 1/rank**s."""
        ranks = list(range(1, self.count + 1))
        cum = self.cumulative_weights()
        return lambda: rng.choices(ranks, cum_weights=cum, k=1)[0]


def body_for(rank: int, size: int) -> bytes:
    """Deterministic content so a load test can check bytes without storing them."""
    seed = f"{rank}:".encode()
    return (seed * (size // len(seed) + 1))[:size]
