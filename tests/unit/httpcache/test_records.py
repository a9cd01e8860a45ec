"""``httpcache.records.record``: a frozen dataclass with a faster ``__init__``, same behaviour."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from httpcache.records import record


@record
class Sample:
    name: str
    size: int = 0
    tags: frozenset[str] = dataclasses.field(default_factory=frozenset)
    parts: list[int] = dataclasses.field(default_factory=list)
    memo: object = dataclasses.field(default=None, init=False, compare=False)
    made: list[str] = dataclasses.field(default_factory=list, init=False, compare=False)


def test_fields_defaults_and_factories_as_a_dataclass_sets_them() -> None:
    one = Sample("a")
    assert (one.name, one.size, one.tags, one.parts, one.memo, one.made) == (
        "a", 0, frozenset(), [], None, [])
    assert Sample("a").parts is not one.parts  # a new value per instance
    two = Sample("b", 3, frozenset({"t"}), [1], )
    assert (two.size, two.tags, two.parts) == (3, frozenset({"t"}), [1])
    assert Sample(name="c", parts=[2]).parts == [2]
    with pytest.raises(TypeError):
        Sample()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Sample("a", memo=1)  # type: ignore[call-arg]


def test_still_frozen_equal_hashable_replaceable_and_picklable() -> None:
    one = Sample("a", 1, frozenset({"x"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.size = 2  # type: ignore[misc]
    assert one == Sample("a", 1, frozenset({"x"})) and one != Sample("a", 2)
    assert dataclasses.replace(one, size=5) == Sample("a", 5, frozenset({"x"}))
    assert repr(one).startswith("Sample(name='a', size=1")
    assert pickle.loads(pickle.dumps(one)) == one
    assert not hasattr(one, "__dict__")  # slotted
    hashable = Sample("h", 1, frozenset(), [])
    with pytest.raises(TypeError):
        hash(hashable)  # a list field: unhashable, as the dataclass would be


def test_classes_it_cannot_make_are_refused() -> None:
    with pytest.raises(TypeError):
        @record
        class Later:
            value: int

            def __post_init__(self) -> None:
                pass
    with pytest.raises(TypeError):
        @record
        class KeywordOnly:
            value: int = dataclasses.field(kw_only=True)
