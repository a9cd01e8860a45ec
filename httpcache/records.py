"""``record``: ``dataclass(frozen=True, slots=True)`` with an ``__init__`` that costs half.

Why: a frozen dataclass's generated ``__init__`` sets each field with
``object.__setattr__(self, name, value)``, which looks the field's slot up through the type
on every call. A 1 KiB miss makes about 40 such fields (``CacheRequest``, ``Miss``,
``CacheStatus``, ``FlightHead``, ``FetchMark``, ``StoredResponse`` …): callgrind put 4.9%
of the edge's instructions per miss in those calls. Here ``__init__`` calls each field's
slot descriptor directly (fetched once, when the class is made). Everything else is the
dataclass's own: fields, defaults, ``__repr__``/``__eq__``/``__hash__``, ``replace``, and
assigning to a field still raises ``FrozenInstanceError``.

Supported: positional-or-keyword fields with or without a default or ``default_factory``,
and ``init=False`` fields with a default or factory. A class that needs more
(``__post_init__``, keyword-only fields, ``InitVar``) is refused when it is made.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True,
                     field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[T]) -> type[T]:
    """The frozen, slotted dataclass of ``cls``, with the faster ``__init__``."""
    made: Any = dataclasses.dataclass(frozen=True, slots=True)(cls)
    if hasattr(made, "__post_init__"):
        raise TypeError(f"{made.__name__}: record does not call __post_init__")
    rebuild_init(made)
    return made


def rebuild_init(cls: type) -> None:
    """Make ``cls.__init__`` set each field through the descriptor the class has for it
    now: call again after putting another descriptor (a property) in front of a slot."""
    names: dict[str, Any] = {}
    params: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):
        if f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: record has no keyword-only fields")
        setter = f"_set_{f.name}"
        names[setter] = getattr(cls, f.name).__set__
        factory = f.default_factory is not dataclasses.MISSING
        if factory:
            names[f"_factory_{f.name}"] = f.default_factory
            names["_MISSING"] = dataclasses.MISSING
        if f.default is not dataclasses.MISSING:
            names[f"_default_{f.name}"] = f.default
        if f.init:
            if factory:
                params.append(f"{f.name}=_MISSING")
                body.append(f"{setter}(self, _factory_{f.name}() if {f.name} is _MISSING "
                            f"else {f.name})")
            else:
                default = "" if f.default is dataclasses.MISSING else f"=_default_{f.name}"
                params.append(f"{f.name}{default}")
                body.append(f"{setter}(self, {f.name})")
        elif factory:
            body.append(f"{setter}(self, _factory_{f.name}())")
        elif f.default is not dataclasses.MISSING:
            body.append(f"{setter}(self, _default_{f.name})")
    source = (f"def __init__(self, {', '.join(params)}):\n    "
              + ("\n    ".join(body) or "pass") + "\n")
    exec(source, names)  # noqa: S102 - our own text, built from the class's field names
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[misc]
