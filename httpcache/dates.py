"""HTTP-date parsing and formatting (RFC 9110 §5.6.7) via ``email.utils`` (pure)."""

from __future__ import annotations

import datetime
import email.utils


def parse_http_date(value: str | None) -> float | None:
    """Seconds since the epoch, or ``None`` when absent or invalid.

    RFC 9110 §5.6.7: "Recipients of a timestamp value in rfc850-date format ... MUST
    interpret a timestamp that appears to be more than 50 years in the future as representing
    the most recent year in the past" — ``email.utils`` handles the obsolete forms.
    """
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # HTTP dates are always GMT
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def format_http_date(timestamp: float) -> str:
    """IMF-fixdate, the only form a sender may generate (RFC 9110 §5.6.7)."""
    return email.utils.formatdate(timestamp, usegmt=True)
