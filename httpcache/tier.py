"""What an edge and a shield have in common as cache tiers: the settings of the engine, its
memory tier, its upstream timeouts and its purge subscription, and the app builder that wires
them. Each role adds only what is its own (signed URLs and shield selection at the edge, edge
authentication at the shield)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from cdn.settings import ConfigError
from httpcache.app import CleanupContext, UpstreamFactory, build_cache_app
from httpcache.engine import EngineConfig
from httpcache.purge_subscriber import PurgeSettings, purge_context

MiB = 1024 * 1024


def is_http_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


@dataclass(frozen=True)
class CacheTierConfig:
    """Fields shared by ``EdgeConfig`` and ``ShieldConfig`` (flags ``--cache-max-bytes`` …)."""

    host: str = "127.0.0.1"
    port: int = 8000
    cache_max_bytes: int = field(default=256 * MiB, metadata={"help": "memory tier size"})
    max_object_bytes: int = field(default=32 * MiB,
                                  metadata={"help": "largest body kept in memory"})
    redis_url: str = field(default="", metadata={"help": "purge fan-out; empty = none"})
    control_url: str = field(default="", metadata={"help": "control plane for purge catch-up"})
    purge_token: str = ""
    purge_channel: str = "cdn:purge"
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 60.0

    def check_tier(self, section: str) -> None:
        """Validate the shared fields; errors name ``section.field`` and the value."""
        if not 0 < self.port < 65536:
            raise ConfigError(f"{section}.port must be 1..65535, got {self.port}")
        if self.control_url and not is_http_url(self.control_url):
            raise ConfigError(f"{section}.control_url must be an http(s) URL, got "
                              f"{self.control_url!r}")
        if self.cache_max_bytes <= 0:
            raise ConfigError(f"{section}.cache_max_bytes must be positive, got "
                              f"{self.cache_max_bytes}")
        if not 0 < self.max_object_bytes <= self.cache_max_bytes:
            raise ConfigError(f"{section}.max_object_bytes must be 1..cache_max_bytes "
                              f"({self.cache_max_bytes}), got {self.max_object_bytes}")

    @property
    def purge_settings(self) -> PurgeSettings | None:
        if not self.redis_url:
            return None
        return PurgeSettings(redis_url=self.redis_url, channel=self.purge_channel,
                             control_url=self.control_url, token=self.purge_token)


def build_tier_app(
    tier: CacheTierConfig,
    engine_config: EngineConfig,
    upstream: UpstreamFactory,
    *,
    clock: Callable[[], float] = time.time,
    contexts: Sequence[CleanupContext] = (),
) -> web.Application:
    """The cache app of one tier, subscribed to purges when ``tier.redis_url`` is set."""
    all_contexts = list(contexts)
    if tier.purge_settings is not None:
        all_contexts.append(purge_context(tier.purge_settings))
    return build_cache_app(
        engine_config, upstream, max_bytes=tier.cache_max_bytes,
        max_object_bytes=tier.max_object_bytes, clock=clock, contexts=all_contexts,
        connect_timeout=tier.upstream_connect_timeout, read_timeout=tier.upstream_read_timeout)
