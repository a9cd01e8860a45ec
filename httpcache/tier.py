"""What an edge and a shield have in common as cache tiers: the settings of the engine, its
memory tier, its upstream timeouts and its purge subscription, and the app builder that wires
them. Each role adds only what is its own (signed URLs and shield selection at the edge, edge
authentication at the shield)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cdn.settings import ConfigError
from httpcache.app import CleanupContext, UpstreamFactory, build_cache_app
from httpcache.disk_store import DiskStore
from httpcache.engine import EngineConfig
from httpcache.metrics import CacheMetrics
from httpcache.policy_config import PolicyConfig
from httpcache.purge_subscriber import PurgeSettings, purge_context
from httpcache.shared_store import SharedStore
from httpcache.slices import DEFAULT_SLICE_SIZE, MIN_SLICE_SIZE
from httpcache.store import PURGE_GRACE

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
    cache_set_cookie: bool = field(default=True, metadata={
        "help": "store responses that set cookies, without the Set-Cookie field"})
    honor_request_cache_control: bool = field(default=True, metadata={
        "help": "obey clients' Cache-Control (max-age, no-cache, no-store, max-stale, "
                "min-fresh); only-if-cached is always obeyed"})
    stale_if_error: float = field(default=300.0, metadata={
        "help": "seconds a stale response may be served when the upstream fails and the "
                "response has no stale-if-error of its own; 0 = off"})
    collapse_max_waiters: int = field(default=1000, metadata={
        "help": "requests that may wait on one upstream fetch; more fetch on their own"})
    collapse_timeout: float = field(default=10.0, metadata={
        "help": "seconds a collapsed request waits for the response head before fetching "
                "on its own (the first fetch still fills the cache)"})
    cache_dir: str = field(default="", metadata={
        "help": "disk tier folder for large bodies (wiped of dead processes' files at "
                "start); empty = no disk tier"})
    disk_max_bytes: int = field(default=10 * 1024 * MiB, metadata={
        "help": "disk tier size (bodies + metadata), S3-FIFO eviction"})
    disk_min_object_bytes: int = field(default=MiB, metadata={
        "help": "bodies at least this large go to the disk tier (when there is one)"})
    shared_cache_url: str = field(default="", metadata={
        "help": "Redis shared by the processes of one PoP, redis://host:port/db; "
                "empty = none"})
    shared_cache_prefix: str = field(default="cdn:cache:", metadata={
        "help": "key prefix in the shared Redis (one per PoP and tier)"})
    shared_max_object_bytes: int = field(default=MiB, metadata={
        "help": "largest body written to the shared tier"})
    purge_grace: float | None = field(default=None, metadata={
        "help": "seconds before a fetch in which a matching purge still makes its response "
                "suspect, as the upstream may not have applied it yet (httpcache.store); "
                "default 2 from a caching upstream, 0 from the origin itself"})
    slice_size: int = field(default=DEFAULT_SLICE_SIZE, metadata={
        "help": "ranged misses fetch and cache objects in slices of this many bytes "
                "(align with the origin's segment size); 0 = off; also off when a slice is larger "
                "than max_object_bytes and there is no disk tier to hold it"})

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
        if self.stale_if_error < 0:
            raise ConfigError(f"{section}.stale_if_error must be >= 0, got {self.stale_if_error}")
        if self.collapse_max_waiters < 0:
            raise ConfigError(f"{section}.collapse_max_waiters must be >= 0, got "
                              f"{self.collapse_max_waiters}")
        if self.purge_grace is not None and self.purge_grace < 0:
            raise ConfigError(f"{section}.purge_grace must be >= 0, got {self.purge_grace}")
        if self.collapse_timeout <= 0:
            raise ConfigError(f"{section}.collapse_timeout must be positive, got "
                              f"{self.collapse_timeout}")
        if self.disk_max_bytes <= 0:
            raise ConfigError(f"{section}.disk_max_bytes must be positive, got "
                              f"{self.disk_max_bytes}")
        if not 0 <= self.disk_min_object_bytes <= self.disk_max_bytes:
            raise ConfigError(f"{section}.disk_min_object_bytes must be 0..disk_max_bytes "
                              f"({self.disk_max_bytes}), got {self.disk_min_object_bytes}")
        if self.shared_cache_url and not self.shared_cache_url.startswith(
                ("redis://", "rediss://")):
            raise ConfigError(f"{section}.shared_cache_url must be redis://host:port/db, got "
                              f"{self.shared_cache_url!r}")
        if self.shared_max_object_bytes <= 0:
            raise ConfigError(f"{section}.shared_max_object_bytes must be positive, got "
                              f"{self.shared_max_object_bytes}")
        if self.slice_size and self.slice_size < MIN_SLICE_SIZE:
            raise ConfigError(f"{section}.slice_size must be 0 (off) or at least "
                              f"{MIN_SLICE_SIZE}, got {self.slice_size}")
        if not 0 < self.max_object_bytes <= self.cache_max_bytes:
            raise ConfigError(f"{section}.max_object_bytes must be 1..cache_max_bytes "
                              f"({self.cache_max_bytes}), got {self.max_object_bytes}")

    @property
    def upstream_caches(self) -> bool:
        """Whether the upstream is a cache tier, which applies purges on its own time (the
        roles say; an unknown upstream is assumed to)."""
        return True

    @property
    def effective_purge_grace(self) -> float:
        if self.purge_grace is not None:
            return self.purge_grace
        return PURGE_GRACE if self.upstream_caches else 0.0

    @property
    def policy(self) -> PolicyConfig:
        """The RFC choices of this tier (see ``PolicyConfig``)."""
        return PolicyConfig(cache_set_cookie=self.cache_set_cookie,
                            honor_request_cache_control=self.honor_request_cache_control,
                            stale_if_error_default=self.stale_if_error)

    def engine_config(self, name: str, **kwargs: Any) -> EngineConfig:
        """The engine settings of this tier; roles add their own (gates, stripped fields)."""
        return EngineConfig(name=name, policy=self.policy,
                            collapse_max_waiters=self.collapse_max_waiters,
                            collapse_timeout=self.collapse_timeout,
                            slice_size=self.slice_size, **kwargs)

    @property
    def disk_factory(self) -> Callable[[], DiskStore] | None:
        if not self.cache_dir:
            return None
        return functools.partial(DiskStore, self.cache_dir, self.disk_max_bytes,
                                 self.disk_min_object_bytes)

    def shared_factory(self, clock: Callable[[], float]
                       ) -> Callable[[CacheMetrics], SharedStore] | None:
        if not self.shared_cache_url:
            return None

        def make(metrics: CacheMetrics) -> SharedStore:
            return SharedStore(self.shared_cache_url, prefix=self.shared_cache_prefix,
                               max_object_bytes=self.shared_max_object_bytes,
                               policy=self.policy, clock=clock,
                               on_error=metrics.shared_errors.inc,
                               on_drop=metrics.shared_dropped.inc)

        return make

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
        connect_timeout=tier.upstream_connect_timeout, read_timeout=tier.upstream_read_timeout,
        disk=tier.disk_factory, shared=tier.shared_factory(clock),
        purge_grace=tier.effective_purge_grace)
