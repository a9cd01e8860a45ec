"""Volume record format and the volume set on real files: checksums catch every flipped
byte, lengths let a scan walk records, roll-over and torn-tail recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from origin.storagenode import record
from origin.storagenode.volume import Address, RecordNotFound, VolumeSet


def _record(fragment_id: bytes, payload: bytes) -> bytes:
    return record.encode_header(fragment_id, payload) + payload


def test_round_trip() -> None:
    buf = _record(b"obj/1/2", b"payload")
    header, payload = record.parse_record(buf, 7, b"obj/1/2")
    assert bytes(payload) == b"payload"
    assert header.fragment_id == b"obj/1/2"
    assert header.size == len(buf) == record.record_size(b"obj/1/2", 7)


def test_every_flipped_byte_is_detected() -> None:
    buf = _record(b"id", b"some payload bytes")
    for position in range(len(buf)):
        damaged = bytearray(buf)
        damaged[position] ^= 0x40
        with pytest.raises(record.RecordError):
            record.parse_record(bytes(damaged), len(b"some payload bytes"), b"id")


def test_payload_damage_is_a_checksum_mismatch() -> None:
    buf = bytearray(_record(b"id", b"abcdef"))
    buf[-1] ^= 1
    with pytest.raises(record.ChecksumMismatch):
        record.parse_record(bytes(buf), 6)


def test_wrong_length_and_wrong_id() -> None:
    buf = _record(b"id", b"abcdef")
    with pytest.raises(record.CorruptRecord):
        record.parse_record(buf, 5)
    with pytest.raises(record.FragmentIdMismatch):
        record.parse_record(buf, 6, b"other")
    with pytest.raises(record.CorruptRecord):
        record.parse_record(buf[:-1], 6)
    with pytest.raises(ValueError):
        record.encode_header(b"", b"x")


def test_volume_set_appends_rolls_over_and_recovers(tmp_path: Path) -> None:
    volumes = VolumeSet(tmp_path, 1000, fsync=False)
    volumes.open()
    addresses = volumes.append_batch([(f"f{i}".encode(), bytes([i]) * 300) for i in range(5)])
    assert [a.volume for a in addresses] == [1, 1, 1, 2, 2]
    assert volumes.read(addresses[4]) == (b"f4", bytes([4]) * 300)
    with pytest.raises(RecordNotFound):
        volumes.read(Address(7, 0, 300))
    with pytest.raises(RecordNotFound):
        volumes.read(Address(2, 10_000, 300))
    volumes.close()
    with (tmp_path / "000002.vol").open("ab") as fh:
        fh.write(_record(b"torn", b"x" * 50)[:-10])
    reopened = VolumeSet(tmp_path, 1000, fsync=False)
    reopened.open()
    info = {v.volume: v for v in reopened.volumes()}
    assert info[2].active and info[2].size == addresses[4].offset + record.record_size(b"f4", 300)
    assert reopened.read(addresses[0]) == (b"f0", bytes([0]) * 300)
    reopened.close()


def test_a_record_bigger_than_a_volume_gets_a_volume_of_its_own(tmp_path: Path) -> None:
    volumes = VolumeSet(tmp_path, 100, fsync=True)
    volumes.open()
    a, b, c = volumes.append_batch([(b"a", b"1"), (b"b", b"2" * 500), (b"c", b"3")])
    assert (a.volume, b.volume, c.volume) == (1, 2, 3)
    assert volumes.read(b) == (b"b", b"2" * 500)
    volumes.close()


def test_a_record_appended_with_its_verified_crc_is_the_same_record(tmp_path: Path) -> None:
    import zlib

    payload = b"fragment bytes" * 50
    assert record.encode_header(b"o/0/1", payload, zlib.crc32(payload)) == \
        record.encode_header(b"o/0/1", payload)
    volumes = VolumeSet(tmp_path, 1 << 20, fsync=False)
    volumes.open()
    plain, with_crc = volumes.append_batch([(b"o/0/1", payload),
                                            (b"o/0/2", payload, zlib.crc32(payload))])
    assert volumes.read(plain, b"o/0/1") == (b"o/0/1", payload)
    assert volumes.read(with_crc, b"o/0/2") == (b"o/0/2", payload)
    # The CRC given is the one written: a wrong one makes the record fail its check on read.
    (bad,) = volumes.append_batch([(b"o/0/3", payload, zlib.crc32(payload) ^ 1)])
    with pytest.raises(record.ChecksumMismatch):
        volumes.read(bad, b"o/0/3")
