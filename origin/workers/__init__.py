"""Background workers of the origin: reconstructor, scrubber, garbage collector, compactor.

All share one contract (``base``): ``run_once()`` does one bounded pass and returns a stats
dataclass, ``run_forever()`` repeats it every ``interval`` seconds with jitter, and every byte
rate is capped by an explicit ``RateLimiter``. Decisions are pure functions (``planning``);
workers only do the I/O around them.
"""
