"""HTTP-date parsing and formatting (RFC 9110 §5.6.7), pure and strict.

RFC 9110 §5.6.7: "A recipient that parses a timestamp value in an HTTP field MUST accept all
three HTTP-date formats": IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), the obsolete
rfc850-date (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime-date
(``Sun Nov  6 08:49:37 1994``). Anything else is invalid: RFC 9111 §5.3 "A cache recipient
MUST interpret invalid date formats, especially the value "0", as representing a time in the
past". ``email.utils`` is far more lenient (it accepts ``UTC``, two-digit years, missing
commas…), so the grammar is matched here with regular expressions. Names of days, months and
``GMT`` are compared case-insensitively (the RFC says "case-sensitive", but every deployed
cache accepts ``THU``/``AUG``; being lenient there cannot make a stale response look fresh
from a typo in digits).
"""

from __future__ import annotations

import calendar
import email.utils
import functools
import re

_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"(\d{2}):(\d{2}):(\d{2})"

_IMF_FIXDATE = re.compile(rf"{_DAY}, (\d{{2}}) {_MONTH} (\d{{4}}) {_TIME} GMT", re.IGNORECASE)
_RFC850 = re.compile(rf"{_LONG_DAY}, (\d{{2}})-{_MONTH}-(\d{{2}}) {_TIME} GMT", re.IGNORECASE)
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} ( \d|\d{{2}}) {_TIME} (\d{{4}})", re.IGNORECASE)


def _timestamp(year: int, month: str, day: int, hour: int, minute: int, second: int
               ) -> float | None:
    if not (1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        return None
    try:
        return float(calendar.timegm(
            (year, _MONTHS.index(month.lower()) + 1, day, hour, minute, min(second, 59))))
    except (ValueError, OverflowError):
        return None


def parse_http_date(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds since the epoch, or ``None`` when absent or not an HTTP-date.

    For rfc850-date, §5.6.7: "Recipients of a timestamp value in rfc850-date format, which
    uses a two-digit year, MUST interpret a timestamp that appears to be more than 50 years in
    the future as representing the most recent year in the past that had the same last two
    digits." ``now`` defaults to the year 2000 pivot when not given (pure code reads no clock).
    """
    if not value:
        return None
    text = value.strip()
    if (found := _imf_fixdate(text)) is not None:
        return found
    if match := _RFC850.fullmatch(text):
        day, month, yy, hh, mm, ss = match.groups()
        return _timestamp(_rfc850_year(int(yy), now), month, int(day), int(hh), int(mm),
                          int(ss))
    if match := _ASCTIME.fullmatch(text):
        month, day, hh, mm, ss, year = match.groups()
        return _timestamp(int(year), month, int(day), int(hh), int(mm), int(ss))
    return None


@functools.lru_cache(maxsize=1024)
def _imf_fixdate(text: str) -> float | None:
    """IMF-fixdate only (the form senders must generate), memoised: a miss reads ``Date``
    and often ``Last-Modified``/``Expires``, and responses of one second share their Date."""
    if match := _IMF_FIXDATE.fullmatch(text):
        day, month, year, hh, mm, ss = match.groups()
        return _timestamp(int(year), month, int(day), int(hh), int(mm), int(ss))
    return None


def _rfc850_year(two_digits: int, now: float | None) -> int:
    current = 2000 if now is None else int(1970 + now // 31_556_952)
    year = current - current % 100 + two_digits
    if year > current + 50:
        year -= 100
    return year


def format_http_date(timestamp: float) -> str:
    """IMF-fixdate, the only form a sender may generate (RFC 9110 §5.6.7)."""
    return email.utils.formatdate(timestamp, usegmt=True)
