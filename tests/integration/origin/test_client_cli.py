"""``cdn mb`` / ``cdn put`` / ``cdn get`` as real processes against the cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from origin.client_cli import parse_object_url
from tests.integration.origin.conftest import ACCESS_KEY, SECRET_KEY, Cluster


def _cdn(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "CDN_ENDPOINT": cluster.endpoint, "CDN_ACCESS_KEY": ACCESS_KEY,
           "CDN_SECRET_KEY": SECRET_KEY}
    return subprocess.run([sys.executable, "-m", "cdn.cli", *args], env=env,
                          capture_output=True, timeout=60, check=False)


def test_parse_object_url() -> None:
    assert parse_object_url("s3://b/k/x") == ("b", "k/x")
    assert parse_object_url("b/k") == ("b", "k")


def test_mb_put_get(cluster: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "page.html"
    source.write_bytes(os.urandom(300_000))
    assert _cdn(cluster, "mb", "cli-bucket", "--public").returncode == 0
    done = _cdn(cluster, "put", str(source), "s3://cli-bucket/site/page.html",
                "--cache-control", "max-age=30", "--surrogate-key", "site")
    assert done.returncode == 0, done.stderr
    target = tmp_path / "copy.html"
    done = _cdn(cluster, "get", "cli-bucket/site/page.html", str(target))
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == source.read_bytes()
    done = _cdn(cluster, "get", "cli-bucket/site/page.html")
    assert done.stdout == source.read_bytes()
    done = _cdn(cluster, "get", "cli-bucket/missing")
    assert done.returncode == 1 and b"NoSuchKey" in done.stderr
