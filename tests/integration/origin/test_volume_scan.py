"""``VolumeSet.scan`` reads a volume in chunks (``ReadAhead``) and parses records from memory;
it must walk exactly as the record-by-record walk did (one ``pread`` per header and one per
payload), whatever falls on a chunk boundary: a header, a fragment id, a payload, a damaged
byte, a payload larger than the chunk, the end of a page or of a truncated file."""

from __future__ import annotations

import os
import random
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from origin.storagenode import record
from origin.storagenode.volume import (
    _SKIP_LARGE,
    SCAN_CHUNK,
    ScannedRecord,
    ScanPage,
    VolumeError,
    VolumeSet,
)

HEAD = record.HEADER_SIZE + record.MAX_FRAGMENT_ID
FID = b"s/0/0"  # every record of the hand-made layout: 24 + 5 bytes before the payload
MODES = [(True, True), (True, False), (False, False)]  # (verify, errors_only): scrub, list, GC


def _encoded(fragment_id: bytes, payload: bytes) -> bytes:
    return record.encode_header(fragment_id, payload) + payload


def _volumes(tmp_path: Path, data: bytes, chunk: int) -> VolumeSet:
    """A node whose sealed volume 1 holds ``data`` exactly (damage and a torn tail included:
    only the active volume, 2 here, has its tail recovered at open)."""
    (tmp_path / "000001.vol").write_bytes(data)
    (tmp_path / "000002.vol").write_bytes(b"")
    volumes = VolumeSet(tmp_path, 1 << 30, fsync=False, scan_chunk=chunk)
    volumes.open()
    return volumes


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _is_header(data: bytes, offset: int) -> bool:
    try:
        record.parse_header(data[offset:offset + HEAD])
    except record.CorruptRecord:
        return False
    return True


def _reference_page(data: bytes, offset: int, max_bytes: int, *, verify: bool,
                    errors_only: bool) -> ScanPage:
    """The walk as it was before the read-ahead, over the file's bytes: a slice for each
    ``pread`` of a header and of a payload, a header that does not parse skipped up to the
    next offset where one does."""
    size = len(data)
    found: list[ScannedRecord] = []
    covered = walked = walked_bytes = 0
    while offset < size and covered < max_bytes:
        walked += 1
        try:
            header = record.parse_header(data[offset:offset + HEAD])
        except record.CorruptRecord:
            resume = next((p for p in range(offset + 1, size) if _is_header(data, p)), size)
            found.append(ScannedRecord(offset, b"", resume - offset, "corrupt-record"))
            walked_bytes += resume - offset
            covered += resume - offset
            offset = resume
            continue
        error = None
        if verify:
            start = offset + record.HEADER_SIZE + len(header.fragment_id)
            payload = data[start:start + header.payload_length]
            if len(payload) != header.payload_length or \
                    zlib.crc32(payload) != header.payload_crc:
                error = "checksum-mismatch"
        if error is not None or not errors_only:
            found.append(ScannedRecord(offset, header.fragment_id, header.payload_length, error))
        walked_bytes += header.payload_length
        covered += header.size
        offset += header.size
    return ScanPage(found, offset if offset < size else None, walked, walked_bytes)


def _pages(walk: Callable[[int, int], ScanPage], max_bytes: int) -> list[ScanPage]:
    """Every page of a walk from offset 0, ``walk(offset, max_bytes)`` giving one."""
    pages: list[ScanPage] = []
    offset: int | None = 0
    while offset is not None:
        pages.append(walk(offset, max_bytes))
        offset = pages[-1].next_offset
    return pages


# A layout for a 512-byte chunk, with the fills the walk makes (each at the offset it needs):
#   fill [0, 512)      record 0 at 0, 499 bytes
#                      record 1 at 499: its header crosses 512      -> fill [499, 1011)
#                      its payload [528, 1128) crosses 1011         -> fill [1011, 1523)
#                      record 2 at 1128 ends at 1523, the fill's end
#   fill [1523, 2035)  record 3 at 1523: its 2,000-byte payload needs four fills more,
#                      the last [3059, 3571) ending inside record 4 -> fill [3552, 3582)
#                      record 4 at 3552: 30 bytes, the last (that fill comes back short)
CHUNK = 512
PAYLOADS = [470, 600, 366, 2000, 1]
STARTS = [0, 499, 1128, 1523, 3552]


def _layout() -> bytearray:
    rng = random.Random(5)
    data = bytearray(b"".join(_encoded(FID, rng.randbytes(n)) for n in PAYLOADS))
    assert [sum(29 + n for n in PAYLOADS[:i]) for i in range(len(PAYLOADS))] == STARTS
    return data


