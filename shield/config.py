"""The shield's configuration: env ``CDN_SHIELD_*``, TOML table ``[shield]``, CLI flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from cdn.settings import ConfigError
from httpcache.tier import CacheTierConfig, is_http_url


@dataclass(frozen=True)
class ShieldConfig(CacheTierConfig):
    name: str = field(default="shield-1", metadata={"help": "name in Cache-Status/Via"})
    port: int = 8101
    origin: str = field(default="http://127.0.0.1:9000",
                        metadata={"help": "any HTTP/1.1 origin URL"})
    edge_secret: str = field(default="", metadata={
        "help": "shared HMAC secret edges sign with; empty = no edge authentication"})
    origin_access_key: str = field(default="", metadata={
        "help": "S3 key the shield signs origin requests with (SigV4); empty = unsigned"})
    origin_secret_key: str = ""
    origin_region: str = "us-east-1"
    hit_path: bool = field(default=True, metadata={
        "help": "answer fresh memory hits and plain misses on asyncio's protocol layer "
                "(httptools), the rest with aiohttp (httpcache.fast_server)"})

    @property
    def upstream_caches(self) -> bool:
        return False  # the origin: what it answers is current, so no purge grace

    def __post_init__(self) -> None:
        self.check_tier("shield")
        if bool(self.origin_access_key) != bool(self.origin_secret_key):
            raise ConfigError("shield.origin_access_key and shield.origin_secret_key must be "
                              "set together")
        if not is_http_url(self.origin):
            raise ConfigError(f"shield.origin must be an http(s) URL, got {self.origin!r}")

    @property
    def cache_name(self) -> str:
        """Our member name in Cache-Status (RFC 9211 wants it to identify the cache)."""
        return f"cdn-{self.name}"
