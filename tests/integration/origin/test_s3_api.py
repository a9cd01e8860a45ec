"""S3 API behaviour of the origin process: buckets, listing, errors, auth, digests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET

import aiohttp
import pytest

from origin import sigv4
from origin.client import S3Client, S3ClientError
from tests.integration.origin.conftest import ACCESS_KEY, SECRET_KEY, Cluster


async def _error(call) -> S3ClientError:  # noqa: ANN001
    with pytest.raises(S3ClientError) as err:
        await call
    return err.value


async def test_error_documents_are_s3_xml_with_request_ids(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as anon:
        async with anon.get(cluster.endpoint + "/no-such-bucket-here/key") as resp:
            body = await resp.read()
            assert resp.status == 404  # as S3: bucket names are no secret
            assert resp.headers["Content-Type"].startswith("application/xml")
            root = ET.fromstring(body)
            assert root.tag == "Error"
            assert root.findtext("Code") == "NoSuchBucket"
            assert root.findtext("Resource") == "/no-such-bucket-here/key"
            assert root.findtext("RequestId") == resp.headers["x-amz-request-id"]


async def test_bucket_errors(s3: S3Client, bucket: str) -> None:
    err = await _error(s3.get_object("no-such-bucket-xyz", "k"))
    assert (err.status, err.code) == (404, "NoSuchBucket")
    err = await _error(s3.get_object(bucket, "missing"))
    assert (err.status, err.code) == (404, "NoSuchKey")
    err = await _error(s3.create_bucket("Bad_Name"))
    assert (err.status, err.code) == (400, "InvalidBucketName")
    err = await _error(s3.create_bucket("ab"))
    assert err.code == "InvalidBucketName"
    err = await _error(s3.put_object(bucket, "k" * 1025, b"x"))
    assert (err.status, err.code) == (400, "KeyTooLongError")


async def test_bucket_lifecycle(s3: S3Client) -> None:
    await s3.create_bucket("lifecycle-bucket")
    await s3.create_bucket("lifecycle-bucket")  # re-creating one's own bucket is fine
    assert "lifecycle-bucket" in await s3.list_buckets()
    await s3.put_object("lifecycle-bucket", "a", b"1")
    err = await _error(s3.delete_bucket("lifecycle-bucket"))
    assert (err.status, err.code) == (409, "BucketNotEmpty")
    await s3.delete_object("lifecycle-bucket", "a")
    await s3.delete_object("lifecycle-bucket", "a")  # deleting a missing key is a 204 too
    await s3.delete_bucket("lifecycle-bucket")
    async with await s3.request("HEAD", "lifecycle-bucket") as resp:
        assert resp.status == 404
    assert "lifecycle-bucket" not in await s3.list_buckets()


async def test_overwrite_replaces_the_object(s3: S3Client, bucket: str) -> None:
    await s3.put_object(bucket, "k", b"first version", surrogate_keys=["v1"])
    await s3.put_object(bucket, "k", b"second", content_type="text/plain")
    assert await s3.get_object(bucket, "k") == b"second"
    info = await s3.head_object(bucket, "k")
    assert info.surrogate_keys == () and info.content_type == "text/plain"
    keys, _ = await s3.list_objects(bucket)
    assert keys == ["k"]


async def test_list_objects_v2(s3: S3Client, bucket: str) -> None:
    keys = ["a.txt", "b/1", "b/2", "b/c/3", "c", "d/4", "é/5"]
    await asyncio.gather(*(s3.put_object(bucket, k, k.encode()) for k in keys))
    assert (await s3.list_objects(bucket))[0] == keys
    assert (await s3.list_objects(bucket, max_keys=2))[0] == keys  # follows continuation
    listed, prefixes = await s3.list_objects(bucket, delimiter="/")
    assert listed == ["a.txt", "c"] and prefixes == ["b/", "d/", "é/"]
    listed, prefixes = await s3.list_objects(bucket, delimiter="/", max_keys=1)
    assert listed == ["a.txt", "c"] and prefixes == ["b/", "d/", "é/"]
    listed, prefixes = await s3.list_objects(bucket, prefix="b/", delimiter="/")
    assert listed == ["b/1", "b/2"] and prefixes == ["b/c/"]
    async with await s3.request("GET", bucket, query=[("list-type", "2"), ("max-keys", "3"),
                                                      ("encoding-type", "url")]) as resp:
        root = ET.fromstring(await resp.read())
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    assert root.findtext(f"{ns}KeyCount") == "3"
    assert root.findtext(f"{ns}IsTruncated") == "true"
    contents = root.findall(f"{ns}Contents")
    assert contents[0].findtext(f"{ns}ETag") == f'"{hashlib.md5(b"a.txt").hexdigest()}"'
    assert contents[0].findtext(f"{ns}Size") == "5"


async def test_bad_credentials_are_rejected(cluster: Cluster, bucket: str) -> None:
    async with S3Client(cluster.endpoint, ACCESS_KEY, "wrong-secret") as bad:
        err = await _error(bad.get_object(bucket, "k"))
        assert (err.status, err.code) == (403, "SignatureDoesNotMatch")
    async with S3Client(cluster.endpoint, "no-such-key", SECRET_KEY) as bad:
        err = await _error(bad.list_buckets())
        assert (err.status, err.code) == (403, "InvalidAccessKeyId")
    async with S3Client(cluster.endpoint, ACCESS_KEY, SECRET_KEY, region="eu-west-1") as bad:
        err = await _error(bad.list_buckets())
        assert (err.status, err.code) == (400, "AuthorizationHeaderMalformed")


async def test_digests_are_verified_before_anything_is_committed(
    s3: S3Client, bucket: str
) -> None:
    body = b"payload"
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    err = await _error(s3._call("PUT", bucket, "md5", headers={"Content-MD5": wrong_md5},
                                data=body))
    assert (err.status, err.code) == (400, "BadDigest")
    err = await _error(s3._call("PUT", bucket, "md5", headers={"Content-MD5": "nope"},
                                data=body))
    assert err.code == "InvalidDigest"
    good_md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    await s3._call("PUT", bucket, "md5-ok", headers={"Content-MD5": good_md5}, data=body)
    # A body that differs from the signed x-amz-content-sha256.
    headers = s3._signed_headers("PUT", f"/{bucket}/sha", [], {},
                                 hashlib.sha256(b"something else").hexdigest())
    async with aiohttp.ClientSession() as raw:
        async with raw.put(f"{s3.endpoint}/{bucket}/sha", data=body, headers=headers) as resp:
            assert resp.status == 400
            assert b"XAmzContentSHA256Mismatch" in await resp.read()
    for key in ("md5", "sha"):
        err = await _error(s3.head_object(bucket, key))
        assert err.status == 404
    assert await s3.get_object(bucket, "md5-ok") == body


async def test_entity_too_large_is_refused_before_reading_the_body(
    s3: S3Client, bucket: str
) -> None:
    headers = s3._signed_headers("PUT", f"/{bucket}/huge", [],
                                 {"Content-Length": str(6 << 30)}, sigv4.UNSIGNED_PAYLOAD)
    reader, writer = await asyncio.open_connection(s3.endpoint.host, s3.endpoint.port)
    lines = [f"PUT /{bucket}/huge HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + b"x" * 1000)
    await writer.drain()
    status_line = await reader.readline()
    response = await reader.read(4096)
    writer.close()
    assert b" 400 " in status_line
    assert b"EntityTooLarge" in response


async def test_presigned_urls(s3: S3Client, bucket: str) -> None:
    await s3.put_object(bucket, "shared file.txt", b"shared")
    url = s3.presign_url("GET", bucket, "shared file.txt", expires=60)
    async with aiohttp.ClientSession() as anon:
        async with anon.get(aiohttp.client.URL(url, encoded=True)) as resp:
            assert resp.status == 200 and await resp.read() == b"shared"
        tampered = url.replace("shared%20file.txt", "other.txt")
        async with anon.get(aiohttp.client.URL(tampered, encoded=True)) as resp:
            assert resp.status in (403, 404)
            assert b"SignatureDoesNotMatch" in await resp.read()


async def test_keys_with_special_characters(s3: S3Client, bucket: str) -> None:
    for key in ["a b+c", "ü/ñ?x=1&y", "dir//double", "dots/../x", "~tilde!$'()*,;=:@"]:
        await s3.put_object(bucket, key, key.encode())
        assert await s3.get_object(bucket, key) == key.encode(), key
    keys, _ = await s3.list_objects(bucket)
    assert "dots/../x" in keys and "dir//double" in keys


async def test_method_not_allowed(s3: S3Client, bucket: str) -> None:
    err = await _error(s3._call("POST", bucket, "k", data=b""))
    assert (err.status, err.code) == (405, "MethodNotAllowed")


async def test_response_overrides_and_unsupported_subresources(s3: S3Client, bucket: str) -> None:
    await s3.put_object(bucket, "doc", b"{}", content_type="text/plain")
    async with await s3.request("GET", bucket, "doc", query=[
            ("response-content-type", "application/json"),
            ("response-content-disposition", "attachment")]) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["Content-Disposition"] == "attachment"
    err = await _error(s3._call("GET", bucket, "doc", query=[("acl", "")]))
    assert (err.status, err.code) == (501, "NotImplemented")
    err = await _error(s3._call("PUT", bucket, "doc", query=[("uploadId", "x"),
                                                              ("partNumber", "1")], data=b""))
    assert (err.status, err.code) == (404, "NoSuchUpload")
