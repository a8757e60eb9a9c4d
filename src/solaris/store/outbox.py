"""The alert outbox: the row to write (`Alert`), and the table's operations: enqueue (in the
caller's transaction), claim, record.

Claiming leases rows instead of holding their locks while sending: it bumps `attempts` and moves
`next_attempt_at` past the lease in one short transaction, so no transaction (and on SQLite, not
the one write lock) is held while SMTP or a webhook answers. On PostgreSQL, `FOR UPDATE SKIP
LOCKED` lets processes claiming at once take disjoint rows. A process that dies mid-send leaves
its rows to be claimed again when the lease ends: delivery is at least once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Row, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.store.database import insert
from solaris.store.schema import ALERT_STATES, alert_outbox

__all__ = [
    "CHANNELS",
    "KIND_CAP_THRESHOLD",
    "KIND_RECEIPT",
    "KIND_SYSTEM",
    "KIND_USER_THRESHOLD",
    "OPERATOR",
    "Alert",
    "OutboxRow",
    "claim_due",
    "enqueue",
    "list_alerts",
    "purge_finished",
    "record_failure",
    "record_sent",
]

ERROR_CHARS_MAX = 1000
LIST_ROWS_MAX = 1000
KIND_USER_THRESHOLD = "user_threshold"
KIND_SYSTEM = "system"
KIND_RECEIPT = "receipt"  # a paid order's receipt, e-mailed to its buyer
KIND_CAP_THRESHOLD = "cap_threshold"  # a usage window or cap at a threshold (ledger/cap_alerts)
CHANNELS = ("email", "webhook")
OPERATOR = "operator"  # the recipient of webhooks: the configured URL, looked up at delivery


@dataclass(frozen=True)
class Alert:
    """One outbox row to write: one alert for one channel and recipient."""

    kind: str
    dedupe_key: str
    channel: str
    recipient: str
    payload: Mapping[str, Any]
    created_at: datetime

    def __post_init__(self) -> None:
        assert self.channel in CHANNELS, self.channel
        assert self.dedupe_key and len(self.dedupe_key) <= 255, self.dedupe_key
        assert self.recipient, "an alert needs a recipient"
        assert self.created_at.tzinfo is not None, "times are UTC-aware"


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: str
    dedupe_key: str
    channel: str
    recipient: str
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def of(cls, row: Row[Any]) -> OutboxRow:
        return cls(
            id=int(row.id),
            kind=row.kind,
            dedupe_key=row.dedupe_key,
            channel=row.channel,
            recipient=row.recipient,
            payload=orjson.loads(row.payload),
            state=row.state,
            attempts=int(row.attempts),
            next_attempt_at=row.next_attempt_at,
            last_error=row.last_error,
            created_at=row.created_at,
            sent_at=None if row.sent_at is None else row.sent_at,
        )


async def enqueue(conn: AsyncConnection, dialect: str, alert: Alert) -> bool:
    """Write `alert` as pending unless its dedupe key exists; True when it was new.

    Runs in the caller's transaction (the settle's), so the alert exists iff the settle does.
    On PostgreSQL a concurrent transaction inserting the same key waits for this one and then
    does nothing: exactly one row, whichever process settles."""
    inserted = await conn.execute(
        insert(dialect, alert_outbox)
        .values(
            kind=alert.kind,
            dedupe_key=alert.dedupe_key,
            channel=alert.channel,
            recipient=alert.recipient,
            payload=orjson.dumps(alert.payload).decode(),
            state="pending",
            attempts=0,
            next_attempt_at=alert.created_at,
            created_at=alert.created_at,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(alert_outbox.c.id)
    )
    return inserted.first() is not None


async def claim_due(
    conn: AsyncConnection,
    dialect: str,
    now: datetime,
    *,
    channels: Sequence[str],
    limit: int,
    lease_s: float,
    attempts_max: int,
) -> list[OutboxRow]:
    """Lease up to `limit` due rows of `channels` (oldest due first), counting the attempt now so
    a row that crashes its sender still runs out of attempts."""
    assert 0 < limit <= 1000 and lease_s > 0 and attempts_max > 0
    columns = alert_outbox.c
    await conn.execute(  # rows whose last attempt died with its process, out of attempts
        update(alert_outbox)
        .where(columns.state == "pending", columns.next_attempt_at <= now)
        .where(columns.attempts >= attempts_max)
        .values(state="failed", last_error="the last attempt did not finish (process stopped)")
    )
    due = (
        select(columns.id)
        .where(columns.state == "pending", columns.next_attempt_at <= now)
        .where(columns.channel.in_(channels))
        .order_by(columns.next_attempt_at, columns.id)
        .limit(limit)
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = [row.id for row in await conn.execute(due)]
    if not ids:
        return []
    claimed = await conn.execute(
        update(alert_outbox)
        .where(columns.id.in_(ids))
        .values(attempts=columns.attempts + 1, next_attempt_at=now + timedelta(seconds=lease_s))
        .returning(*alert_outbox.c)
    )
    return sorted((OutboxRow.of(row) for row in claimed), key=lambda row: row.id)


def _leased(row: OutboxRow) -> Any:
    # Only the claimer of this attempt may record its outcome (a lease that ran out may have
    # been claimed again by another process).
    columns = alert_outbox.c
    return (
        (columns.id == row.id) & (columns.state == "pending") & (columns.attempts == row.attempts)
    )


async def record_sent(conn: AsyncConnection, row: OutboxRow, now: datetime) -> None:
    await conn.execute(
        update(alert_outbox).where(_leased(row)).values(state="sent", sent_at=now, last_error=None)
    )


async def record_failure(
    conn: AsyncConnection, row: OutboxRow, error: str, retry_at: datetime | None
) -> None:
    """Schedule the next attempt at `retry_at`, or give up (state failed) when it is None."""
    values: dict[str, Any] = {"last_error": error[:ERROR_CHARS_MAX]}
    if retry_at is None:
        values["state"] = "failed"
    else:
        values["next_attempt_at"] = retry_at
    await conn.execute(update(alert_outbox).where(_leased(row)).values(**values))


async def list_alerts(
    conn: AsyncConnection, state: str | None = None, limit: int = 100
) -> list[OutboxRow]:
    """The newest alerts first, for `solaris alerts list` and the admin API."""
    assert state is None or state in ALERT_STATES, state
    query = select(alert_outbox).order_by(alert_outbox.c.id.desc()).limit(min(limit, LIST_ROWS_MAX))
    if state is not None:
        query = query.where(alert_outbox.c.state == state)
    return [OutboxRow.of(row) for row in await conn.execute(query)]


async def purge_finished(conn: AsyncConnection, before: datetime) -> int:
    """Delete alerts sent or given up before `before`; returns how many. Pending rows stay."""
    columns = alert_outbox.c
    deleted = await conn.execute(
        delete(alert_outbox)
        .where(columns.state.in_(("sent", "failed")), columns.created_at < before)
        .returning(columns.id)
    )
    return len(deleted.all())
