"""Issue 5 with a real S3 client: boto3 against the origin cluster on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from origin import sigv4
from origin.checksums import checksum
from origin.lifecycle.worker import LifecycleWorker
from origin.metadata import db
from tests.integration.origin.conftest import ACCESS_KEY, SECRET_KEY, Cluster

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

MIB = 1 << 20


def make_client(endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):  # noqa: ANN201
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1}))


@pytest.fixture
def s3c(cluster: Cluster):  # noqa: ANN201
    return make_client(cluster.endpoint)


@pytest.fixture
def bkt(s3c) -> str:  # noqa: ANN001
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3c.create_bucket(Bucket=name)
    return name


def code_of(call, *args: Any, **kwargs: Any) -> tuple[int, str, dict]:  # noqa: ANN001
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    response = err.value.response
    return (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"],
            response)


def create_user(cluster: Cluster, name: str) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "origin.user_cli", "create", name,
                          "--database-url", cluster.database_url],
                         check=True, capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def sql(cluster: Cluster, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(cluster.database_url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


# -- auth and users ---------------------------------------------------------------------------

def test_users_own_their_buckets_and_errors_carry_request_ids(cluster: Cluster) -> None:
    alice_keys, bob_keys = create_user(cluster, "alice"), create_user(cluster, "bob")
    assert set(alice_keys) == {"access_key", "secret_key"}
    alice = make_client(cluster.endpoint, alice_keys["access_key"], alice_keys["secret_key"])
    bob = make_client(cluster.endpoint, bob_keys["access_key"], bob_keys["secret_key"])
    name = f"alice-{uuid.uuid4().hex[:8]}"
    alice.create_bucket(Bucket=name)
    assert alice.create_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    alice.put_object(Bucket=name, Key="k", Body=b"mine")
    assert name in [b["Name"] for b in alice.list_buckets()["Buckets"]]
    assert name not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    status, code, response = code_of(bob.get_object, Bucket=name, Key="k")
    assert (status, code) == (403, "AccessDenied")
    meta = response["ResponseMetadata"]
    assert meta["RequestId"] and meta["RequestId"] == meta["HTTPHeaders"]["x-amz-request-id"]
    assert code_of(bob.put_object, Bucket=name, Key="x", Body=b"")[:2] == (403, "AccessDenied")
    assert code_of(bob.create_bucket, Bucket=name)[:2] == (409, "BucketAlreadyExists")
    wrong = make_client(cluster.endpoint, alice_keys["access_key"], "not-the-secret")
    assert code_of(wrong.list_buckets)[:2] == (403, "SignatureDoesNotMatch")
    unknown = make_client(cluster.endpoint, "NOSUCHKEY0000000", "x")
    assert code_of(unknown.list_buckets)[:2] == (403, "InvalidAccessKeyId")
    ok = alice.head_object(Bucket=name, Key="k")["ResponseMetadata"]["HTTPHeaders"]
    assert ok["x-amz-request-id"]


def _signed_request(cluster: Cluster, path: str, when: datetime) -> urllib.request.Request:
    host = cluster.endpoint.split("//", 1)[1]
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    headers = sigv4.sign_request(method="GET", path=path, query=[], headers={"host": host},
                                 access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                 region="us-east-1", amz_date=amz_date,
                                 payload_hash=sigv4.EMPTY_SHA256)
    return urllib.request.Request(cluster.endpoint + path, headers=headers)


def _xml_code(err: urllib.error.HTTPError) -> str:
    body = err.read().decode()
    return body.split("<Code>")[1].split("</Code>")[0]


def test_clock_skew_and_expired_presigned_urls(cluster: Cluster, s3c, bkt: str) -> None:  # noqa: ANN001
    s3c.put_object(Bucket=bkt, Key="k", Body=b"v")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(_signed_request(cluster, f"/{bkt}/k",
                                               datetime.now(UTC) - timedelta(minutes=16)))
    assert err.value.code == 403 and _xml_code(err.value) == "RequestTimeTooSkewed"
    with urllib.request.urlopen(_signed_request(cluster, f"/{bkt}/k", datetime.now(UTC))) as r:
        assert r.read() == b"v"
    host = cluster.endpoint.split("//", 1)[1]
    old = (datetime.now(UTC) - timedelta(seconds=120)).strftime("%Y%m%dT%H%M%SZ")
    query = sigv4.presign_query(method="GET", path=f"/{bkt}/k", host=host,
                                access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                region="us-east-1", amz_date=old, expires=60)
    url = f"{cluster.endpoint}/{bkt}/k?" + "&".join(
        f"{sigv4.uri_encode(k)}={sigv4.uri_encode(v)}" for k, v in query)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url)
    assert err.value.code == 403 and _xml_code(err.value) == "AccessDenied"


def test_presigned_get_and_put(s3c, bkt: str) -> None:  # noqa: ANN001
    put_url = s3c.generate_presigned_url("put_object", Params={"Bucket": bkt, "Key": "up"},
                                         ExpiresIn=60)
    request = urllib.request.Request(put_url, data=b"presigned body", method="PUT")
    with urllib.request.urlopen(request) as resp:
        assert resp.status == 200
    get_url = s3c.generate_presigned_url("get_object", Params={"Bucket": bkt, "Key": "up"},
                                         ExpiresIn=60)
    with urllib.request.urlopen(get_url) as resp:
        assert resp.read() == b"presigned body"
    tampered = get_url.replace("Key=up", "Key=up").replace("/up?", "/other?")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(tampered)
    assert _xml_code(err.value) == "SignatureDoesNotMatch"


def test_anonymous_read_is_per_bucket(cluster: Cluster, s3c, bkt: str) -> None:  # noqa: ANN001
    s3c.put_object(Bucket=bkt, Key="pic", Body=b"img")
    url = f"{cluster.endpoint}/{bkt}/pic"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url)
    assert err.value.code == 403
    s3c.put_bucket_acl(Bucket=bkt, ACL="public-read")
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == b"img"
    grants = s3c.get_bucket_acl(Bucket=bkt)["Grants"]
    assert any(g["Permission"] == "READ" for g in grants)
    s3c.put_bucket_acl(Bucket=bkt, ACL="private")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url)


# -- buckets ----------------------------------------------------------------------------------

def test_buckets(s3c) -> None:  # noqa: ANN001
    name = f"bk-{uuid.uuid4().hex[:8]}"
    assert code_of(s3c.create_bucket, Bucket="Not_Valid")[1] == "InvalidBucketName"
    s3c.create_bucket(Bucket=name)
    s3c.head_bucket(Bucket=name)
    assert s3c.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    s3c.put_object(Bucket=name, Key="a", Body=b"1")
    assert code_of(s3c.delete_bucket, Bucket=name)[:2] == (409, "BucketNotEmpty")
    s3c.delete_object(Bucket=name, Key="a")
    s3c.delete_bucket(Bucket=name)
    assert code_of(s3c.head_bucket, Bucket=name)[0] == 404
    assert code_of(s3c.get_object, Bucket=name, Key="a")[1] == "NoSuchBucket"


# -- objects ----------------------------------------------------------------------------------

def test_put_verifies_content_md5_and_checksums(s3c, bkt: str) -> None:  # noqa: ANN001
    body = os.urandom(100_000)
    bad_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert code_of(s3c.put_object, Bucket=bkt, Key="m", Body=body,
                   ContentMD5=bad_md5)[:2] == (400, "BadDigest")
    good_md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3c.put_object(Bucket=bkt, Key="m", Body=body, ContentMD5=good_md5)
    for algorithm in ("CRC32", "SHA1", "SHA256"):  # botocore computes these itself
        put = s3c.put_object(Bucket=bkt, Key=f"c-{algorithm}", Body=body,
                             ChecksumAlgorithm=algorithm)
        assert put[f"Checksum{algorithm}"] == checksum(algorithm, body)
        got = s3c.get_object(Bucket=bkt, Key=f"c-{algorithm}", ChecksumMode="ENABLED")
        assert got["Body"].read() == body
        assert got[f"Checksum{algorithm}"] == checksum(algorithm, body)
    # CRC32C needs awscrt in botocore: send the value, read it back with HEAD.
    s3c.put_object(Bucket=bkt, Key="c-CRC32C", Body=body,
                   ChecksumCRC32C=checksum("CRC32C", body))
    head = s3c.head_object(Bucket=bkt, Key="c-CRC32C", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == checksum("CRC32C", body)
    assert code_of(s3c.put_object, Bucket=bkt, Key="c-bad", Body=body,
                   ChecksumCRC32C=checksum("CRC32C", b"x"))[1] == "BadDigest"
    wrong = checksum("SHA256", b"not the body")
    assert code_of(s3c.put_object, Bucket=bkt, Key="bad", Body=body,
                   ChecksumSHA256=wrong)[:2] == (400, "BadDigest")
    assert code_of(s3c.head_object, Bucket=bkt, Key="bad")[0] == 404


def test_get_conditionals_ranges_overrides_and_stored_headers(s3c, bkt: str) -> None:  # noqa: ANN001
    body = os.urandom(300_000)
    etag = s3c.put_object(Bucket=bkt, Key="o", Body=body, CacheControl="max-age=60",
                          ContentType="image/png", ContentDisposition="inline",
                          Metadata={"who": "me"})["ETag"]
    head = s3c.head_object(Bucket=bkt, Key="o")
    assert (head["CacheControl"], head["ContentType"], head["ContentDisposition"],
            head["Metadata"]) == ("max-age=60", "image/png", "inline", {"who": "me"})
    assert s3c.get_object(Bucket=bkt, Key="o", Range="bytes=1000-1999")["Body"].read() == \
        body[1000:2000]
    assert s3c.get_object(Bucket=bkt, Key="o", IfMatch=etag)["Body"].read() == body
    assert code_of(s3c.get_object, Bucket=bkt, Key="o", IfMatch='"nope"')[0] == 412
    assert code_of(s3c.get_object, Bucket=bkt, Key="o", IfNoneMatch=etag)[0] == 304
    later = head["LastModified"] + timedelta(hours=1)
    earlier = head["LastModified"] - timedelta(hours=1)
    assert code_of(s3c.get_object, Bucket=bkt, Key="o", IfModifiedSince=later)[0] == 304
    assert code_of(s3c.get_object, Bucket=bkt, Key="o", IfUnmodifiedSince=earlier)[0] == 412
    got = s3c.get_object(Bucket=bkt, Key="o", ResponseContentType="text/plain",
                         ResponseContentDisposition="attachment; filename=x.bin",
                         ResponseCacheControl="no-cache")
    assert (got["ContentType"], got["ContentDisposition"], got["CacheControl"]) == (
        "text/plain", "attachment; filename=x.bin", "no-cache")


def test_copy_object_with_metadata_directive(s3c, bkt: str) -> None:  # noqa: ANN001
    body = os.urandom(400_000)
    s3c.put_object(Bucket=bkt, Key="src", Body=body, ContentType="text/x-a",
                   Metadata={"a": "1"}, Tagging="team=media")
    copied = s3c.copy_object(Bucket=bkt, Key="dst", CopySource={"Bucket": bkt, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    head = s3c.head_object(Bucket=bkt, Key="dst")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-a", {"a": "1"})
    assert s3c.get_object_tagging(Bucket=bkt, Key="dst")["TagSet"] == [
        {"Key": "team", "Value": "media"}]
    s3c.copy_object(Bucket=bkt, Key="dst2", CopySource=f"{bkt}/src",
                    MetadataDirective="REPLACE", ContentType="text/x-b", Metadata={"b": "2"})
    head = s3c.head_object(Bucket=bkt, Key="dst2")
    assert (head["ContentType"], head["Metadata"]) == ("text/x-b", {"b": "2"})
    assert s3c.get_object(Bucket=bkt, Key="dst2")["Body"].read() == body
    assert code_of(s3c.copy_object, Bucket=bkt, Key="src",
                   CopySource={"Bucket": bkt, "Key": "src"})[1] == "InvalidRequest"
    assert code_of(s3c.copy_object, Bucket=bkt, Key="x",
                   CopySource={"Bucket": bkt, "Key": "missing"})[1] == "NoSuchKey"


def test_tags_become_surrogate_keys(s3c, bkt: str) -> None:  # noqa: ANN001
    s3c.put_object(Bucket=bkt, Key="t", Body=b"x", Metadata={"surrogate-key": "page-1"})
    s3c.put_object_tagging(Bucket=bkt, Key="t", Tagging={"TagSet": [
        {"Key": "product", "Value": "42"}, {"Key": "team", "Value": "a b"}]})
    head = s3c.head_object(Bucket=bkt, Key="t")
    keys = head["ResponseMetadata"]["HTTPHeaders"]["surrogate-key"].split()
    assert keys[0] == "page-1" and sorted(keys[1:]) == ["product=42", "team=a%20b"]
    assert len(s3c.get_object_tagging(Bucket=bkt, Key="t")["TagSet"]) == 2
    s3c.delete_object_tagging(Bucket=bkt, Key="t")
    assert s3c.get_object_tagging(Bucket=bkt, Key="t")["TagSet"] == []


def test_delete_objects_batch(s3c, bkt: str) -> None:  # noqa: ANN001
    for i in range(5):
        s3c.put_object(Bucket=bkt, Key=f"d/{i}", Body=b"x")
    result = s3c.delete_objects(Bucket=bkt, Delete={"Objects": [
        {"Key": f"d/{i}"} for i in range(4)] + [{"Key": "never-existed"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == [
        "d/0", "d/1", "d/2", "d/3", "never-existed"]
    assert [o["Key"] for o in s3c.list_objects_v2(Bucket=bkt)["Contents"]] == ["d/4"]


# -- listings ---------------------------------------------------------------------------------

def test_listings_v1_v2(s3c, bkt: str) -> None:  # noqa: ANN001
    keys = ["a/1", "a/2", "b/1", "c", "d e/f", "z+%"]
    for key in keys:
        s3c.put_object(Bucket=bkt, Key=key, Body=b"x")
    v2 = s3c.list_objects_v2(Bucket=bkt, Delimiter="/")
    assert [p["Prefix"] for p in v2["CommonPrefixes"]] == ["a/", "b/", "d e/"]
    assert [o["Key"] for o in v2["Contents"]] == ["c", "z+%"]
    pages = s3c.get_paginator("list_objects_v2").paginate(Bucket=bkt,
                                                          PaginationConfig={"PageSize": 2})
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys
    assert [o["Key"] for o in s3c.list_objects_v2(Bucket=bkt, StartAfter="b/1")["Contents"]] \
        == ["c", "d e/f", "z+%"]
    assert [o["Key"] for o in s3c.list_objects_v2(Bucket=bkt, Prefix="a/")["Contents"]] == \
        ["a/1", "a/2"]
    v1 = s3c.list_objects(Bucket=bkt, Marker="a/2", MaxKeys=2)
    assert [o["Key"] for o in v1["Contents"]] == ["b/1", "c"] and v1["IsTruncated"]
    pages = s3c.get_paginator("list_objects").paginate(Bucket=bkt, Delimiter="/",
                                                       PaginationConfig={"PageSize": 2})
    seen = [(o.get("Key") or o.get("Prefix")) for p in pages
            for o in p.get("Contents", []) + p.get("CommonPrefixes", [])]
    assert sorted(seen) == ["a/", "b/", "c", "d e/", "z+%"]
    encoded = s3c.list_objects_v2(Bucket=bkt, EncodingType="url", Prefix="d e/")
    assert [o["Key"] for o in encoded["Contents"]] == ["d%20e/f"]
    s3c.delete_object(Bucket=bkt, Key="c")
    s3c.put_object(Bucket=bkt, Key="new", Body=b"x")
    now = [o["Key"] for o in s3c.list_objects_v2(Bucket=bkt)["Contents"]]
    assert "c" not in now and "new" in now  # strongly consistent


# -- multipart --------------------------------------------------------------------------------

def test_multipart_upload(cluster: Cluster, s3c, bkt: str) -> None:  # noqa: ANN001
    parts = {1: os.urandom(5 * MIB), 2: os.urandom(5 * MIB), 3: os.urandom(300_000)}
    upload = s3c.create_multipart_upload(Bucket=bkt, Key="big", ContentType="video/mp4",
                                         Metadata={"m": "v"})["UploadId"]
    assert [u["UploadId"] for u in s3c.list_multipart_uploads(Bucket=bkt)["Uploads"]] == \
        [upload]

    def put(number: int, data: bytes) -> str:
        return s3c.upload_part(Bucket=bkt, Key="big", UploadId=upload, PartNumber=number,
                               Body=data)["ETag"]

    s3c.upload_part(Bucket=bkt, Key="big", UploadId=upload, PartNumber=2, Body=b"replaced")
    with ThreadPoolExecutor(3) as pool:  # parallel, any order; part 2 is uploaded again
        etags = dict(zip([3, 2, 1], pool.map(put, [3, 2, 1], [parts[3], parts[2], parts[1]]),
                         strict=True))
    listed = s3c.list_parts(Bucket=bkt, Key="big", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [
        (1, 5 * MIB), (2, 5 * MIB), (3, 300_000)]
    wanted = [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]
    bad = [{**wanted[0], "ETag": '"00000000000000000000000000000000"'}, *wanted[1:]]
    assert code_of(s3c.complete_multipart_upload, Bucket=bkt, Key="big", UploadId=upload,
                   MultipartUpload={"Parts": bad})[1] == "InvalidPart"
    assert code_of(s3c.complete_multipart_upload, Bucket=bkt, Key="big", UploadId=upload,
                   MultipartUpload={"Parts": [wanted[1], wanted[0]]})[1] == "InvalidPartOrder"
    done = s3c.complete_multipart_upload(Bucket=bkt, Key="big", UploadId=upload,
                                         MultipartUpload={"Parts": wanted})
    md5s = b"".join(hashlib.md5(parts[n]).digest() for n in (1, 2, 3))
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    again = s3c.complete_multipart_upload(Bucket=bkt, Key="big", UploadId=upload,
                                          MultipartUpload={"Parts": wanted})
    assert again["ETag"] == done["ETag"]
    whole = parts[1] + parts[2] + parts[3]
    got = s3c.get_object(Bucket=bkt, Key="big")
    assert got["Body"].read() == whole and got["ContentType"] == "video/mp4"
    assert got["Metadata"] == {"m": "v"}
    span = s3c.get_object(Bucket=bkt, Key="big", Range=f"bytes={5 * MIB - 10}-{10 * MIB + 9}")
    assert span["Body"].read() == whole[5 * MIB - 10: 10 * MIB + 10]
    # Assembled without copying: the object has no fragments of its own, its parts do.
    row = sql(cluster, "SELECT id FROM objects WHERE bucket = $1 AND key = 'big' AND is_latest",
              bkt)[0]
    assert sql(cluster, "SELECT 1 FROM fragments WHERE object_id = $1", row["id"]) == []
    linked = sql(cluster, """SELECT p.part_number, count(f.*) AS fragments FROM object_parts p
                             JOIN fragments f ON f.object_id = p.part_object_id
                             WHERE p.object_id = $1 GROUP BY 1 ORDER BY 1""", row["id"])
    assert [r["part_number"] for r in linked] == [1, 2, 3]
    assert all(r["fragments"] >= 7 for r in linked)  # erasure-coded like any object
    assert s3c.list_multipart_uploads(Bucket=bkt).get("Uploads", []) == []


def test_multipart_abort_and_small_parts(s3c, bkt: str) -> None:  # noqa: ANN001
    upload = s3c.create_multipart_upload(Bucket=bkt, Key="a")["UploadId"]
    first = s3c.upload_part(Bucket=bkt, Key="a", UploadId=upload, PartNumber=1,
                            Body=b"small")["ETag"]
    last = s3c.upload_part(Bucket=bkt, Key="a", UploadId=upload, PartNumber=2,
                           Body=b"last")["ETag"]
    assert code_of(s3c.complete_multipart_upload, Bucket=bkt, Key="a", UploadId=upload,
                   MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first},
                                              {"PartNumber": 2, "ETag": last}]})[1] == \
        "EntityTooSmall"
    s3c.abort_multipart_upload(Bucket=bkt, Key="a", UploadId=upload)
    assert code_of(s3c.list_parts, Bucket=bkt, Key="a", UploadId=upload)[:2] == \
        (404, "NoSuchUpload")
    assert code_of(s3c.head_object, Bucket=bkt, Key="a")[0] == 404
    single = s3c.create_multipart_upload(Bucket=bkt, Key="one")["UploadId"]
    etag = s3c.upload_part(Bucket=bkt, Key="one", UploadId=single, PartNumber=1,
                           Body=b"only part")["ETag"]
    s3c.complete_multipart_upload(Bucket=bkt, Key="one", UploadId=single,
                                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3c.get_object(Bucket=bkt, Key="one")["Body"].read() == b"only part"


def test_boto3_managed_transfer_goes_multipart(s3c, bkt: str, tmp_path) -> None:  # noqa: ANN001
    from boto3.s3.transfer import TransferConfig

    data = os.urandom(11 * MIB)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3c.upload_file(str(path), bkt, "managed", Config=config)
    assert s3c.head_object(Bucket=bkt, Key="managed")["ETag"].endswith('-3"')
    out = tmp_path / "out.bin"
    s3c.download_file(bkt, "managed", str(out), Config=config)
    assert out.read_bytes() == data
    s3c.copy({"Bucket": bkt, "Key": "managed"}, bkt, "copied", Config=config)  # part copies
    assert s3c.get_object(Bucket=bkt, Key="copied")["Body"].read() == data


# -- versioning -------------------------------------------------------------------------------

def test_versioning(s3c, bkt: str) -> None:  # noqa: ANN001
    assert "Status" not in s3c.get_bucket_versioning(Bucket=bkt)
    s3c.put_object(Bucket=bkt, Key="k", Body=b"before")  # the 'null' version
    s3c.put_bucket_versioning(Bucket=bkt, VersioningConfiguration={"Status": "Enabled"})
    assert s3c.get_bucket_versioning(Bucket=bkt)["Status"] == "Enabled"
    v1 = s3c.put_object(Bucket=bkt, Key="k", Body=b"one")["VersionId"]
    v2 = s3c.put_object(Bucket=bkt, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2
    assert s3c.get_object(Bucket=bkt, Key="k")["Body"].read() == b"two"
    assert s3c.get_object(Bucket=bkt, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert s3c.get_object(Bucket=bkt, Key="k", VersionId="null")["Body"].read() == b"before"
    assert s3c.head_object(Bucket=bkt, Key="k", VersionId=v1)["ContentLength"] == 3
    marker = s3c.delete_object(Bucket=bkt, Key="k")
    assert marker["DeleteMarker"] is True
    status, code, response = code_of(s3c.get_object, Bucket=bkt, Key="k")
    assert (status, code) == (404, "NoSuchKey")
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    assert s3c.list_objects_v2(Bucket=bkt).get("Contents", []) == []
    listing = s3c.list_object_versions(Bucket=bkt)
    assert [v["VersionId"] for v in listing["Versions"]] == [v2, v1, "null"]
    assert [(m["VersionId"], m["IsLatest"]) for m in listing["DeleteMarkers"]] == [
        (marker["VersionId"], True)]
    paged = s3c.get_paginator("list_object_versions").paginate(
        Bucket=bkt, PaginationConfig={"PageSize": 1})
    assert sum(len(p.get("Versions", [])) + len(p.get("DeleteMarkers", [])) for p in paged) == 4
    s3c.delete_object(Bucket=bkt, Key="k", VersionId=marker["VersionId"])  # undelete
    assert s3c.get_object(Bucket=bkt, Key="k")["Body"].read() == b"two"
    s3c.delete_object(Bucket=bkt, Key="k", VersionId=v2)
    assert s3c.get_object(Bucket=bkt, Key="k")["Body"].read() == b"one"
    assert code_of(s3c.get_object, Bucket=bkt, Key="k", VersionId=v2)[1] == "NoSuchVersion"
    s3c.put_bucket_versioning(Bucket=bkt, VersioningConfiguration={"Status": "Suspended"})
    suspended = s3c.put_object(Bucket=bkt, Key="k", Body=b"null again")
    assert suspended.get("VersionId") in (None, "null")
    versions = s3c.list_object_versions(Bucket=bkt)["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted([v1, "null"])
    assert s3c.get_object(Bucket=bkt, Key="k", VersionId="null")["Body"].read() == b"null again"


# -- lifecycle --------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _lifecycle_pass(cluster: Cluster, clock: FakeClock):  # noqa: ANN202
    async def run():  # noqa: ANN202
        pool = await db.create_pool(cluster.database_url, max_size=2)
        try:
            return await LifecycleWorker(pool, clock=clock).run_once()
        finally:
            await pool.close()

    return asyncio.run(run())


def test_lifecycle_rules_run_by_the_worker(cluster: Cluster, s3c, bkt: str) -> None:  # noqa: ANN001
    rules = [
        {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
         "Expiration": {"Days": 30}},
        {"ID": "tagged", "Status": "Enabled",
         "Filter": {"Tag": {"Key": "temp", "Value": "yes"}}, "Expiration": {"Days": 1}},
        {"ID": "uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
        {"ID": "cold", "Status": "Enabled", "Filter": {"Prefix": "media/"},
         "Transitions": [{"Days": 10, "StorageClass": "REPLICATED"}]},
    ]
    s3c.put_bucket_lifecycle_configuration(Bucket=bkt, LifecycleConfiguration={"Rules": rules})
    stored = s3c.get_bucket_lifecycle_configuration(Bucket=bkt)["Rules"]
    assert [r["ID"] for r in stored] == ["logs", "tagged", "uploads", "cold"]
    s3c.put_object(Bucket=bkt, Key="logs/old", Body=b"x")
    s3c.put_object(Bucket=bkt, Key="keep", Body=b"x")
    s3c.put_object(Bucket=bkt, Key="tmp", Body=b"x", Tagging="temp=yes")
    s3c.put_object(Bucket=bkt, Key="media/clip", Body=b"x")
    upload = s3c.create_multipart_upload(Bucket=bkt, Key="half")["UploadId"]
    s3c.upload_part(Bucket=bkt, Key="half", UploadId=upload, PartNumber=1, Body=b"p")
    clock = FakeClock()
    stats = _lifecycle_pass(cluster, clock)
    assert (stats.expired, stats.uploads_aborted, stats.transitioned) == (0, 0, 0)
    clock.advance(days=3)
    stats = _lifecycle_pass(cluster, clock)
    assert (stats.expired, stats.uploads_aborted) == (1, 1)
    assert code_of(s3c.list_parts, Bucket=bkt, Key="half", UploadId=upload)[1] == "NoSuchUpload"
    clock.advance(days=28)
    stats = _lifecycle_pass(cluster, clock)
    assert (stats.expired, stats.transitioned) == (1, 1)
    left = [o["Key"] for o in s3c.list_objects_v2(Bucket=bkt)["Contents"]]
    assert left == ["keep", "media/clip"]
    row = sql(cluster, """SELECT lifecycle_storage_class FROM objects WHERE bucket = $1
                          AND key = 'media/clip'""", bkt)[0]
    assert row["lifecycle_storage_class"] == "REPLICATED"
    s3c.delete_bucket_lifecycle(Bucket=bkt)
    assert code_of(s3c.get_bucket_lifecycle_configuration, Bucket=bkt)[1] == \
        "NoSuchLifecycleConfiguration"


def test_lifecycle_noncurrent_versions(cluster: Cluster, s3c, bkt: str) -> None:  # noqa: ANN001
    s3c.put_bucket_versioning(Bucket=bkt, VersioningConfiguration={"Status": "Enabled"})
    s3c.put_bucket_lifecycle_configuration(Bucket=bkt, LifecycleConfiguration={"Rules": [
        {"ID": "old-versions", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 7}},
        {"ID": "markers", "Status": "Enabled", "Filter": {"Prefix": ""},
         "Expiration": {"ExpiredObjectDeleteMarker": True}}]})
    s3c.put_object(Bucket=bkt, Key="doc", Body=b"1")
    s3c.put_object(Bucket=bkt, Key="doc", Body=b"2")
    s3c.put_object(Bucket=bkt, Key="gone", Body=b"1")
    s3c.delete_object(Bucket=bkt, Key="gone")
    clock = FakeClock()
    clock.advance(days=8)
    stats = _lifecycle_pass(cluster, clock)
    # The old versions go, then the marker of "gone" hides nothing any more and goes too.
    assert (stats.noncurrent_expired, stats.delete_markers_removed) == (2, 1)
    versions = s3c.list_object_versions(Bucket=bkt)
    assert [v["Key"] for v in versions["Versions"]] == ["doc"]
    assert "DeleteMarkers" not in versions


# -- storage classes --------------------------------------------------------------------------

def _scheme(cluster: Cluster, bucket: str, key: str) -> tuple[str, int, int, str]:
    row = sql(cluster, """SELECT ec_type, ec_ndata, ec_nparity, storage_class FROM objects
                          WHERE bucket = $1 AND key = $2 AND is_latest""", bucket, key)[0]
    return row["ec_type"], row["ec_ndata"], row["ec_nparity"], row["storage_class"]


def test_storage_class_is_reported_and_copy_changes_it(cluster: Cluster, s3c, bkt: str) -> None:  # noqa: ANN001
    body = os.urandom(300_000)
    s3c.put_object(Bucket=bkt, Key="hot", Body=body)
    s3c.put_object(Bucket=bkt, Key="rep", Body=body, StorageClass="REPLICATED")
    assert "StorageClass" not in s3c.head_object(Bucket=bkt, Key="hot")  # STANDARD: absent
    assert s3c.head_object(Bucket=bkt, Key="rep")["StorageClass"] == "REPLICATED"
    assert s3c.get_object(Bucket=bkt, Key="rep")["StorageClass"] == "REPLICATED"
    listed = {o["Key"]: o["StorageClass"] for o in s3c.list_objects_v2(Bucket=bkt)["Contents"]}
    assert listed == {"hot": "STANDARD", "rep": "REPLICATED"}
    assert {o["Key"]: o["StorageClass"] for o in s3c.list_objects(Bucket=bkt)["Contents"]} \
        == listed
    versions = s3c.list_object_versions(Bucket=bkt)["Versions"]
    assert {v["Key"]: v["StorageClass"] for v in versions} == listed

    # CopyObject onto itself with another class is legal and moves the data (S3 semantics).
    s3c.copy_object(Bucket=bkt, Key="hot", CopySource={"Bucket": bkt, "Key": "hot"},
                    StorageClass="COLD")
    assert s3c.head_object(Bucket=bkt, Key="hot")["StorageClass"] == "COLD"
    assert _scheme(cluster, bkt, "hot")[1:] == (4, 2, "COLD")
    assert s3c.get_object(Bucket=bkt, Key="hot")["Body"].read() == body
    # Without the header a copy is STANDARD, whatever its source's class.
    s3c.copy_object(Bucket=bkt, Key="copy", CopySource={"Bucket": bkt, "Key": "rep"})
    assert "StorageClass" not in s3c.head_object(Bucket=bkt, Key="copy")
    assert _scheme(cluster, bkt, "copy") == ("isa_l_rs_cauchy", 6, 3, "STANDARD")
    status, code, _ = code_of(s3c.copy_object, Bucket=bkt, Key="rep", StorageClass="REPLICATED",
                              CopySource={"Bucket": bkt, "Key": "rep"})
    assert (status, code) == (400, "InvalidRequest")
    assert code_of(s3c.put_object, Bucket=bkt, Key="x", Body=b"x",
                   StorageClass="GLACIER")[1] == "InvalidStorageClass"

    # Multipart: the class given at initiation applies to the parts and the object.
    upload = s3c.create_multipart_upload(Bucket=bkt, Key="mp", StorageClass="REPLICATED")
    uid = upload["UploadId"]
    part = s3c.upload_part(Bucket=bkt, Key="mp", UploadId=uid, PartNumber=1, Body=body)
    assert s3c.list_parts(Bucket=bkt, Key="mp", UploadId=uid)["StorageClass"] == "REPLICATED"
    assert [u["StorageClass"] for u in s3c.list_multipart_uploads(Bucket=bkt)["Uploads"]] == \
        ["REPLICATED"]
    s3c.complete_multipart_upload(Bucket=bkt, Key="mp", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3c.head_object(Bucket=bkt, Key="mp")["StorageClass"] == "REPLICATED"
    parts = sql(cluster, """SELECT o.ec_type FROM object_parts p JOIN objects o
                            ON o.id = p.part_object_id JOIN objects m ON m.id = p.object_id
                            WHERE m.bucket = $1 AND m.key = 'mp'""", bkt)
    assert [p["ec_type"] for p in parts] == ["replicated"]


def test_rotated_secret_works_at_once_and_the_old_one_stops(cluster: Cluster, s3c,  # noqa: ANN001
                                                             bkt: str) -> None:
    """The origin reuses credential rows for a couple of seconds; a signature that does not
    match a reused secret is checked again against the stored one."""
    from origin.metadata.credentials import upsert_credential
    from origin.metadata.models import Credential

    user = f"u-{uuid.uuid4().hex[:8]}"

    def store(secret: str) -> None:
        async def run() -> None:
            pool = await db.create_pool(cluster.database_url, max_size=1)
            try:
                await upsert_credential(pool, Credential(user, secret, "admin"))
            finally:
                await pool.close()
        asyncio.run(run())

    store("first-secret-0123456789")
    old = make_client(cluster.endpoint, user, "first-secret-0123456789")
    old.put_object(Bucket=bkt, Key="k", Body=b"1")  # now cached by the origin
    store("second-secret-0123456789")
    new = make_client(cluster.endpoint, user, "second-secret-0123456789")
    assert new.get_object(Bucket=bkt, Key="k")["Body"].read() == b"1"
    assert code_of(old.get_object, Bucket=bkt, Key="k")[1] == "SignatureDoesNotMatch"
