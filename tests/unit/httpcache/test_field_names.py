"""``httpcache.field_names``: names decoded once, the same strings after, bounded."""

from __future__ import annotations

import pytest

from httpcache import field_names
from httpcache.field_names import NAMES, learn


def test_known_names_are_the_same_strings_every_time() -> None:
    first = NAMES.get(b"Content-Length") or learn(b"Content-Length")
    again = NAMES.get(b"Content-Length") or learn(b"Content-Length")
    assert first == ("Content-Length", "content-length") and again[1] is first[1]
    assert NAMES[b"content-length"] == ("content-length", "content-length")


def test_new_names_are_learnt_and_kept_as_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(field_names, "NAMES", dict(NAMES))
    assert learn(b"X-Odd-\xe9Name") == ("X-Odd-\xe9Name", "x-odd-\xe9name")
    assert field_names.NAMES[b"X-Odd-\xe9Name"] == ("X-Odd-\xe9Name", "x-odd-\xe9name")


def test_room_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(field_names, "NAMES", {})
    monkeypatch.setattr(field_names, "NAMES_MAX", 2)
    for i in range(5):
        assert learn(f"X-{i}".encode()) == (f"X-{i}", f"x-{i}")
    assert list(field_names.NAMES) == [b"X-0", b"X-1"]
