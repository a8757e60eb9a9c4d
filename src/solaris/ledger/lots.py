"""Lots: the credits a balance is made of, spent in the order the money model promises.

Every function here runs inside the caller's transaction, after the caller has locked the
user's account row, and keeps `sum(lots.remaining) == max(accounts.balance, 0)`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.store.schema import accounts, ledger_entries, lots

__all__ = ["SPENDING_ORDER", "add_lot", "expire_lots", "next_expiry", "spend"]

# Allowance first, then credits, soonest-expiring first (never-expiring last), oldest first.
SPENDING_ORDER = (
    case((lots.c.kind == "allowance", 0), else_=1),
    lots.c.expires_at.is_(None),
    lots.c.expires_at,
    lots.c.id,
)


async def add_lot(
    conn: AsyncConnection,
    user_id: int,
    kind: str,
    amount: int,
    entry_key: str,
    expires_at: datetime | None,
    balance_before: int,
    now: datetime,
) -> None:
    """A credit's lot; an overdraft (negative balance) is paid from it first."""
    assert amount > 0
    remaining = max(0, amount + min(balance_before, 0))
    await conn.execute(
        lots.insert().values(
            user_id=user_id,
            kind=kind,
            amount=amount,
            remaining=remaining,
            expires_at=expires_at,
            entry_key=entry_key,
            created_at=now,
        )
    )


async def spend(conn: AsyncConnection, user_id: int, amount: int) -> None:
    """Take `amount` from the user's lots in spending order; what they lack is an overdraft."""
    left = amount
    rows = await conn.execute(
        select(lots.c.id, lots.c.remaining)
        .where(lots.c.user_id == user_id, lots.c.remaining > 0)
        .order_by(*SPENDING_ORDER)
        .with_for_update()
    )
    for lot_id, remaining in rows.all():
        if left == 0:
            break
        take = min(int(remaining), left)
        await conn.execute(
            update(lots).where(lots.c.id == lot_id).values(remaining=lots.c.remaining - take)
        )
        left -= take


async def expire_lots(
    conn: AsyncConnection, user_id: int, now: datetime, *, allowance_only: bool = False
) -> int:
    """Expire the user's lots due by `now` (or, with `allowance_only`, every allowance lot):
    each leaves an expiry entry. Returns the tokens expired."""
    query = select(lots.c.id, lots.c.kind, lots.c.remaining).where(
        lots.c.user_id == user_id, lots.c.remaining > 0
    )
    if allowance_only:
        query = query.where(lots.c.kind == "allowance")
    else:
        query = query.where(lots.c.expires_at <= now)
    expired = 0
    for lot_id, kind, remaining in (await conn.execute(query.with_for_update())).all():
        await conn.execute(update(lots).where(lots.c.id == lot_id).values(remaining=0))
        await conn.execute(
            ledger_entries.insert().values(
                user_id=user_id,
                kind="expiry",
                amount=-int(remaining),
                idempotency_key=f"expiry:{lot_id}",
                note=f"{kind} expired",
                created_by="gateway",
                created_at=now,
            )
        )
        expired += int(remaining)
    if expired:
        await conn.execute(
            update(accounts)
            .where(accounts.c.user_id == user_id)
            .values(balance=accounts.c.balance - expired)
        )
    return expired


async def next_expiry(conn: AsyncConnection, user_id: int) -> datetime | None:
    soonest: datetime | None = await conn.scalar(
        select(func.min(lots.c.expires_at)).where(lots.c.user_id == user_id, lots.c.remaining > 0)
    )
    return soonest
