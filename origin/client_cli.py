"""``cdn put`` / ``cdn get`` / ``cdn mb``: the origin client from the shell.

    cdn put FILE s3://bucket/key   (or bucket/key)  [--content-type T] [--cache-control C]
                                                    [--surrogate-key K ...] [--meta k=v ...]
    cdn get bucket/key [FILE]      (stdout when FILE is omitted or "-")
    cdn mb bucket [--public]

Endpoint and credentials come from ``--endpoint/--access-key/--secret-key`` or the environment
(``CDN_ENDPOINT``, ``CDN_ACCESS_KEY``, ``CDN_SECRET_KEY``), defaulting to the local origin and
its admin key, so ``cdn up`` followed by ``cdn put`` works with no flags.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from origin.client import S3Client, S3ClientError

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"
CHUNK = 1 << 20


def parse_object_url(value: str) -> tuple[str, str]:
    """``s3://bucket/key`` or ``bucket/key`` → ``(bucket, key)``."""
    text = value[len("s3://"):] if value.startswith("s3://") else value
    bucket, sep, key = text.partition("/")
    if not bucket or not sep or not key:
        raise ValueError(f"{value!r} is not bucket/key or s3://bucket/key")
    return bucket, key


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"cdn {command}")
    parser.add_argument("--endpoint", default=os.environ.get("CDN_ENDPOINT", DEFAULT_ENDPOINT))
    parser.add_argument("--access-key", default=os.environ.get("CDN_ACCESS_KEY", "cdnadmin"))
    parser.add_argument("--secret-key",
                        default=os.environ.get("CDN_SECRET_KEY", "cdnadmin-secret-key"))
    parser.add_argument("--region", default=os.environ.get("CDN_REGION", "us-east-1"))
    if command == "put":
        parser.add_argument("file", help="local file to upload ('-' for stdin)")
        parser.add_argument("target", help="s3://bucket/key or bucket/key")
        parser.add_argument("--content-type")
        parser.add_argument("--cache-control")
        parser.add_argument("--surrogate-key", action="append", default=[],
                            help="tag for purges (repeatable)")
        parser.add_argument("--meta", action="append", default=[], metavar="NAME=VALUE",
                            help="x-amz-meta-NAME header (repeatable)")
    elif command == "get":
        parser.add_argument("source", help="s3://bucket/key or bucket/key")
        parser.add_argument("file", nargs="?", default="-", help="output file (default stdout)")
    elif command == "mb":
        parser.add_argument("bucket")
        parser.add_argument("--public", action="store_true",
                            help="anonymous GET/HEAD allowed (x-amz-acl: public-read)")
    return parser


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    with path.open("rb") as fh:
        while chunk := await loop.run_in_executor(None, fh.read, CHUNK):
            yield chunk


async def _put(s3: S3Client, args: argparse.Namespace) -> str:
    bucket, key = parse_object_url(args.target)
    meta = dict(item.partition("=")[::2] for item in args.meta)
    content_type = args.content_type
    if args.file == "-":
        data: bytes | AsyncIterator[bytes] = sys.stdin.buffer.read()
        length = None
    else:
        path = Path(args.file)
        length = (await asyncio.to_thread(path.stat)).st_size
        data = _file_chunks(path)
        content_type = content_type or mimetypes.guess_type(path.name)[0]
    etag = await s3.put_object(bucket, key, data, content_type=content_type,
                               cache_control=args.cache_control,
                               surrogate_keys=args.surrogate_key, metadata=meta,
                               content_length=length)
    return f"{bucket}/{key} etag={etag}"


async def _get(s3: S3Client, args: argparse.Namespace) -> str | None:
    bucket, key = parse_object_url(args.source)
    if args.file == "-":
        out = sys.stdout.buffer
    else:
        out = await asyncio.to_thread(open, args.file, "wb")
    try:
        async for chunk in s3.iter_object(bucket, key):
            out.write(chunk)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    return None if args.file == "-" else f"{bucket}/{key} -> {args.file}"


async def _run(command: str, args: argparse.Namespace) -> str | None:
    async with S3Client(args.endpoint, args.access_key, args.secret_key,
                        region=args.region) as s3:
        if command == "put":
            return await _put(s3, args)
        if command == "get":
            return await _get(s3, args)
        await s3.create_bucket(args.bucket, public=args.public)
        return f"bucket {args.bucket} ready" + (" (public-read)" if args.public else "")


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in ("put", "get", "mb"):
        print("usage: cdn {put,get,mb} ...", file=sys.stderr)
        return 2
    command = argv[0]
    args = _parser(command).parse_args(list(argv[1:]))
    try:
        message = asyncio.run(_run(command, args))
    except ValueError as exc:
        print(f"cdn {command}: {exc}", file=sys.stderr)
        return 2
    except S3ClientError as exc:
        print(f"cdn {command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cdn {command}: {exc}", file=sys.stderr)
        return 1
    if message:
        print(message, file=sys.stderr)
    return 0
