"""The flat hash tables under the S3-FIFO (``httpcache.int_table``): every operation agrees
with a dict, through growth and backward-shift deletions in crowded runs."""

from __future__ import annotations

import random
from array import array

import pytest

from httpcache.int_table import IntTable, SlotIndex, table_key


def keys(rng: random.Random) -> list[int]:
    spread = [(rng.getrandbits(63) - (1 << 62)) or 1 for _ in range(200)]
    crowded = [k * 64 + 5 for k in range(1, 60)]  # one home bucket while the table is small
    return spread + crowded + [-k for k in crowded]


@pytest.mark.parametrize("seed", range(8))
def test_int_table_agrees_with_a_dict(seed: int) -> None:
    rng = random.Random(seed)
    space, table, reference = keys(rng), IntTable("I"), {}
    for _ in range(6000):
        key, roll = rng.choice(space), rng.random()
        if roll < 0.5:
            value = rng.randrange(1 << 31)
            table.set(key, value)
            reference[key] = value
        elif roll < 0.8:
            assert table.pop(key) == reference.pop(key, -1)
        else:
            assert table.get(key) == reference.get(key, -1)
        assert len(table) == len(reference)
    assert sorted(table.items()) == sorted(reference.items())
    assert table.buckets * 3 >= len(table) * 4  # never above 3/4 full


@pytest.mark.parametrize("seed", range(8))
def test_slot_index_agrees_with_a_dict(seed: int) -> None:
    rng = random.Random(seed)
    space = list(dict.fromkeys(keys(rng)))
    hashes = array("q", space)  # slot i has hash space[i]
    index, indexed = SlotIndex(hashes), set()
    for _ in range(6000):
        slot = rng.randrange(len(space))
        if rng.random() < 0.5:
            if slot not in indexed:
                index.add(slot)
                indexed.add(slot)
        elif slot in indexed:
            index.remove(slot)
            indexed.discard(slot)
        assert len(index) == len(indexed)
        probe = rng.randrange(len(space))
        assert index.get(space[probe]) == (probe if probe in indexed else -1)
    assert all(index.get(space[slot]) == slot for slot in indexed)


def test_a_hash_of_zero_is_kept_apart_from_the_empty_mark() -> None:
    assert table_key(0) == 1 and table_key("x") == hash("x")
