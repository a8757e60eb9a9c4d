"""Which thresholds of a user's period raise alerts, and the outbox rows a settle writes for
them — inside the settle's transaction, with the account's numbers after it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.alerts.model import ThresholdRecord, threshold_rows
from solaris.alerts.outbox import enqueue
from solaris.store.schema import users

__all__ = ["NO_THRESHOLDS", "Thresholds", "enqueue_thresholds"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Which percentages of a period raise an alert, and on which channels."""

    percents: tuple[int, ...] = ()
    channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert all(0 < percent <= 100 for percent in self.percents), self.percents


NO_THRESHOLDS = Thresholds()


async def enqueue_thresholds(
    conn: AsyncConnection,
    dialect: str,
    thresholds: Thresholds,
    user_id: int,
    percents: list[int],
    account: Any,
    now: datetime,
) -> None:
    """One row per threshold and channel; `account` has balance, period_used, period_offered
    and period_start. The dedupe key makes a repeat a no-op."""
    email = await conn.scalar(select(users.c.email).where(users.c.id == user_id))
    start = account.period_start
    for percent in percents:
        record = ThresholdRecord(
            user_id,
            percent,
            int(account.period_used),
            int(account.period_offered),
            int(account.balance),
            int(start.timestamp()) if start else 0,
        )
        for alert in threshold_rows(record, email, thresholds.channels, now):
            await enqueue(conn, dialect, alert)
