"""How an object's bytes are laid out on storage nodes (pure data, shared by the data path and
the metadata store).

An object has a random id (a UUID chosen when its PUT starts, before any byte is stored).
Segment ``s`` of it is encoded into fragments ``0 .. k+m-1``; fragment ``i`` lives on the node
of placement slot ``i`` at ``(volume, offset, length)``, and carries the CRC-32 the origin
computed before sending it (checked again after reading it back, end to end). A fragment that
could not be written is simply absent from the map; the reconstructor fills it in later.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import NamedTuple

# segment index -> fragment index -> location
FragmentMap = dict[int, dict[int, "FragmentLocation"]]


class FragmentLocation(NamedTuple):
    """Where one fragment lives. A named tuple rather than a frozen dataclass: a 4 KiB PUT
    or GET makes nine of them, and a frozen dataclass's ``__init__`` costs several times
    more (one ``object.__setattr__`` per field)."""

    node_id: str
    volume: int
    offset: int
    length: int
    checksum: int


def locations_from_fields(fields: Iterable[tuple[str, int, int, int, int]]
                          ) -> Iterator[FragmentLocation]:
    """Fragment locations from ``(node_id, volume, offset, length, checksum)`` tuples
    (a GET's fragment map, read as columns and zipped), made by ``tuple.__new__`` itself: a
    named tuple's own ``__new__`` and ``_make`` are Python functions, one call per fragment."""
    return map(_new_location, fields)


_new_location = functools.partial(tuple.__new__, FragmentLocation)


def fragment_id(object_id: str, segment: int, index: int) -> str:
    """The opaque id stored in the volume record: enough for a garbage collector that finds the
    record on disk to ask the metadata whether it is still referenced."""
    return f"{object_id}/{segment}/{index}"


def parse_fragment_id(value: str) -> tuple[str, int, int]:
    """Inverse of ``fragment_id``: ``(object_id, segment, index)``; ``ValueError`` if foreign."""
    object_id, segment, index = value.rsplit("/", 2)
    return object_id, int(segment), int(index)
