"""Time in one place: the clock everything that dates a row is given, and UTC for moments.

Code that writes or compares a moment takes a `Clock` (tests pass a scripted one). Every stored
moment is UTC: columns of type `store.schema.Timestamp` come back UTC-aware on SQLite too, which
keeps no zone; `as_utc` is for moments from elsewhere (a parsed date, a driver's raw row).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "as_utc", "utcnow"]

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive one is taken to be UTC already (how it was written)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
