"""Rows of the metadata store as frozen dataclasses (what repository functions return)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Credential:
    access_key: str
    secret_key: str
    owner: str


@dataclass(frozen=True)
class Bucket:
    name: str
    owner: str
    public_read: bool
    created: datetime
    versioning: str | None = None  # None (never enabled), "Enabled" or "Suspended"
    lifecycle: list[dict[str, Any]] | None = None  # rules as stored (origin.lifecycle.rules)


@dataclass(frozen=True)
class StorageScheme:
    """How an object's bytes were encoded; stored per object so a later change of the origin's
    defaults (or storage classes) never makes old objects unreadable."""

    ec_type: str
    ndata: int
    nparity: int
    segment_size: int


@dataclass(frozen=True)
class NewObject:
    """Everything the API knows about an object once its data is durable."""

    id: str
    bucket: str
    key: str
    size: int
    etag: str
    content_type: str
    scheme: StorageScheme
    cache_control: str | None = None
    content_disposition: str | None = None
    content_encoding: str | None = None
    surrogate_keys: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    missing_fragments: int = 0
    # S3 features (versioning, tagging, checksums, multipart).
    version_id: str = "null"
    tags: dict[str, str] = field(default_factory=dict)
    checksum: tuple[str, str] | None = None  # (algorithm such as "CRC32", base64 value)
    part_count: int | None = None  # completed multipart upload: its data is in object_parts
    delete_marker: bool = False
    storage_class: str = "STANDARD"  # the class it was put in / moved to (origin.storage_class)


@dataclass(frozen=True)
class ObjectRecord(NewObject):
    """A committed object version: a ``NewObject`` plus the commit time."""

    last_modified: datetime = datetime.min
    is_latest: bool = True
    lifecycle_storage_class: str | None = None


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    etag: str
    last_modified: datetime
    storage_class: str = "STANDARD"


@dataclass(frozen=True)
class ListPage:
    """One page of ListObjectsV2. ``resume`` is where the next page starts
    (``(key, inclusive)``) when ``truncated``."""

    contents: list[ListedObject]
    common_prefixes: list[str]
    truncated: bool
    resume: tuple[str, bool] | None
