"""An origin with the object cache (``--object-cache-bytes``) on the session cluster's
database and nodes: GETs stay consistent with overwrites and deletes made through *another*
origin process, because the cache is asked only for the id the object's row names."""

from __future__ import annotations

import os
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from origin.client import S3Client, S3ClientError
from tests.integration.origin.conftest import ACCESS_KEY, SECRET_KEY, Cluster
from tests.procs import RoleProcess


@pytest.fixture(scope="module")
def cached_origin(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[RoleProcess]:
    logs = tmp_path_factory.mktemp("cached-origin")
    proc = cluster.another_origin(logs / "origin.log", "--object-cache-bytes", str(4 << 20))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def clients(cluster: Cluster, cached_origin: RoleProcess
                  ) -> AsyncIterator[tuple[S3Client, S3Client]]:
    async with S3Client(cached_origin.url, ACCESS_KEY, SECRET_KEY) as cached, \
            S3Client(cluster.endpoint, ACCESS_KEY, SECRET_KEY) as other:
        yield cached, other


def _lookups(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/_metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {m[1]: float(m[2]) for m in re.finditer(
        r'^origin_object_cache_lookups_total\{result="(\w+)"\} ([\d.e+]+)', text, re.M)}


async def test_cached_reads_follow_overwrites_and_deletes_elsewhere(
        clients: tuple[S3Client, S3Client], cached_origin: RoleProcess) -> None:
    cached, other = clients
    bucket = f"cache-{uuid.uuid4().hex[:10]}"
    await other.create_bucket(bucket)
    first, second = os.urandom(4096), os.urandom(3000)
    await other.put_object(bucket, "k", first)
    before = _lookups(cached_origin.url)
    assert await cached.get_object(bucket, "k") == first  # miss: read from the nodes
    assert await cached.get_object(bucket, "k") == first  # hit
    after = _lookups(cached_origin.url)
    assert after["hit"] - before.get("hit", 0) == 1
    assert after["miss"] - before.get("miss", 0) == 1
    await other.put_object(bucket, "k", second)  # through the other origin
    assert await cached.get_object(bucket, "k") == second
    got = await cached.get_object(bucket, "k", byte_range=(10, 19))
    assert got == second[10:20]
    await other.delete_object(bucket, "k")
    with pytest.raises(S3ClientError) as missing:
        await cached.get_object(bucket, "k")
    assert missing.value.status == 404
