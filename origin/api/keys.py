"""Typed keys for what the origin app and its requests carry (resources live in cleanup
contexts; handlers reach them only through these keys)."""

from __future__ import annotations

import aiohttp
import asyncpg
from aiohttp import web

from origin.api.auth import Principal
from origin.config import OriginConfig
from origin.ec_reader import ECReader
from origin.ec_writer import ECWriter
from origin.metadata.models import Bucket, Credential
from origin.metadata.volume_memo import KnownVolumes
from origin.metrics import OriginMetrics
from origin.nodeclient import NodeClient
from origin.nodehealth import NodeHealth
from origin.object_cache import ObjectCache
from origin.ttl_cache import TTLCache

CONFIG = web.AppKey("config", OriginConfig)
METRICS = web.AppKey("metrics", OriginMetrics)
POOL = web.AppKey("pool", asyncpg.Pool)
SESSION = web.AppKey("session", aiohttp.ClientSession)
NODES = web.AppKey("nodes", NodeClient)
HEALTH = web.AppKey("health", NodeHealth)
WRITER = web.AppKey("writer", ECWriter)
READER = web.AppKey("reader", ECReader)
# Per-process memos of rows read on every request (see ``origin.ttl_cache``).
CREDENTIALS: web.AppKey[TTLCache[str, Credential]] = web.AppKey("credentials")
BUCKETS: web.AppKey[TTLCache[str, Bucket]] = web.AppKey("buckets")
# (node, volume) pairs this process committed: their ``volumes`` rows exist, the PUT commit
# need not upsert them again (``object_store.commit_object``, ``metadata.volume_memo``).
KNOWN_VOLUMES = web.AppKey("known_volumes", KnownVolumes)
# Absent unless object_cache_bytes > 0 (origin.object_cache).
OBJECT_CACHE = web.AppKey("object_cache", ObjectCache)

REQUEST_ID = web.RequestKey("request_id", str)
# None for an anonymous request.
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")
