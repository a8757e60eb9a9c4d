"""Refused requests, kept for the statement: a request refused for want of balance or by a usage
window or cap moves no money, so it has no ledger entry; its refusal row says why, in the words
the user read. At most one row a reason a minute per user (the dedupe key), however often they
press Send; written after the answer, so the refused user waits for nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.store.database import Database, insert
from solaris.store.schema import refusals

__all__ = ["NOTE_CHARS_MAX", "note_refusal", "refusals_between"]

NOTE_CHARS_MAX = 1000


async def note_refusal(
    database: Database, user_id: int, reason: str, model: str, note: str, now: datetime
) -> None:
    key = f"{user_id}:{reason}:{int(now.timestamp()) // 60}"
    async with database.transaction() as conn:
        await conn.execute(
            insert(database.dialect, refusals)
            .values(
                user_id=user_id,
                reason=reason[:32],
                model=model[:128],
                note=note[:NOTE_CHARS_MAX],
                created_at=now,
                dedupe_key=key,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
        )


async def refusals_between(
    conn: AsyncConnection, user_id: int, start: datetime, end: datetime, limit: int
) -> list[Any]:
    query = (
        select(refusals.c.created_at, refusals.c.reason, refusals.c.model, refusals.c.note)
        .where(
            refusals.c.user_id == user_id,
            refusals.c.created_at >= start,
            refusals.c.created_at < end,
        )
        .order_by(refusals.c.created_at, refusals.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).all())
