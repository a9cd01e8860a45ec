"""A storage node's disk identity (``storagenode/identity.py``) and the volume numbering it
gives ``VolumeSet``: files on a temp dir, a fake wall clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from origin.storagenode import identity
from origin.storagenode.identity import VOLUME_EPOCH, DiskIdentityError, load_or_create
from origin.storagenode.volume import VolumeSet, existing_volumes


class FakeWallClock:
    """Unix seconds that move only when told to (or when slept on)."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _volumes(root: Path, disk: identity.DiskIdentity, clock: FakeWallClock,
             max_bytes: int = 1 << 16) -> VolumeSet:
    volumes = VolumeSet(root / "volumes", max_bytes, fsync=False,
                        first_volume=disk.volume_base,
                        start_delay=lambda n: identity.seconds_until_number(n, clock()))
    volumes.open()
    return volumes


def test_a_fresh_disk_gets_an_id_and_starts_numbering_at_the_next_second(
        tmp_path: Path) -> None:
    clock = FakeWallClock(VOLUME_EPOCH + 1000.25)
    disk = load_or_create(tmp_path / "data", [], now=clock, sleep=clock.sleep)
    assert disk.volume_base == 1001
    assert clock.slept == [pytest.approx(0.75)]  # waited for second 1001 to begin
    saved = json.loads((tmp_path / "data" / identity.IDENTITY_FILE).read_text())
    assert saved == {"disk_id": disk.disk_id, "volume_base": 1001, "created": clock.now}
    assert not list((tmp_path / "data").glob(".*.tmp"))
    again = load_or_create(tmp_path / "data", [1001], now=clock, sleep=clock.sleep)
    assert again == disk and clock.slept == [pytest.approx(0.75)]


def test_a_data_dir_from_before_identities_keeps_its_volumes_and_their_numbers(
        tmp_path: Path) -> None:
    old = VolumeSet(tmp_path / "volumes", 1 << 16, fsync=False)
    old.open()
    address = old.append_batch([(b"o/0/0", b"kept")])[0]
    old.seal()
    old.close()
    clock = FakeWallClock(VOLUME_EPOCH + 5000.0)
    disk = load_or_create(tmp_path, existing_volumes(tmp_path / "volumes"), now=clock,
                          sleep=clock.sleep)
    assert disk.volume_base == 1 and clock.slept == []
    volumes = _volumes(tmp_path, disk, clock)
    try:
        assert [v.volume for v in volumes.volumes()] == [1, 2]
        assert volumes.read(address, b"o/0/0")[1] == b"kept"
    finally:
        volumes.close()


def test_an_unreadable_identity_stops_the_node_instead_of_becoming_a_new_disk(
        tmp_path: Path) -> None:
    (tmp_path / identity.IDENTITY_FILE).write_text('{"disk_id": "not a uuid"')
    with pytest.raises(DiskIdentityError, match="unreadable disk identity"):
        load_or_create(tmp_path, [])


def test_volumes_never_start_ahead_of_the_clock(tmp_path: Path) -> None:
    """A full volume keeps taking appends until its successor's number is due, and a seal
    answers None until then."""
    clock = FakeWallClock(VOLUME_EPOCH + 100.9)
    disk = load_or_create(tmp_path, [], now=clock, sleep=clock.sleep)
    volumes = _volumes(tmp_path, disk, clock)
    try:
        payload = b"x" * 30_000
        placed = [volumes.append_batch([(f"o/{i}/0".encode(), payload)])[0].volume
                  for i in range(4)]
        assert placed == [101] * 4  # past max_bytes: 102 is not due before second 102
        assert volumes.seal() is None and volumes.next_volume_delay() == pytest.approx(1.0)
        clock.now += 1.0
        assert volumes.append_batch([(b"o/4/0", payload)])[0].volume == 102
        assert volumes.seal() is None  # 103 is due a second later
        clock.now += 1.0
        assert volumes.seal() == 103
    finally:
        volumes.close()


def test_a_replacement_disk_numbers_above_every_volume_of_the_one_before(
        tmp_path: Path) -> None:
    """However fast the first disk rolled its volumes over, and even when it is replaced
    within the same second as its last new volume, the second disk's numbers are higher."""
    clock = FakeWallClock(VOLUME_EPOCH + 7.5)
    first = load_or_create(tmp_path / "a", [], now=clock, sleep=clock.sleep)
    volumes = _volumes(tmp_path / "a", first, clock)
    for step in range(40):  # 40 rounds of ~0.25 s, each trying to fill a volume
        volumes.append_batch([(f"o/{step}/0".encode(), b"y" * 70_000)])
        volumes.seal()
        clock.now += 0.25
    used = [v.volume for v in volumes.volumes()]
    volumes.close()
    assert max(used) <= identity.volume_clock(clock.now)
    second = load_or_create(tmp_path / "b", [], now=clock, sleep=clock.sleep)
    assert second.disk_id != first.disk_id
    assert second.volume_base > max(used)
