"""The edge's configuration: env ``CDN_EDGE_*``, TOML table ``[edge]``, CLI flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from cdn.settings import ConfigError
from httpcache.tier import CacheTierConfig, is_http_url

DEFAULT_SHIELDS = {"shield-1": "http://127.0.0.1:8101"}


@dataclass(frozen=True)
class EdgeConfig(CacheTierConfig):
    region: str = field(default="local", metadata={"help": "region name (Cache-Status/Via)"})
    port: int = 8001
    shields: dict[str, str] = field(default_factory=dict, metadata={
        "help": "name=url,… of shields (rendezvous-hashed); empty with no upstream = "
                "shield-1=http://127.0.0.1:8101"})
    upstream: str = field(default="", metadata={
        "help": "origin URL to use directly when no shields are configured"})
    edge_secret: str = field(default="", metadata={"help": "HMAC secret shared with shields"})
    signing_keys: dict[str, str] = field(default_factory=dict, metadata={
        "help": "key-id=secret,… for signed URLs (several for rotation)"})
    signed_buckets: tuple[str, ...] = field(default=(), metadata={
        "help": "buckets that need signed URLs, comma separated; * = all"})
    shield_health_interval: float = 1.0
    upstream_read_timeout: float = field(default=70.0, metadata={
        "help": "longer than the shield's, so its 504 arrives before ours"})
    hit_path: bool = field(default=True, metadata={
        "help": "answer fresh memory hits on asyncio's protocol layer (httptools), the rest "
                "with aiohttp (httpcache.fast_server)"})
    workers: int = field(default=1, metadata={
        "help": "processes sharing the port (SO_REUSEPORT), each with its own memory tier; "
                "they share objects only through --shared-cache-url (httpcache.serving)"})

    def __post_init__(self) -> None:
        self.check_tier("edge")
        for name, url in self.shields.items():
            if not is_http_url(url):
                raise ConfigError(f"edge.shields: {name}={url!r} is not an http(s) URL")
        if self.upstream and not is_http_url(self.upstream):
            raise ConfigError(f"edge.upstream must be an http(s) URL, got {self.upstream!r}")
        if self.signed_buckets and not self.signing_keys:
            raise ConfigError(f"edge.signed_buckets {list(self.signed_buckets)} need at least "
                              "one entry in edge.signing_keys")
        if not 1 <= self.workers <= 256:
            raise ConfigError(f"edge.workers must be 1..256, got {self.workers}")
        if self.shield_health_interval <= 0:
            raise ConfigError(f"edge.shield_health_interval must be positive, got "
                              f"{self.shield_health_interval}")

    @property
    def effective_shields(self) -> dict[str, str]:
        """The shields to use: configured ones, none when going straight to ``upstream``, or
        the default local shield."""
        if self.shields:
            return dict(self.shields)
        return {} if self.upstream else dict(DEFAULT_SHIELDS)

    @property
    def upstream_caches(self) -> bool:
        """Shields apply purges on their own time; the origin answers what is current."""
        return bool(self.effective_shields)

    @property
    def cache_name(self) -> str:
        return f"cdn-edge-{self.region}"
