"""Fixtures for real PostgreSQL and Redis: embedded by default, external when
``CDN_DATABASE_URL`` / ``CDN_REDIS_URL`` are set. Never mocks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from cdn.embedded import EmbeddedPostgres, EmbeddedRedis
from cdn.processes import free_port


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server URL for the whole session."""
    external = os.environ.get("CDN_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's basetemp: a concurrent pytest session resets that tree to 0700, and
    # PostgreSQL runs as another user (as root) so it would lose its own data folder.
    root = Path(tempfile.mkdtemp(prefix="cdn-test-pg-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "data", free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server URL for the whole session."""
    external = os.environ.get("CDN_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _with_database(url: str, name: str) -> str:
    base, _sep, _db = url.rpartition("/")
    query = ""
    if "?" in _db:
        query = "?" + _db.split("?", 1)[1]
    return f"{base}/{name}{query}"


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A brand-new, empty database on the server of ``server_url``; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(server_url, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_database_url(database_url: str) -> Iterator[str]:
    """A brand-new, empty database on the session's server; dropped afterwards."""
    with scratch_database(database_url) as url:
        yield url


@pytest.fixture(scope="module")
def shared_tmp() -> Iterator[Path]:
    """A temp folder outside pytest's basetemp, for data an unprivileged server must reach."""
    root = Path(tempfile.mkdtemp(prefix="cdn-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path
