"""``cdn user create NAME [--data-dir DIR] [--database-url URL]``: make an S3 credential.

Prints ``{"access_key": …, "secret_key": …}`` (JSON, for scripts). The user NAME owns the
buckets it creates; several credentials may act for one user. The database is found from
``--database-url``, else ``$CDN_DATABASE_URL``, else ``database_url`` in
``DIR/topology.json`` (written by ``cdn up``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import string
import sys
from collections.abc import Sequence

from cdn import locate
from origin.metadata import db
from origin.metadata.credentials import upsert_credential
from origin.metadata.models import Credential

_KEY_ALPHABET = string.ascii_uppercase + string.digits


def new_credential(owner: str) -> Credential:
    """An AWS-shaped key pair: 20-character access key, 40-character secret."""
    access = "CDN" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17))
    secret = secrets.token_urlsafe(30)[:40]
    return Credential(access, secret, owner)


def find_database_url(database_url: str | None, data_dir: str | None) -> str:
    return locate.find_database_url("cdn user", database_url, data_dir)


async def create_user(database_url: str, name: str) -> Credential:
    pool = await db.create_pool(database_url, max_size=1)
    try:
        await db.migrate(pool)
        credential = new_credential(name)
        await upsert_credential(pool, credential)
        return credential
    finally:
        await pool.close()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="cdn user")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a user's access key and secret")
    create.add_argument("name", help="the user (owner of the buckets it creates)")
    create.add_argument("--data-dir", default=os.environ.get("CDN_DATA_DIR", ".cdn-data"))
    create.add_argument("--database-url")
    args = parser.parse_args(list(argv))
    if not args.name or args.name == "admin":
        parser.error("NAME must be non-empty and not 'admin'")
    url = find_database_url(args.database_url, args.data_dir)
    credential = asyncio.run(create_user(url, args.name))
    json.dump({"access_key": credential.access_key, "secret_key": credential.secret_key},
              sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
