"""The shield's configuration: env ``CDN_SHIELD_*``, TOML table ``[shield]``, CLI flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from cdn.settings import ConfigError

MiB = 1024 * 1024


def _check_url(name: str, value: str, *, required: bool) -> None:
    if not value and not required:
        return
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")


@dataclass(frozen=True)
class ShieldConfig:
    name: str = field(default="shield-1", metadata={"help": "name in Cache-Status/Via"})
    host: str = "127.0.0.1"
    port: int = 8101
    origin: str = field(default="http://127.0.0.1:9000",
                        metadata={"help": "any HTTP/1.1 origin URL"})
    edge_secret: str = field(default="", metadata={
        "help": "shared HMAC secret edges sign with; empty = no edge authentication"})
    cache_max_bytes: int = field(default=256 * MiB, metadata={"help": "memory tier size"})
    max_object_bytes: int = field(default=32 * MiB,
                                  metadata={"help": "largest body kept in memory"})
    redis_url: str = field(default="", metadata={"help": "purge fan-out; empty = none"})
    control_url: str = field(default="", metadata={"help": "control plane for purge catch-up"})
    purge_token: str = ""
    purge_channel: str = "cdn:purge"
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"shield.port must be 1..65535, got {self.port}")
        _check_url("shield.origin", self.origin, required=True)
        _check_url("shield.control_url", self.control_url, required=False)
        if self.cache_max_bytes <= 0:
            raise ConfigError(f"shield.cache_max_bytes must be positive, got "
                              f"{self.cache_max_bytes}")
        if not 0 < self.max_object_bytes <= self.cache_max_bytes:
            raise ConfigError(f"shield.max_object_bytes must be 1..cache_max_bytes "
                              f"({self.cache_max_bytes}), got {self.max_object_bytes}")

    @property
    def cache_name(self) -> str:
        """Our member name in Cache-Status (RFC 9211 wants it to identify the cache)."""
        return f"cdn-{self.name}"
