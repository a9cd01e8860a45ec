"""Find the running topology's services for command-line tools.

Operators run ``cdn user``, ``cdn fsck``, ``cdn repair`` next to a ``cdn up``; they should not
have to copy URLs around. A flag wins, then the environment, then ``topology.json`` in the
data directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_DATA_DIR = ".cdn-data"


class LocateError(SystemExit):
    """Nothing says where the service is; the message tells the operator what to pass."""


def find_database_url(prog: str, database_url: str | None, data_dir: str | None) -> str:
    if database_url:
        return database_url
    if os.environ.get("CDN_DATABASE_URL"):
        return os.environ["CDN_DATABASE_URL"]
    topology = Path(data_dir or DEFAULT_DATA_DIR) / "topology.json"
    if topology.is_file():
        url = json.loads(topology.read_text()).get("database_url")
        if url:
            return str(url)
    raise LocateError(f"{prog}: no database URL: pass --database-url, set CDN_DATABASE_URL, "
                      f"or --data-dir of a running `cdn up` (looked in {topology})")
