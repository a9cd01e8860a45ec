"""Bytes on disk per byte written, by object size and storage strategy.

Each object is encoded exactly as the origin stores it (pyeclib ``isa_l_rs_cauchy`` 6+3 with
1 MiB segments, or ``m + 1 = 4`` replicas) and appended to real volume files through the
storage node's ``VolumeSet`` (record header + fragment id + payload), one volume set per node;
the table is the total size of all volume files divided by the object size. Metadata rows in
PostgreSQL are not counted (they are the same for every strategy).

    python bench/small_objects.py            # 1 B, 1 KiB, 64 KiB, 1 MiB, 64 MiB
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from origin.erasure import cached_scheme  # noqa: E402
from origin.layout import fragment_id  # noqa: E402
from origin.storage_class import default_policy  # noqa: E402
from origin.storagenode.volume import VolumeSet  # noqa: E402

SIZES = [("1 B", 1), ("1 KiB", 1 << 10), ("64 KiB", 64 << 10), ("1 MiB", 1 << 20),
         ("64 MiB", 64 << 20)]
SEGMENT = 1 << 20
K, M, EC_TYPE = 6, 3, "isa_l_rs_cauchy"


def bytes_on_disk(size: int, ec_type: str, ndata: int, nparity: int) -> int:
    scheme = cached_scheme(ndata, nparity, SEGMENT, ec_type)
    object_id = str(uuid.uuid4())
    with tempfile.TemporaryDirectory() as root:
        nodes = [VolumeSet(Path(root) / f"n{i}", 1 << 30, fsync=False)
                 for i in range(scheme.fragments_per_segment)]
        for node in nodes:
            node.open()
        remaining, segment = size, 0
        while remaining > 0:
            data = os.urandom(min(SEGMENT, remaining))
            for index, fragment in enumerate(scheme.encode(data)):
                nodes[index].append_batch([(fragment_id(object_id, segment, index).encode(),
                                            fragment)])
            remaining -= len(data)
            segment += 1
        total = sum(v.size for node in nodes for v in node.volumes())
        for node in nodes:
            node.close()
    return total


def main() -> int:
    policy = default_policy(K, M, EC_TYPE)
    standard = policy.get(None)
    print(f"bytes on disk per byte written (6+3 EC, 1 MiB segments; replicated = {M + 1} "
          f"copies; chosen = STANDARD with replication below "
          f"{policy.small_object_threshold} B)\n")
    print(f"{'size':>8} | {'EC 6+3':>9} | {'4 replicas':>10} | {'chosen':>9} | strategy")
    print("-" * 60)
    for label, size in SIZES:
        ec = bytes_on_disk(size, EC_TYPE, K, M) / size
        rep = bytes_on_disk(size, "replicated", 1, M) / size
        cls = policy.for_object(standard, size if size < SEGMENT else None)
        chosen = rep if cls.is_replicated else ec
        print(f"{label:>8} | {ec:>8.2f}x | {rep:>9.2f}x | {chosen:>8.2f}x | {cls.describe()}")
    print("\nboth strategies tolerate the loss of any 3 nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
