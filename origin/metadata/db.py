"""The asyncpg pool of the origin and the translation of database failures.

Repository functions are decorated with ``translate_db_errors`` so asyncpg exceptions stop at
this package's edge: "cannot reach the database" becomes ``MetadataUnavailable`` (503, worth a
retry) and anything else unexpected becomes ``InternalError``; our own ``OriginError``s pass.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import asyncpg

from cdn.migrations import apply_migrations
from origin.errors import InternalError, MetadataUnavailable, OriginError

log = logging.getLogger("cdn.origin.metadata")

P = ParamSpec("P")
R = TypeVar("R")

_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    TimeoutError,
)


def translate_db_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap ``fn`` so only ``OriginError``s leave it."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except OriginError:
            raise
        except _UNAVAILABLE as exc:
            log.warning("metadata store unavailable in %s: %r", fn.__name__, exc)
            raise MetadataUnavailable() from exc
        except asyncpg.PostgresError as exc:
            log.exception("metadata query %s failed", fn.__name__)
            raise InternalError() from exc

    return wrapper


def _encode_json(value: object) -> str:
    # Most object rows carry empty metadata and tags: ``{}`` without the encoder's machinery.
    return "{}" if isinstance(value, dict) and not value else json.dumps(value)


def _decode_json(text: str) -> object:
    return {} if text == "{}" else json.loads(text)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_encode_json, decoder=_decode_json,
                              schema="pg_catalog")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN
    *; RESET ALL``): one extra round trip after every pooled query, for session state we never
    create. Our advisory locks are transaction-scoped (``pg_advisory_xact_lock``), we use no
    cursors, LISTEN or SET outside a transaction; an open transaction is still rolled back by
    asyncpg before this runs."""


async def create_pool(url: str, *, max_size: int = 16) -> asyncpg.Pool:
    """A pool whose connections decode ``jsonb`` to Python objects."""
    # max_inactive_connection_lifetime=0: asyncpg would otherwise arm (and cancel) a timer
    # on every release, i.e. on every query of the data path.
    pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size, init=_init_connection,
                                     reset=_keep_session, max_inactive_connection_lifetime=0)
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply pending origin migrations (idempotent; safe with several origins starting)."""
    async with pool.acquire() as conn:
        return await apply_migrations(conn, "origin", "origin.metadata.migrations")
