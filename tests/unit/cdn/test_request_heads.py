"""``cdn.request_heads.head_piece``: where the fronts cut the bytes they feed llhttp."""

from __future__ import annotations

from cdn.request_heads import head_piece

HEAD = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_piece_ends_just_after_the_first_head_end() -> None:
    data = HEAD + HEAD
    assert head_piece(data, 0, b"") == (len(HEAD), True)
    assert head_piece(data, len(HEAD), b"") == (len(data), True)
    assert head_piece(HEAD[:-1], 0, b"") == (len(HEAD) - 1, False)  # the head goes on


def test_the_head_end_may_straddle_two_reads_at_every_split() -> None:
    for cut in range(1, len(HEAD)):
        earlier, now = HEAD[:cut], HEAD[cut:] + b"rest"
        stop, ends = head_piece(now, 0, earlier)
        assert (stop, ends) == (len(HEAD) - cut, True), cut
    # a CRLF CRLF found only in ``partial`` is not this read's: the partial is unfinished
    assert head_piece(b"more", 0, b"GET / HTTP/1.1\r\n") == (4, False)
