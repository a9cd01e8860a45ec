"""The commit call's fragment columns: the map as parallel arrays and as array literals that
PostgreSQL's ``array_in`` reads back exactly (the integration tests round-trip them)."""

from __future__ import annotations

from origin.layout import FragmentLocation
from origin.metadata.objects import _array_literals, fragment_columns


def test_the_map_becomes_seven_parallel_columns_in_map_order() -> None:
    fragments = {0: {0: FragmentLocation("n1", 3, 100, 760, 11),
                     2: FragmentLocation("n2", 4, 200, 760, 22)},
                 1: {1: FragmentLocation("n3", 5, 300, 12, 33)}}
    assert fragment_columns(fragments) == (
        [0, 0, 1], [0, 2, 1], ["n1", "n2", "n3"], [3, 4, 5], [100, 200, 300],
        [760, 760, 12], [11, 22, 33])
    assert fragment_columns({}) == ([], [], [], [], [], [], [])
    one = {0: {1: FragmentLocation("n2", 4, 200, 760, 22),
               0: FragmentLocation("n1", 3, 100, 760, 11)}}
    assert fragment_columns(one) == ([0, 0], [1, 0], ["n2", "n1"], [4, 3], [200, 100],
                                      [760, 760], [22, 11])


def test_literals_quote_text_and_escape_quotes_and_backslashes() -> None:
    assert _array_literals(([1, 2**40], ["node-1", "node-2"], [])) == [
        "{1,1099511627776}", '{"node-1","node-2"}', "{}"]
    assert _array_literals((['a"b', "c\\d", "e"],)) == ['{"a\\"b","c\\\\d","e"}']


def test_the_columns_read_back_are_the_same_locations() -> None:
    from origin.layout import locations_from_fields

    original = {0: {i: FragmentLocation(f"node-{i}", 2, 800 * i, 760, 1000 + i)
                    for i in range(9)}}
    columns = fragment_columns(original)
    back = list(locations_from_fields(zip(*columns[2:], strict=True)))
    assert back == list(original[0].values())
    assert all(type(loc) is FragmentLocation for loc in back)
    assert back[3].offset == 2400 and back[3].node_id == "node-3"
