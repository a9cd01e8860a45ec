"""Storage classes: how an object's bytes are made redundant, chosen per object at PUT (pure).

Two kinds exist. An erasure-coded class stores ``k`` data + ``m`` parity fragments per segment
(``ec:6+3``); a replicated class stores ``n`` identical copies (``replicated:4``). A class is
written to the object row as its scheme (``ec_type``, ``ndata``, ``nparity``, segment size), so
a later change of the configured classes never makes old objects unreadable, and the class
name of a stored object is recovered from its scheme.

Small objects. pyeclib puts an 80-byte header on every fragment and every record carries a
24-byte header plus its ~40-byte fragment id, so ``6+3`` turns 1 byte into ~1.3 KB on disk.
Objects smaller than ``small_object_threshold`` in an erasure-coded class are therefore
stored replicated with ``m + 1`` copies — the same ``m`` node losses are tolerated — which is
cheaper below about 400 bytes (``(m+1)·(s+64)`` vs ``(k+m)·(s/k + 144)``). From 1 KiB up erasure
coding is already the cheaper of the two (``bench/small_objects.py`` prints the table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from origin.erasure import REPLICATED

STANDARD = "STANDARD"
REPLICATED_CLASS = "REPLICATED"


class StorageClassError(ValueError):
    """A storage class name or specification is not valid."""


@dataclass(frozen=True)
class StorageClass:
    """One class: ``ndata == 1`` and ``ec_type == "replicated"`` for replication."""

    name: str
    ec_type: str
    ndata: int
    nparity: int

    @property
    def width(self) -> int:
        """Distinct nodes one segment is spread over."""
        return self.ndata + self.nparity

    @property
    def is_replicated(self) -> bool:
        return self.ec_type == REPLICATED

    def describe(self) -> str:
        if self.is_replicated:
            return f"replicated:{self.width}"
        return f"ec:{self.ndata}+{self.nparity}"


def parse_class_spec(name: str, spec: str, default_ec_type: str) -> StorageClass:
    """``"ec:6+3"`` / ``"ec:4+2:liberasurecode_rs_vand"`` / ``"replicated:4"``."""
    kind, _sep, rest = spec.strip().partition(":")
    try:
        if kind == "replicated":
            copies = int(rest)
            if copies < 2:
                raise StorageClassError(f"storage class {name}: replication needs >= 2 copies")
            return StorageClass(name, REPLICATED, 1, copies - 1)
        if kind == "ec":
            numbers, _sep, ec_type = rest.partition(":")
            k, _plus, m = numbers.partition("+")
            ndata, nparity = int(k), int(m)
            if ndata < 1 or nparity < 1:
                raise StorageClassError(f"storage class {name}: k and m must be >= 1")
            return StorageClass(name, ec_type or default_ec_type, ndata, nparity)
    except ValueError as exc:
        if isinstance(exc, StorageClassError):
            raise
        raise StorageClassError(f"storage class {name}: cannot parse {spec!r}") from None
    raise StorageClassError(f"storage class {name}: {spec!r} must start with 'ec:' or "
                            f"'replicated:'")


@dataclass(frozen=True)
class StorageClassPolicy:
    """The classes an origin offers, its default, and the small-object rule."""

    classes: Mapping[str, StorageClass]
    default: str = STANDARD
    small_object_threshold: int = 512

    def get(self, name: str | None) -> StorageClass:
        """The class a PUT asked for (``x-amz-storage-class``), or the default."""
        wanted = (name or self.default).strip().upper()
        try:
            return self.classes[wanted]
        except KeyError:
            raise StorageClassError(
                f"unknown storage class {name!r}; known: {', '.join(sorted(self.classes))}"
            ) from None

    def for_object(self, requested: StorageClass, size: int | None) -> StorageClass:
        """The class actually used for an object of ``size`` bytes (``None``: not known yet,
        i.e. the body is longer than what was read so far)."""
        if (size is not None and size < self.small_object_threshold
                and not requested.is_replicated):
            return StorageClass(requested.name, REPLICATED, 1, requested.nparity)
        return requested

    def name_of(self, ec_type: str, ndata: int, nparity: int) -> str:
        """The class name of a stored object's scheme (small objects stored replicated report
        the erasure-coded class they were put in, as S3 would)."""
        for cls in self.classes.values():
            if (cls.ec_type, cls.ndata, cls.nparity) == (ec_type, ndata, nparity):
                return cls.name
        if ec_type == REPLICATED:
            for cls in self.classes.values():
                if not cls.is_replicated and cls.nparity == nparity:
                    return cls.name
        return self.default

    @property
    def widest(self) -> int:
        return max(c.width for c in self.classes.values())


def default_policy(ndata: int, nparity: int, ec_type: str,
                   extra: Mapping[str, str] | None = None,
                   small_object_threshold: int = 512) -> StorageClassPolicy:
    """STANDARD = ``ec:k+m``, REPLICATED = ``m + 1`` copies, plus configured extras."""
    classes = {
        STANDARD: StorageClass(STANDARD, ec_type, ndata, nparity),
        REPLICATED_CLASS: StorageClass(REPLICATED_CLASS, REPLICATED, 1, nparity),
    }
    for name, spec in (extra or {}).items():
        classes[name.strip().upper()] = parse_class_spec(name.strip().upper(), spec, ec_type)
    return StorageClassPolicy(classes, STANDARD, small_object_threshold)
