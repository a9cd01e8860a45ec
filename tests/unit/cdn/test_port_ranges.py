"""Listening ports come from outside the kernel's ephemeral range (``cdn.port_ranges``)."""

from __future__ import annotations

import pytest

from cdn.port_ranges import (
    FALLBACK_EPHEMERAL,
    LISTEN_FLOOR,
    MIN_POOL,
    listening_port_pool,
    nth_port,
    parse_port_range,
    pool_size,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("32768\t60999\n", (32768, 60999)),
    ("1024 65535", (1024, 65535)),
    ("  49152\t65535  \n", (49152, 65535)),
])
def test_parse_port_range_reads_the_proc_file_format(text: str,
                                                     expected: tuple[int, int]) -> None:
    assert parse_port_range(text) == expected


@pytest.mark.parametrize("text", [
    "", "32768", "32768 60999 1", "a b", "-1 100", "0 100", "60999 32768", "1024 70000",
    "32768.0 60999",
])
def test_parse_port_range_rejects_anything_else(text: str) -> None:
    assert parse_port_range(text) is None


def _ports(pool: list[range]) -> set[int]:
    return {p for r in pool for p in r}


def test_pool_with_linux_defaults_is_outside_the_range_and_above_the_floor() -> None:
    pool = listening_port_pool((32768, 60999))
    ports = _ports(pool)
    assert ports == set(range(LISTEN_FLOOR, 32768)) | set(range(61000, 65536))
    assert pool_size(pool) == len(ports)


@pytest.mark.parametrize("ephemeral", [(15000, 50000), (10000, 65535), (1024, 40000),
                                       (40000, 41000)])
def test_no_pooled_port_lies_in_the_ephemeral_range(ephemeral: tuple[int, int]) -> None:
    low, high = ephemeral
    ports = _ports(listening_port_pool(ephemeral))
    assert len(ports) >= MIN_POOL
    assert not any(low <= p <= high for p in ports)
    assert min(ports) >= 1024 and max(ports) <= 65535


def test_a_range_that_leaves_little_above_the_floor_goes_down_to_1024() -> None:
    ports = _ports(listening_port_pool((10500, 65535)))
    assert ports == set(range(1024, 10500))


def test_a_range_covering_almost_everything_falls_back_to_all_unprivileged_ports() -> None:
    assert listening_port_pool((1500, 65535)) == [range(1024, 65536)]


def test_unknown_range_avoids_linux_and_iana_defaults() -> None:
    ports = _ports(listening_port_pool(None))
    low, high = FALLBACK_EPHEMERAL
    assert low <= 32768 and high >= 60999 and high >= 65535 and low <= 49152
    assert ports and not any(low <= p <= high for p in ports)


def test_nth_port_walks_the_ranges_in_order_and_wraps() -> None:
    pool = [range(10, 13), range(20, 22)]
    assert [nth_port(pool, i) for i in range(7)] == [10, 11, 12, 20, 21, 10, 11]
