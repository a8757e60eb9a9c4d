"""Column types every table uses: a 64-bit id, and a moment that is UTC-aware on every database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, TypeDecorator
from sqlalchemy.engine import Dialect

__all__ = ["Id", "Timestamp"]

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
