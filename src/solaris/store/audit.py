"""The audit log: every change an admin (or the CLI) makes, who, what, when, before and after.

Rows are written by `record` inside the transaction of the change they describe, so a change
and its audit row commit or vanish together. The table is append-only (triggers refuse UPDATE
and DELETE, migration 0007).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.store.schema import audit_log

__all__ = ["AUDIT_ROWS_MAX", "CLI_ACTOR", "Actor", "AuditEntry", "audit_entries", "record"]

AUDIT_ROWS_MAX = 1000  # one page at most
ACTOR_LENGTH_MAX = 128


@dataclass(frozen=True)
class Actor:
    """Who makes a change: "admin:3" (signed in), "apikey:7" (an admin API key), "cli"."""

    label: str

    def __post_init__(self) -> None:
        assert 0 < len(self.label) <= ACTOR_LENGTH_MAX, self.label


CLI_ACTOR = Actor("cli")


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None
    before: Any
    after: Any


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, default=str).decode()


async def record(
    conn: AsyncConnection,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str | int | None,
    before: Any,
    after: Any,
    now: datetime,
) -> None:
    """One audit row, in the caller's transaction (the change's own)."""
    await conn.execute(
        audit_log.insert().values(
            at=now,
            actor=actor.label,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            before=_json(before),
            after=_json(after),
        )
    )


async def audit_entries(
    conn: AsyncConnection,
    limit: int,
    offset: int,
    target_type: str | None = None,
    target_id: str | None = None,
) -> list[AuditEntry]:
    """Newest first; at most AUDIT_ROWS_MAX."""
    assert limit >= 0 and offset >= 0, (limit, offset)
    query = select(audit_log).order_by(audit_log.c.id.desc())
    if target_type is not None:
        query = query.where(audit_log.c.target_type == target_type)
    if target_id is not None:
        query = query.where(audit_log.c.target_id == target_id)
    rows = await conn.execute(query.limit(min(limit, AUDIT_ROWS_MAX)).offset(offset))
    return [
        AuditEntry(
            id=int(row.id),
            at=row.at,
            actor=row.actor,
            action=row.action,
            target_type=row.target_type,
            target_id=row.target_id,
            before=None if row.before is None else orjson.loads(row.before),
            after=None if row.after is None else orjson.loads(row.after),
        )
        for row in rows
    ]