def _walk(tmp_path: Path, data: bytes, *, verify: bool = True) -> ScanPage:
    volumes = _volumes(tmp_path, data, CHUNK)
    try:
        page = volumes.scan(1, 0, 1 << 30, verify=verify)
    finally:
        volumes.close()
    assert page == _reference_page(bytes(data), 0, 1 << 30, verify=verify, errors_only=False)
    return page


def _errors(page: ScanPage) -> list[tuple[int, int, str | None]]:
    return [(r.offset, r.length, r.error) for r in page.records if r.error]


def test_records_across_chunk_boundaries_are_all_verified(tmp_path: Path) -> None:
    page = _walk(tmp_path, _layout())
    assert [(r.offset, r.length, r.error) for r in page.records] == \
        [(s, n, None) for s, n in zip(STARTS, PAYLOADS, strict=True)]
    assert (page.next_offset, page.walked, page.walked_bytes) == (None, 5, sum(PAYLOADS))


@pytest.mark.parametrize("position", [510, 511, 512, 1010, 1011, 1012])
def test_a_rotten_byte_either_side_of_a_boundary_fails_its_record_only(
        tmp_path: Path, position: int) -> None:
    """510-512: record 1's header (499-528) on both sides of the first fill's end; 1010-1012:
    its payload on both sides of the second fill's end."""
    data = _layout()
    data[position] ^= 0x01
    page = _walk(tmp_path, data)
    if position < 528:  # the header: unreadable, skipped up to record 2
        assert _errors(page) == [(499, 1128 - 499, "corrupt-record")]
    else:
        assert _errors(page) == [(499, 600, "checksum-mismatch")]
    assert page.walked == 5


@pytest.mark.parametrize("position", [5, 505, 520, 1130, 1524, 1550])
def test_a_corrupt_header_before_or_after_a_boundary_resynchronises_at_the_next_record(
        tmp_path: Path, position: int) -> None:
    data = _layout()
    data[position] ^= 0x10
    damaged = max(s for s in STARTS if s <= position)
    after = STARTS[STARTS.index(damaged) + 1]
    page = _walk(tmp_path, data)
    assert _errors(page) == [(damaged, after - damaged, "corrupt-record")]
    assert [r.offset for r in page.records] == STARTS
    assert page.walked == 5 and page.next_offset is None


def test_a_payload_larger_than_the_chunk_is_checked_whole(tmp_path: Path) -> None:
    """Record 3's payload spans four fills: a byte rotten in its last part is found, and a
    file cut inside it is a checksum mismatch (verifying) or a record whose end lies past
    the file (not verifying: only its header is read)."""
    data = _layout()
    last_payload_byte = STARTS[4] - 1
    data[last_payload_byte] ^= 0x80
    assert _errors(_walk(_mkdir(tmp_path / "rot"), data)) == [(1523, 2000, "checksum-mismatch")]
    data[last_payload_byte] ^= 0x80
    cut = bytes(data[:STARTS[3] + 29 + 1500])
    page = _walk(_mkdir(tmp_path / "cut"), cut)
    assert _errors(page) == [(1523, 2000, "checksum-mismatch")]
    assert (page.next_offset, page.walked) == (None, 4)
    headers_only = _walk(_mkdir(tmp_path / "cut-gc"), cut, verify=False)
    assert [r.offset for r in headers_only.records] == STARTS[:4]
    assert not _errors(headers_only) and headers_only.next_offset is None


def test_a_file_cut_inside_a_header_ends_in_one_corrupt_span(tmp_path: Path) -> None:
    data = bytes(_layout()[:STARTS[4] + 10])
    page = _walk(tmp_path, data)
    assert _errors(page) == [(STARTS[4], 10, "corrupt-record")]


@pytest.mark.parametrize("gap", [-1, 0, 1])
def test_a_header_with_the_longest_id_at_a_chunk_end(tmp_path: Path, gap: int) -> None:
    """Record 1's header and 256-byte id (280 bytes) end one byte before, at, or one byte
    after the first fill's end."""
    first = _encoded(FID, bytes(CHUNK - HEAD - 29 - gap))
    longest = _encoded(b"i" * record.MAX_FRAGMENT_ID, b"payload")
    page = _walk(tmp_path, first + longest + _encoded(FID, b"last"))
    assert [(r.fragment_id, r.error) for r in page.records] == \
        [(FID, None), (b"i" * record.MAX_FRAGMENT_ID, None), (FID, None)]


def test_a_header_only_walk_past_a_large_record_reads_a_longest_id_whole(
        tmp_path: Path) -> None:
    """After a record larger than ``_SKIP_LARGE`` the GC's walk preads just the next header
    instead of filling the buffer: all 280 bytes of it."""
    first = _encoded(FID, bytes(_SKIP_LARGE + 1))
    longest = _encoded(b"i" * record.MAX_FRAGMENT_ID, b"payload")
    page = _walk(tmp_path, first + longest + _encoded(FID, b"last"), verify=False)
    assert [(r.fragment_id, r.error) for r in page.records] == \
        [(FID, None), (b"i" * record.MAX_FRAGMENT_ID, None), (FID, None)]


