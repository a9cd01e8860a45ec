"""Disk identities for tests that run a storage node in-process on a fresh directory."""

from __future__ import annotations

import uuid
from pathlib import Path

from origin.storagenode import identity


def numbered_from_one(data_dir: Path) -> identity.DiskIdentity:
    """Give ``data_dir`` a disk identity whose volumes number from 1, as a data dir from
    before disk identities gets, so tests that name volume 1, or roll volumes over several
    times a second, keep doing so (a fresh disk numbers its volumes by the clock and starts
    at most one a second: ``origin/storagenode/identity.py``)."""
    disk = identity.DiskIdentity(str(uuid.uuid4()), 1, 0.0)
    identity.write(data_dir, disk)
    return disk
