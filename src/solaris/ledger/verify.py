"""`solaris ledger verify`: recompute every balance from the ledger and report differences.

Checked per user: the cached balance equals the sum of the user's entries; the lots hold
exactly the positive part of that balance; the held tokens equal the pending reservations; no
lot holds more than it was granted.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from solaris.store.database import Database
from solaris.store.schema import accounts, ledger_entries, lots, reservations, users

__all__ = ["Difference", "verify_ledger"]


@dataclass(frozen=True, slots=True)
class Difference:
    user: str
    check: str
    expected: int
    found: int


async def verify_ledger(database: Database) -> list[Difference]:
    entries = (
        select(ledger_entries.c.user_id, func.sum(ledger_entries.c.amount).label("total"))
        .group_by(ledger_entries.c.user_id)
        .subquery()
    )
    remaining = (
        select(lots.c.user_id, func.sum(lots.c.remaining).label("total"))
        .group_by(lots.c.user_id)
        .subquery()
    )
    pending = (
        select(reservations.c.user_id, func.sum(reservations.c.amount).label("total"))
        .where(reservations.c.state == "pending")
        .group_by(reservations.c.user_id)
        .subquery()
    )
    query = (
        select(
            users.c.external_id,
            accounts.c.balance,
            accounts.c.reserved,
            func.coalesce(entries.c.total, 0).label("entries"),
            func.coalesce(remaining.c.total, 0).label("lots"),
            func.coalesce(pending.c.total, 0).label("pending"),
        )
        .join(accounts, accounts.c.user_id == users.c.id)
        .outerjoin(entries, entries.c.user_id == users.c.id)
        .outerjoin(remaining, remaining.c.user_id == users.c.id)
        .outerjoin(pending, pending.c.user_id == users.c.id)
        .order_by(users.c.id)
    )
    overfull = (
        select(users.c.external_id, lots.c.amount, lots.c.remaining)
        .join(lots, lots.c.user_id == users.c.id)
        .where((lots.c.remaining > lots.c.amount) | (lots.c.remaining < 0))
    )
    differences: list[Difference] = []
    async with database.transaction() as conn:
        for row in await conn.execute(query):
            balance, entries_sum = int(row.balance), int(row.entries)
            checks = (
                ("balance = sum of entries", entries_sum, balance),
                ("lots = positive balance", max(entries_sum, 0), int(row.lots)),
                ("held = pending reservations", int(row.pending), int(row.reserved)),
            )
            differences.extend(
                Difference(row.external_id, check, expected, found)
                for check, expected, found in checks
                if expected != found
            )
        for lot in await conn.execute(overfull):
            differences.append(
                Difference(
                    lot.external_id, "lot within its amount", int(lot.amount), int(lot.remaining)
                )
            )
    return differences
