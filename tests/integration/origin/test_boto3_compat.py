"""A real S3 client (boto3) against the origin: the test of S3 compatibility."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.integration.origin.conftest import ACCESS_KEY, SECRET_KEY, Cluster

boto3 = pytest.importorskip("boto3")
botocore_config = pytest.importorskip("botocore.config")
botocore_exceptions = pytest.importorskip("botocore.exceptions")


@pytest.fixture
def client(cluster: Cluster):  # noqa: ANN201
    return boto3.client(
        "s3", endpoint_url=cluster.endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
        config=botocore_config.Config(signature_version="s3v4",
                                      s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def test_boto3_round_trip(client) -> None:  # noqa: ANN001
    client.create_bucket(Bucket="boto-bucket")
    body = os.urandom(700_000)
    put = client.put_object(Bucket="boto-bucket", Key="dir/file name.bin", Body=body,
                            ContentType="application/x-test", CacheControl="max-age=5",
                            Metadata={"color": "blue"})
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = client.get_object(Bucket="boto-bucket", Key="dir/file name.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"color": "blue"}
    ranged = client.get_object(Bucket="boto-bucket", Key="dir/file name.bin",
                               Range="bytes=100-199")
    assert ranged["Body"].read() == body[100:200]
    head = client.head_object(Bucket="boto-bucket", Key="dir/file name.bin")
    assert head["ContentLength"] == len(body) and head["CacheControl"] == "max-age=5"
    listing = client.list_objects_v2(Bucket="boto-bucket", Prefix="dir/")
    assert [o["Key"] for o in listing["Contents"]] == ["dir/file name.bin"]
    assert "boto-bucket" in [b["Name"] for b in client.list_buckets()["Buckets"]]
    url = client.generate_presigned_url("get_object", Params={
        "Bucket": "boto-bucket", "Key": "dir/file name.bin"}, ExpiresIn=60)
    import urllib.request

    with urllib.request.urlopen(url) as resp:
        assert resp.read() == body
    client.delete_object(Bucket="boto-bucket", Key="dir/file name.bin")
    with pytest.raises(botocore_exceptions.ClientError) as err:
        client.get_object(Bucket="boto-bucket", Key="dir/file name.bin")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
    client.delete_bucket(Bucket="boto-bucket")


def test_boto3_upload_fileobj(client, tmp_path) -> None:  # noqa: ANN001
    client.create_bucket(Bucket="boto-upload")
    path = tmp_path / "upload.bin"
    body = os.urandom(300_000)
    path.write_bytes(body)
    with path.open("rb") as fh:
        client.put_object(Bucket="boto-upload", Key="streamed", Body=fh)
    assert client.get_object(Bucket="boto-upload", Key="streamed")["Body"].read() == body