def test_a_torn_copy_of_the_record_before_is_not_completed_from_the_buffer(
        tmp_path: Path) -> None:
    """The file ends 10 bytes into a second copy of record 0 (an append retried and torn):
    the fill that finds the end comes back short, and the bytes beyond it in the reused
    buffer are those of record 0 from the fill before; read as the rest of the header
    they would make it whole."""
    whole = _encoded(FID, bytes(range(256)) + bytes(44))  # all in the first fill
    page = _walk(tmp_path, whole + whole[:10])
    assert _errors(page) == [(len(whole), 10, "corrupt-record")]


@pytest.mark.parametrize("max_bytes", [1, 29, 500, 511, 512, 513, 1200, 2100])
def test_pages_of_any_size_walk_what_one_page_walks(tmp_path: Path, max_bytes: int) -> None:
    data = _layout()
    data[1200] ^= 0x01  # record 2's payload
    data[STARTS[3] + 3] ^= 0x01  # record 3's header
    volumes = _volumes(tmp_path, bytes(data), CHUNK)
    try:
        for verify, errors_only in MODES:
            walk = partial(volumes.scan, 1, verify=verify, errors_only=errors_only)
            whole = walk(0, 1 << 30)
            pages = _pages(walk, max_bytes)
            assert [r for p in pages for r in p.records] == whole.records
            assert sum(p.walked for p in pages) == whole.walked
            assert sum(p.walked_bytes for p in pages) == whole.walked_bytes
            assert {p.next_offset for p in pages[:-1]} <= set(STARTS)
            assert pages[-1].next_offset is None
    finally:
        volumes.close()


def _random_volume(seed: int) -> bytes:
    """A seeded mix: mostly small records, some larger than a small chunk, a few larger than
    ``_SKIP_LARGE``; ids of 4-256 bytes; then damage: flipped bytes anywhere and a torn
    tail."""
    rng = random.Random(seed)
    parts = []
    for i in range(300):
        kind = rng.random()
        size = rng.randrange(0, 1500) if kind < 0.9 else rng.randrange(1500, 6000) \
            if kind < 0.98 else rng.randrange(33 << 10, 48 << 10)
        fragment_id = f"{i}/".encode().ljust(rng.randrange(4, record.MAX_FRAGMENT_ID + 1), b"x")
        parts.append(_encoded(fragment_id, rng.randbytes(size)))
    data = bytearray(b"".join(parts))
    for _ in range(6):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data[:len(data) - rng.randrange(1, 2000)])


@pytest.mark.parametrize("seed", [1, 2])
def test_a_random_volume_is_walked_as_record_by_record(tmp_path: Path, seed: int) -> None:
    """Page by page, the chunked walk gives the old walk's records, counts and next offsets,
    for chunks from one header's size up to the default, and pages from one byte up."""
    data = _random_volume(seed)
    expected = {(verify, errors_only, max_bytes): _pages(partial(
        _reference_page, data, verify=verify, errors_only=errors_only), max_bytes)
        for verify, errors_only in MODES for max_bytes in (1 << 30, 9000, 777)}
    assert sum(1 for r in expected[True, False, 1 << 30][0].records if r.error) >= 3
    for chunk in [HEAD, 300, 1000, 4096, SCAN_CHUNK]:
        root = _mkdir(tmp_path / str(chunk))
        volumes = _volumes(root, data, chunk)
        try:
            for (verify, errors_only, max_bytes), pages in expected.items():
                walk = partial(volumes.scan, 1, verify=verify, errors_only=errors_only)
                assert _pages(walk, max_bytes) == pages, (chunk, verify, errors_only, max_bytes)
        finally:
            volumes.close()


def test_a_read_error_in_a_walk_is_a_volume_error_and_lets_the_fd_go(tmp_path: Path) -> None:
    volumes = _volumes(tmp_path, bytes(_layout()), CHUNK)
    try:
        unreadable = os.open(tmp_path / "000001.vol", os.O_WRONLY)
        volumes._read_fds[1] = unreadable  # a read now fails with EBADF
        with pytest.raises(VolumeError, match="scan of volume 1 failed"):
            volumes.scan(1, 0, 1 << 30, verify=True)
        assert volumes._fd_holds == {}
    finally:
        volumes.close()


def test_a_chunk_smaller_than_a_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scan_chunk"):
        VolumeSet(tmp_path, 1 << 20, scan_chunk=HEAD - 1)
