"""Which thresholds of a user's period raise alerts, and the outbox rows a settle writes for
them — inside the settle's transaction, with the account's numbers after it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.store.outbox import KIND_USER_THRESHOLD, OPERATOR, Alert, enqueue
from solaris.store.schema import users

__all__ = [
    "NO_THRESHOLDS",
    "ThresholdRecord",
    "Thresholds",
    "crossed_thresholds",
    "enqueue_thresholds",
    "threshold_key",
    "threshold_rows",
]


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


@dataclass(frozen=True)
class ThresholdRecord:
    """What the settle that crossed a threshold knows: the numbers, not yet the words. The
    deliverer turns it into a `ThresholdAlert` (user, period end, a fresh portal link) when it
    sends it; PostgreSQL's `solaris_settle` writes the same payload (migration 0008)."""

    user_id: int
    percent: int
    used: int
    total: int
    balance: int
    period_start: int  # epoch seconds, 0 before the first period

    def to_payload(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "threshold": self.percent,
            "used": self.used,
            "total": self.total,
            "balance": self.balance,
            "period_start": self.period_start,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ThresholdRecord:
        return cls(
            user_id=int(payload["user_id"]),
            percent=int(payload["threshold"]),
            used=int(payload["used"]),
            total=int(payload["total"]),
            balance=int(payload["balance"]),
            period_start=int(payload["period_start"]),
        )


def threshold_key(user_id: int, period_start: int, percent: int, channel: str) -> str:
    """Once per user, period, threshold and channel (the same format as migration 0008's)."""
    return f"threshold:{user_id}:{period_start}:{percent}:{channel}"


def threshold_rows(
    record: ThresholdRecord, email: str | None, channels: Iterable[str], at: datetime
) -> list[Alert]:
    """One outbox row per channel: e-mail to the user (none without an address), webhooks to
    the operator."""
    rows = []
    for channel in channels:
        recipient = email if channel == "email" else OPERATOR
        if recipient:
            key = threshold_key(record.user_id, record.period_start, record.percent, channel)
            rows.append(
                Alert(KIND_USER_THRESHOLD, key, channel, recipient, record.to_payload(), at)
            )
    return rows


def crossed_thresholds(
    used_before: int, used_after: int, total: int, thresholds: Iterable[int]
) -> list[int]:
    """The thresholds (percent) that `used_before → used_after` crossed; integer math, no floats."""
    if total <= 0:
        return []
    return sorted(p for p in thresholds if used_before * 100 < p * total <= used_after * 100)
