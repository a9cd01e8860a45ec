"""Typed configuration of the control plane."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cdn.settings import ConfigError


@dataclass(frozen=True)
class ControlConfig:
    host: str = "127.0.0.1"
    port: int = 9400
    # Empty means: take CDN_DATABASE_URL / CDN_REDIS_URL (the values `cdn up` exports).
    database_url: str = ""
    redis_url: str = ""
    purge_token: str = "local-purge-token"
    purge_channel: str = "cdn:purge"
    # Bounds on one purge request so a typo cannot queue millions of entries.
    max_items_per_purge: int = 1000
    max_log_page: int = 1000

    def __post_init__(self) -> None:
        if not self.effective_database_url:
            raise ConfigError("control: database_url is empty and CDN_DATABASE_URL is not set")
        if not self.effective_redis_url:
            raise ConfigError("control: redis_url is empty and CDN_REDIS_URL is not set")
        if not self.purge_token:
            raise ConfigError("control: purge_token must not be empty")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or os.environ.get("CDN_DATABASE_URL", "")

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or os.environ.get("CDN_REDIS_URL", "")
