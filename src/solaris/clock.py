"""Time in one place: the clock everything that dates a row is given, UTC for moments, and the
operator's zone for calendars.

Code that writes or compares a moment takes a `Clock` (tests pass a scripted one). Every stored
moment is UTC: columns of type `store.schema.Timestamp` come back UTC-aware on SQLite too, which
keeps no zone; `as_utc` is for moments from elsewhere (a parsed date, a driver's raw row).
Calendar days, weeks and months are the operator's (`SOLARIS_TIMEZONE`): `from_wall` turns a
wall-clock time there into the moment it names.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "DEFAULT_TIMEZONE",
    "Clock",
    "as_utc",
    "from_wall",
    "in_zone",
    "local_date",
    "local_midnight",
    "month_bounds",
    "recent_days",
    "utcnow",
]

Clock = Callable[[], datetime]
DEFAULT_TIMEZONE = "America/Sao_Paulo"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive one is taken to be UTC already (how it was written)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def from_wall(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC moment of a naive wall-clock time in `zone`. A time the clocks skipped (São Paulo's
    midnights when daylight saving began, until 2019) is the moment they jumped to; a time they
    showed twice is its first showing (PEP 495's fold=0 does both)."""
    assert wall.tzinfo is None, "a wall-clock time is naive"
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def in_zone(moment: datetime, zone: ZoneInfo) -> datetime:
    """`moment` in UTC; a naive one is a wall-clock time in `zone` (what an operator types)."""
    return from_wall(moment, zone) if moment.tzinfo is None else moment.astimezone(UTC)


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The day `moment` falls on in `zone`."""
    return as_utc(moment).astimezone(zone).date()


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC moment `day` begins in `zone` (not always 00:00 there: see `from_wall`)."""
    return from_wall(datetime(day.year, day.month, day.day), zone)


def recent_days(now: datetime, zone: ZoneInfo, days: int) -> tuple[list[str], datetime, datetime]:
    """The last `days` local days up to today: their dates ("2026-12-02"), and [since, until)."""
    assert days > 0, days
    today = local_date(now, zone)
    first = today - timedelta(days=days - 1)
    keys = [(first + timedelta(days=n)).isoformat() for n in range(days)]
    return keys, local_midnight(first, zone), local_midnight(today + timedelta(days=1), zone)


def month_bounds(period: str, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """[start, end) of the calendar month "YYYY-MM" in `zone`; None if `period` is not one."""
    try:
        first = datetime.strptime(period, "%Y-%m").date()
    except ValueError:
        return None
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return local_midnight(first, zone), local_midnight(following, zone)
