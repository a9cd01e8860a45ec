"""A storage node's disk identity: which disk its data dir is, and where its volume numbers
start.

``{data_dir}/disk-identity.json`` holds ``{"disk_id", "volume_base", "created"}``: a random
UUID chosen the first time the node starts on that data dir, and the first volume number the
disk may use. The metadata's fragment rows say only ``(node, volume, offset)``; the identity
is what lets the origin tell the disk those rows were written to from a replacement (the node
reports it in every heartbeat, ``registration.py``), and the numbering below is what keeps the
replacement's volumes from answering for the old disk's rows meanwhile.

Volume numbers: a volume's number is never larger than the whole seconds elapsed since
``VOLUME_EPOCH`` (2024-01-01 UTC) when it was started (``VolumeSet`` keeps appending past
``volume_max_bytes`` rather than start a number early, and a seal waits for it: ≤ 1 s), and a
fresh disk starts at the next whole second after its first start (it waits for that second,
once in its life). Every number a previous disk of the node started was due before that, so
the replacement's numbers are all larger: disjoint, with no need to know the old disk. Rows
of the old disk then point at volumes the new one does not have, and the origin treats every
row of the node below the new disk's ``volume_base`` as missing (``metadata/node_disks.py``).

Why a clock and not the origin: the node must number its first volume before it may be able
to reach the metadata store (it serves fragments without it, and nodes listed statically in
an origin's ``--nodes`` may have no ``--database-url``), and the metadata's own view lags
the old disk (``volumes`` is memoised per origin process, and a PUT in flight to the old disk
can commit its rows after the new disk registered) — numbers bounded by the old disk's clock
are not. What it costs: at most one new volume per second on average since the disk's first
volume (with 1 GiB volumes, far beyond any disk's write rate), and it assumes the wall clock
is not set back across a disk replacement (NTP). Seconds fit the metadata's ``integer``
volume columns (int4) until 2092. A disk whose data dir predates identities keeps the numbers
it has (from 1, far below the clock) and gets ``volume_base`` = its lowest volume.

The file is written the durable way (temporary file, fsync, rename, fsync of the directory):
a node that lost its identity in a crash would otherwise look like a replaced disk.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

IDENTITY_FILE = "disk-identity.json"
VOLUME_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
INT4_MAX = 2**31 - 1  # the metadata's volume columns are ``integer``


class DiskIdentityError(Exception):
    """The identity file is unreadable or invalid, or the clock cannot number volumes. The
    node refuses to start: making up a new identity for a disk that has one would look like
    a disk replacement to the origin."""


@dataclass(frozen=True)
class DiskIdentity:
    disk_id: str
    volume_base: int
    created: float  # unix seconds of the first start on this data dir


def volume_clock(now: float) -> int:
    """The largest volume number that may have been started by ``now`` (unix seconds)."""
    return math.floor(now - VOLUME_EPOCH)


def seconds_until_number(number: int, now: float) -> float:
    """How long until volume ``number`` may be started (0.0: now)."""
    return max(0.0, VOLUME_EPOCH + number - now)


def load_or_create(data_path: Path, existing_volumes: Collection[int], *,
                   now: Callable[[], float] = time.time,
                   sleep: Callable[[float], None] = time.sleep) -> DiskIdentity:
    """The identity of the disk at ``data_path``, created (durably) on its first start.

    ``existing_volumes``: the volume numbers already on the disk; when there is no identity
    yet but volumes exist (a data dir from before identities), they are kept and the base is
    the lowest of them. Otherwise the disk is fresh: its base is the next whole second of
    ``volume_clock``, waited for (≤ 1 s) so that no earlier disk can have started it."""
    path = data_path / IDENTITY_FILE
    if path.exists():
        return _read(path)
    if existing_volumes:
        base = min(existing_volumes)
    else:
        base = volume_clock(now()) + 1
        sleep(seconds_until_number(base, now()))
        if volume_clock(now()) < base:
            raise DiskIdentityError(f"the clock did not reach volume number {base} "
                                    f"(now {now():.3f})")
    if not 0 < base <= INT4_MAX:
        raise DiskIdentityError(f"volume base {base} is outside 1..{INT4_MAX} "
                                f"(clock {now():.0f}, epoch {VOLUME_EPOCH})")
    identity = DiskIdentity(str(uuid.uuid4()), base, now())
    write(data_path, identity)
    return identity


def _read(path: Path) -> DiskIdentity:
    try:
        raw = json.loads(path.read_text())
        identity = DiskIdentity(str(uuid.UUID(raw["disk_id"])), int(raw["volume_base"]),
                                float(raw["created"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DiskIdentityError(f"{path}: unreadable disk identity ({exc!r}); fix or remove "
                                "it (removing it makes the origin treat this disk as new)"
                                ) from exc
    if not 0 < identity.volume_base <= INT4_MAX:
        raise DiskIdentityError(f"{path}: volume_base {identity.volume_base} outside "
                                f"1..{INT4_MAX}")
    return identity


def write(data_path: Path, identity: DiskIdentity) -> None:
    """Persist ``identity`` atomically and durably: temporary file, fsync, rename, fsync of
    the directory (and of its parent when the data dir itself was just created)."""
    body = json.dumps({"disk_id": identity.disk_id, "volume_base": identity.volume_base,
                       "created": identity.created})
    tmp = data_path / f".{IDENTITY_FILE}.tmp"
    try:
        created_dir = not data_path.exists()
        data_path.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, data_path / IDENTITY_FILE)
        _fsync_dir(data_path)
        if created_dir:
            _fsync_dir(data_path.parent)
    except OSError as exc:
        raise DiskIdentityError(f"{data_path}: cannot write the disk identity: {exc}") from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
