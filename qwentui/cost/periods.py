"""Local calendar periods over UTC epoch seconds: days, months, date ranges.

Everything is stored in UTC and shown in local time. `tz=None` means the process's
local zone (honours $TZ after `time.tzset()`); tests pass a fixed `zoneinfo` zone.
Boundaries are computed on naive local wall time and converted back, so a day is
midnight to midnight even where it is not 24 hours long.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Iterator

from qwentui.errors import UsageError

MS_PER_HOUR = 3_600_000


def local(ts: float, tz: tzinfo | None = None) -> datetime:
    """Naive local wall time of an epoch timestamp."""
    if tz is None:
        return datetime.fromtimestamp(ts)
    return datetime.fromtimestamp(ts, tz).replace(tzinfo=None)


def to_ts(wall: datetime, tz: tzinfo | None = None) -> float:
    """Epoch seconds of a naive local wall time."""
    return wall.timestamp() if tz is None else wall.replace(tzinfo=tz).timestamp()


def day_start(ts: float, tz: tzinfo | None = None) -> float:
    wall = local(ts, tz)
    return to_ts(datetime(wall.year, wall.month, wall.day), tz)


def month_start(ts: float, tz: tzinfo | None = None) -> float:
    wall = local(ts, tz)
    return to_ts(datetime(wall.year, wall.month, 1), tz)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_bounds(year: int, month: int, tz: tzinfo | None = None) -> tuple[float, float]:
    """[first instant, first instant of next month) of a local calendar month."""
    ny, nm = _next_month(year, month)
    return to_ts(datetime(year, month, 1), tz), to_ts(datetime(ny, nm, 1), tz)


def dates_bounds(first: date, last: date, tz: tzinfo | None = None) -> tuple[float, float]:
    """[local midnight of `first`, local midnight after `last`): both dates inclusive."""
    end = last + timedelta(days=1)
    return (to_ts(datetime(first.year, first.month, first.day), tz),
            to_ts(datetime(end.year, end.month, end.day), tz))


def _boundaries(start: float, stop: float, unit: str, tz: tzinfo | None) -> Iterator[tuple[str, float]]:
    wall = local(start, tz)
    if unit == "day":
        cursor = datetime(wall.year, wall.month, wall.day)
    else:
        cursor = datetime(wall.year, wall.month, 1)
    while to_ts(cursor, tz) < stop:
        key = cursor.strftime("%Y-%m-%d" if unit == "day" else "%Y-%m")
        yield key, to_ts(cursor, tz)
        if unit == "day":
            cursor = cursor + timedelta(days=1)
        else:
            ny, nm = _next_month(cursor.year, cursor.month)
            cursor = datetime(ny, nm, 1)


def split(start: float, stop: float, unit: str, tz: tzinfo | None = None) -> list[tuple[str, float, float]]:
    """Cut [start, stop) at local day or month boundaries: [(key, piece_start, piece_stop)]."""
    if stop <= start:
        return []
    marks = list(_boundaries(start, stop, unit, tz))
    pieces = []
    for i, (key, begin) in enumerate(marks):
        end = marks[i + 1][1] if i + 1 < len(marks) else stop
        pieces.append((key, max(begin, start), min(end, stop)))
    return pieces


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def to_ms(ts: float) -> int:
    return int(round(ts * 1000))


def cost_of(price: Decimal | None, start: float, stop: float) -> Decimal | None:
    """price/h × duration, on whole milliseconds so 45 min × 1.8 is exactly 1.35."""
    if price is None:
        return None
    ms = max(0, to_ms(stop) - to_ms(start))
    return price * ms / MS_PER_HOUR


# Reports cover epoch time; 9999 has no "next month" or "day after" to end a period with.
YEARS = (1970, 9998)


def _check_year(year: int, flag: str, text: str) -> None:
    if not YEARS[0] <= year <= YEARS[1]:
        raise UsageError(f"{flag} must be in the years {YEARS[0]}-{YEARS[1]}, got {text!r}")


def parse_month(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{4})-(\d{2})", (text or "").strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise UsageError(f"--month must be YYYY-MM with a month 01-12, got {text!r}")
    _check_year(int(match.group(1)), "--month", text)
    return int(match.group(1)), int(match.group(2))


def parse_date(text: str, flag: str) -> date:
    try:
        day = date.fromisoformat((text or "").strip())
    except ValueError:
        raise UsageError(f"{flag} must be a date YYYY-MM-DD, got {text!r}") from None
    _check_year(day.year, flag, text)
    return day
