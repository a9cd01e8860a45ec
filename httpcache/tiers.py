"""The cache tiers of one process seen as one thing by purges and invalidations: memory,
then the optional disk tier, then the optional shared (Redis) tier.

A purge applies to every tier: memory and disk at once (both are indexed in memory), the
shared tier in the background (``SharedStore.purge_later``; its entries are also checked
against recent purges when read, so the background delete is space reclaim, not what keeps
purged content from being served). The memory tier records every purge, so it is also the
one asked whether a purge raced with a fetch (``MemoryStore.purged_since``).
"""

from __future__ import annotations

from httpcache.disk_store import DiskStore
from httpcache.shared_store import SharedStore
from httpcache.store import MemoryStore, PurgeResult


class CacheTiers:
    def __init__(self, memory: MemoryStore, disk: DiskStore | None = None,
                 shared: SharedStore | None = None) -> None:
        self.memory = memory
        self.disk = disk
        self.shared = shared

    def begin_purge(self, seq: int) -> None:
        """The purges that follow belong to event ``seq`` of the purge log."""
        self.memory.begin_purge(seq)
        if self.shared is not None:
            self.shared.begin_purge(seq)

    def applied_through(self, seq: int) -> None:
        """Every purge of the log up to ``seq`` has been applied, with no gap."""
        self.memory.applied_through(seq)
        if self.shared is not None:
            self.shared.applied_through(seq)

    def purge_tag(self, tag: str, *, soft: bool = False, age: float = 0.0) -> PurgeResult:
        result = self.memory.purge_tag(tag, soft=soft, age=age)
        if self.disk is not None:
            result += self.disk.purge_tag(tag, soft=soft, age=age)
        if self.shared is not None:
            self.shared.purge_later("tag", tag)
        return result

    def purge_url(self, url: str, *, soft: bool = False, age: float = 0.0) -> PurgeResult:
        result = self.memory.purge_url(url, soft=soft, age=age)
        if self.disk is not None:
            result += self.disk.purge_url(url, soft=soft, age=age)
        if self.shared is not None:
            self.shared.purge_later("url", url)
        return result

    def purge_prefix(self, prefix: str, *, soft: bool = False, age: float = 0.0
                     ) -> PurgeResult:
        result = self.memory.purge_prefix(prefix, soft=soft, age=age)
        if self.disk is not None:
            result += self.disk.purge_prefix(prefix, soft=soft, age=age)
        if self.shared is not None:
            self.shared.purge_later("prefix", prefix)
        return result

    def delete_entry(self, entry: str) -> bool:
        removed = self.memory.delete_entry(entry)
        if self.disk is not None:
            removed = self.disk.delete_entry(entry) or removed
        return removed
