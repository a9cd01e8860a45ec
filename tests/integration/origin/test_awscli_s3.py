"""The AWS CLI against the origin: ``aws s3 cp/sync/ls/rm`` over a directory tree with a file
big enough to go multipart (threshold lowered in the CLI's config), and ``aws s3api`` calls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.origin.conftest import ACCESS_KEY, SECRET_KEY, Cluster

MIB = 1 << 20


def _aws_binary() -> str | None:
    local = Path(sys.executable).with_name("aws")
    return str(local) if local.exists() else shutil.which("aws")


AWS = _aws_binary()
pytestmark = pytest.mark.skipif(AWS is None, reason="awscli is not installed")


@pytest.fixture
def aws(cluster: Cluster, tmp_path: Path):  # noqa: ANN201
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n"
                      "    multipart_threshold = 5MB\n    multipart_chunksize = 5MB\n")
    env = {**os.environ, "AWS_CONFIG_FILE": str(config),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def run(*args: str) -> str:
        done = subprocess.run([AWS, "--endpoint-url", cluster.endpoint, *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def test_aws_s3_cp_sync_ls_rm_with_multipart(aws, tmp_path: Path) -> None:  # noqa: ANN001
    bucket = f"cli-{uuid.uuid4().hex[:10]}"
    aws("s3", "mb", f"s3://{bucket}")
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    files = {"a.txt": b"hello", "sub/b.bin": os.urandom(70_000),
             "sub/deeper/c name.txt": b"spaces", "big.bin": os.urandom(6 * MIB)}
    for name, data in files.items():
        (tree / name).write_bytes(data)
    aws("s3", "sync", str(tree), f"s3://{bucket}/site")
    listing = aws("s3", "ls", "--recursive", f"s3://{bucket}/site/")
    assert sorted(line.split(maxsplit=3)[3] for line in listing.splitlines()) == sorted(
        f"site/{n}" for n in files)
    head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "site/big.bin"))
    assert head["ETag"].endswith('-2"') and head["ContentLength"] == 6 * MIB
    assert "sub/" in aws("s3", "ls", f"s3://{bucket}/site/")
    out = tmp_path / "out"
    aws("s3", "cp", "--recursive", f"s3://{bucket}/site", str(out))
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    assert "upload" not in aws("s3", "sync", str(tree), f"s3://{bucket}/site")  # nothing new
    (tree / "a.txt").unlink()
    aws("s3", "sync", "--delete", str(tree), f"s3://{bucket}/site")
    assert "a.txt" not in aws("s3", "ls", "--recursive", f"s3://{bucket}/")
    aws("s3", "cp", str(tree / "big.bin"), f"s3://{bucket}/single/big.bin")
    aws("s3", "rm", "--recursive", f"s3://{bucket}/")
    assert aws("s3", "ls", "--recursive", f"s3://{bucket}/").strip() == ""
    aws("s3", "rb", f"s3://{bucket}")


def test_aws_s3api_calls(aws, tmp_path: Path) -> None:  # noqa: ANN001
    bucket = f"api-{uuid.uuid4().hex[:10]}"
    aws("s3api", "create-bucket", "--bucket", bucket)
    body = tmp_path / "body.txt"
    body.write_bytes(b"s3api body")
    aws("s3api", "put-bucket-versioning", "--bucket", bucket, "--versioning-configuration",
        "Status=Enabled")
    put = json.loads(aws("s3api", "put-object", "--bucket", bucket, "--key", "k", "--body",
                         str(body), "--tagging", "team=web"))
    assert put["VersionId"]
    tags = json.loads(aws("s3api", "get-object-tagging", "--bucket", bucket, "--key", "k"))
    assert tags["TagSet"] == [{"Key": "team", "Value": "web"}]
    out = tmp_path / "got.txt"
    aws("s3api", "get-object", "--bucket", bucket, "--key", "k", str(out))
    assert out.read_bytes() == b"s3api body"
    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket))
    assert [o["Key"] for o in listed["Contents"]] == ["k"]
    versions = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket))
    assert [v["VersionId"] for v in versions["Versions"]] == [put["VersionId"]]
    assert json.loads(aws("s3api", "get-bucket-versioning", "--bucket", bucket))["Status"] == \
        "Enabled"
