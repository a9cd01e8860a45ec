"""Decoded bytes of small objects, kept in memory by object id (off unless configured).

Why it is correct under overwrite and delete: an object id names one stored blob whose bytes
never change (every PUT, copy or completed upload makes a new id; the reconstructor and a
storage-class change rewrite fragments of the *same* bytes). A GET still reads the object's
row from PostgreSQL first, as always, and only then asks this cache for the bytes of the id
that row names: an overwrite names a new id (a miss), a delete names none (404), so reads stay
strongly consistent with writes. What it saves is the fragment reads and the decode (on a
4 KiB GET: six node reads in ≈ 1.4 batch requests, ≈ 0.3 ms of CPU across origin and nodes).

What it does not do: it is per process (each origin fills its own), it is filled by GETs only
(a PUT's bytes are not kept), and entries of deleted or overwritten objects are not dropped,
they age out (least recently used first) within ``max_bytes``. Only whole one-segment objects
up to ``MAX_OBJECT`` are kept; bytes come from fragments whose CRCs were checked on the read
that filled it. Behind CDN shields the origin mostly sees first reads, so this is for
deployments where origins see repeated reads of small objects; benchmarks report it apart.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_OBJECT = 256 << 10  # larger objects would crowd out many small ones


class ObjectCache:
    """At most ``max_bytes`` of object bytes; least recently used go first."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes ({max_bytes}) must be >= 0")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, object_id: str) -> bytes | None:
        data = self._entries.get(object_id)
        if data is not None:
            self._entries.move_to_end(object_id)
        return data

    def put(self, object_id: str, data: bytes) -> None:
        size = len(data)
        if size > MAX_OBJECT or size > self.max_bytes or object_id in self._entries:
            return
        self._entries[object_id] = data
        self.bytes += size
        while self.bytes > self.max_bytes:
            _id, old = self._entries.popitem(last=False)
            self.bytes -= len(old)

    def discard(self, object_id: str) -> None:
        data = self._entries.pop(object_id, None)
        if data is not None:
            self.bytes -= len(data)
