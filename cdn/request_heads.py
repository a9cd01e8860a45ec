"""Where a request head ends in bytes read from a socket (pure).

The protocol-level fronts (the edge's and shield's hit path, the origin's front, the storage
node's batch front) hand a connection to aiohttp from the first byte of a request they do not
serve, so they must know where each request begins. llhttp reports completed messages, not
positions; so each front feeds its parser in pieces that end just after a head's
``CRLF CRLF`` (the parser still decides what the bytes mean). This module finds that end.
"""

from __future__ import annotations

HEAD_END = b"\r\n\r\n"


def head_piece(data: bytes, pos: int, partial: bytes) -> tuple[int, bool]:
    """The end of the next piece of ``data`` from ``pos`` while a head is being read, and
    whether the head ends there: just after the first ``CRLF CRLF``, which at ``pos`` 0 may
    straddle ``partial`` (the head's bytes from earlier reads) and ``data``; otherwise the
    end of ``data`` (the head goes on in a later read)."""
    if pos == 0 and partial:
        tail = partial[-3:]
        i = (tail + data[:3]).find(HEAD_END)
        if i >= 0:
            return i + 4 - len(tail), True
    end = data.find(HEAD_END, pos)
    return (len(data), False) if end < 0 else (end + 4, True)
