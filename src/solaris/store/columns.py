"""Column types every table uses: a 64-bit id, and a moment that is UTC-aware on every database;
and the one expression that reads a moment as a day of the operator's calendar."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, ColumnElement, DateTime, Integer, String, TypeDecorator, func
from sqlalchemy.engine import Dialect

__all__ = ["SQLITE_LOCAL_DAY", "Id", "Timestamp", "local_day", "sqlite_local_day"]

SQLITE_LOCAL_DAY = "solaris_local_day"  # registered on every SQLite connection (store.database)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real 64-bit identity.
Id = BigInteger().with_variant(Integer, "sqlite")


class Timestamp(TypeDecorator[datetime]):
    """A moment, stored in UTC and read back UTC-aware on every database (SQLite keeps no zone:
    without this, its rows come back naive and every reader had to mend them)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime), value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def local_day(dialect: str, column: Any, zone: ZoneInfo) -> ColumnElement[str]:
    """The day ("2026-12-02") a stored moment falls on in `zone`, computed by the database so it
    can group by it: PostgreSQL knows the zones; SQLite asks Python's, registered per connection."""
    if dialect == "postgresql":
        return func.to_char(func.timezone(zone.key, column), "YYYY-MM-DD")
    day: ColumnElement[str] = getattr(func, SQLITE_LOCAL_DAY)(column, zone.key, type_=String)
    return day


def sqlite_local_day(stored: str | None, zone: str) -> str | None:
    """SQLITE_LOCAL_DAY: SQLite holds moments as naive UTC text ("2026-12-02 02:30:00.000000")."""
    if stored is None:
        return None
    moment = datetime.fromisoformat(stored).replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone)).date().isoformat()
