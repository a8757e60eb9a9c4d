"""The ledger: a user's balance as the sum of append-only entries, what time does to it
(allowance periods, credit expiry), credits and corrections — and the request path's pending
transfers (`pending.py`: reserve → settle | release | expire), by whichever implementation the
database gets.

Every writer locks the user's account row first, so concurrent writers serialise on it and lock
orders never cross.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.clock import DEFAULT_TIMEZONE, Clock, utcnow
from solaris.ledger.caps import Cap
from solaris.ledger.lots import add_lot, expire_lots, next_expiry, spend
from solaris.ledger.pending import Pending, StatementPending
from solaris.ledger.periods import period_bounds
from solaris.ledger.plans import Plan
from solaris.ledger.records import Hold, SettleOutcome, UsageRecord
from solaris.ledger.thresholds import (
    NO_THRESHOLDS,
    Thresholds,
    enqueue_thresholds,
)
from solaris.store.database import Database, insert
from solaris.store.schema import accounts, ledger_entries, reservations

__all__ = ["Hold", "Ledger", "SettleOutcome", "UsageRecord"]  # the records, for callers' ease

DEFAULT_ZONE = ZoneInfo(DEFAULT_TIMEZONE)  # SOLARIS_TIMEZONE's default, for tests and tools
# Credits granted with an expiry by another process are swept within this long.
REFRESH_CHECK_S = 60.0
DUE_ENTRIES_MAX = 100_000


class Ledger:
    def __init__(
        self,
        database: Database,
        clock: Clock = utcnow,
        thresholds: Thresholds = NO_THRESHOLDS,
        pending: Pending | None = None,
        zone: ZoneInfo = DEFAULT_ZONE,
    ) -> None:
        self.database = database
        self.clock = clock
        self.zone = zone  # SOLARIS_TIMEZONE: where calendar periods start
        self.thresholds = thresholds
        self.pending = pending or StatementPending(database, clock, thresholds)
        self._due: OrderedDict[int, datetime] = OrderedDict()
        self._exhausted: OrderedDict[int, datetime] = OrderedDict()  # user → last looked

    async def start(self) -> None:
        await self.pending.start()

    async def close(self) -> None:
        await self.pending.close()

    async def reserve(
        self,
        user_id: int,
        request_id: str,
        wanted: int,
        minimum: int,
        ttl_s: float,
        caps: Sequence[Cap] = (),
    ) -> Hold:
        """Hold up to `wanted` billable tokens, at least `minimum`, within each cap
        (`pending.Pending`)."""
        return await self.pending.reserve(user_id, request_id, wanted, minimum, ttl_s, caps)

    async def settle(self, record: UsageRecord) -> SettleOutcome:
        """Charge what was used, close the reservation; idempotent by request id."""
        return await self.pending.settle(record)

    async def release(self, user_id: int, request_id: str) -> None:
        """The call failed: free the hold, charge nothing."""
        await self.pending.release(user_id, request_id)

    async def note_exhausted(self, user_id: int) -> None:
        """A user blocked for want of balance has, for the alerts, used all of the period even
        when what is left is too little for a request to cross 100%: raise that alert (once
        per period by its key; once written, this process looks again only after
        REFRESH_CHECK_S, so a user pressing Send while blocked costs no extra call each time)."""
        if 100 not in self.thresholds.percents:
            return
        now = self.clock()
        checked = self._exhausted.get(user_id)
        if checked is not None and now < checked + timedelta(seconds=REFRESH_CHECK_S):
            return
        async with self.database.transaction() as conn:
            account = (
                await conn.execute(
                    select(
                        accounts.c.balance,
                        accounts.c.period_used,
                        accounts.c.period_offered,
                        accounts.c.period_start,
                    ).where(accounts.c.user_id == user_id)
                )
            ).one()
            if int(account.period_offered) <= 0:
                return  # nothing was offered this period (yet): nothing to alert about
            await enqueue_thresholds(
                conn, self.database.dialect, self.thresholds, user_id, [100], account, now
            )
        self._exhausted[user_id] = now
        self._exhausted.move_to_end(user_id)
        if len(self._exhausted) > DUE_ENTRIES_MAX:
            self._exhausted.popitem(last=False)

    async def balance(self, user_id: int) -> tuple[int, int]:
        """(balance, reserved-and-not-expired) of one user."""
        now = self.clock()
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(select(accounts.c.balance).where(accounts.c.user_id == user_id))
            ).one()
            held = await conn.scalar(
                select(func.coalesce(func.sum(reservations.c.amount), 0)).where(
                    reservations.c.user_id == user_id,
                    reservations.c.state == "pending",
                    reservations.c.expires_at > now,
                )
            )
        return int(row.balance), int(held or 0)

    async def credit(
        self,
        conn: AsyncConnection,
        user_id: int,
        kind: str,
        amount: int,
        idempotency_key: str,
        created_by: str,
        note: str | None = None,
        expires_at: datetime | None = None,
    ) -> bool:
        """Add a credit entry and its lot inside the caller's transaction; False if the key
        was used already (a repeated grant or purchase credits once)."""
        assert amount > 0 and kind in ("allowance", "grant", "purchase", "refund"), (kind, amount)
        now = self.clock()
        balance = await conn.scalar(
            select(accounts.c.balance).where(accounts.c.user_id == user_id).with_for_update()
        )
        assert balance is not None, f"user {user_id} has no account"
        if not await self._append(conn, user_id, kind, amount, idempotency_key, created_by, note):
            return False
        await add_lot(conn, user_id, kind, amount, idempotency_key, expires_at, int(balance), now)
        await conn.execute(
            update(accounts)
            .where(accounts.c.user_id == user_id)
            .values(
                balance=accounts.c.balance + amount,
                period_offered=accounts.c.period_offered + amount,
            )
        )
        await self._note_expiry(conn, user_id)
        return True

    async def deduct(
        self,
        conn: AsyncConnection,
        user_id: int,
        amount: int,
        idempotency_key: str,
        created_by: str,
        note: str,
    ) -> bool:
        """An operator's correction downwards: an `adjustment` entry, spent from the lots like
        usage (never an edit of an earlier entry). False if the key was used already."""
        assert amount > 0 and note, (amount, note)
        await conn.execute(
            select(accounts.c.user_id).where(accounts.c.user_id == user_id).with_for_update()
        )
        if not await self._append(
            conn, user_id, "adjustment", -amount, idempotency_key, created_by, note
        ):
            return False
        await spend(conn, user_id, amount)
        await conn.execute(
            update(accounts)
            .where(accounts.c.user_id == user_id)
            .values(
                balance=accounts.c.balance - amount,
                period_offered=func.max(accounts.c.period_offered - amount, 0)
                if self.database.dialect == "sqlite"
                else func.greatest(accounts.c.period_offered - amount, 0),
            )
        )
        return True

    def period(self, plan: Plan, anchored_at: datetime, now: datetime) -> tuple[datetime, datetime]:
        """[start, end) of the plan's period around `now`, in the operator's zone."""
        return period_bounds(plan.period, plan.anchor, anchored_at, now, self.zone)

    async def refresh_if_due(self, user_id: int, plan: Plan, anchored_at: datetime) -> None:
        """`refresh` when this process has not checked since the user's next boundary or
        expiry (at most every REFRESH_CHECK_S): the request path skips the database otherwise."""
        due = self._due.get(user_id)
        now = self.clock()
        if due is not None and now < due:
            return
        async with self.database.transaction() as conn:
            next_due = await self.refresh(conn, user_id, plan, anchored_at, now)
        self._due[user_id] = min(next_due, now + timedelta(seconds=REFRESH_CHECK_S))
        self._due.move_to_end(user_id)
        if len(self._due) > DUE_ENTRIES_MAX:
            self._due.popitem(last=False)

    async def refresh(
        self,
        conn: AsyncConnection,
        user_id: int,
        plan: Plan,
        anchored_at: datetime,
        now: datetime,
        *,
        new_plan: bool = False,
    ) -> datetime:
        """Apply what time has done to the user's balance by `now`: expire due lots, grant the
        period's allowance if a new period began (`new_plan`: replace it now). Idempotent;
        returns when it is next due."""
        account = (
            await conn.execute(
                select(accounts.c.period_start, accounts.c.next_expiry)
                .where(accounts.c.user_id == user_id)
                .with_for_update()
            )
        ).one()
        due = account.next_expiry
        if due is not None and due <= now:
            await expire_lots(conn, user_id, now)
        start, end = self.period(plan, anchored_at, now)
        granted = account.period_start
        # A start less than half a period after the one granted is that same period seen from
        # another zone (SOLARIS_TIMEZONE changed): renewing then would grant it twice.
        if new_plan or granted is None or start - granted > (end - start) / 2:
            # Unused allowance expires, unless the plan rolls it over; with a cap, it all
            # expires and what the cap allows comes back as an entry of its own.
            carried, cap = 0, plan.rollover_cap()
            if new_plan or not plan.rollover:
                await expire_lots(conn, user_id, now, allowance_only=True)
            elif cap is not None:
                carried = min(cap, await expire_lots(conn, user_id, now, allowance_only=True))
            # A new period offers what is left now (after expiry) plus what is credited below.
            await conn.execute(
                update(accounts)
                .where(accounts.c.user_id == user_id)
                .values(period_start=start, period_used=0, period_offered=accounts.c.balance)
            )
            if carried:
                await self.credit(
                    conn,
                    user_id,
                    "allowance",
                    carried,
                    idempotency_key=f"rollover:{user_id}:{start.isoformat()}",
                    created_by="gateway",
                    note=f"rolled over from the period before (plan {plan.name}: at most {cap})",
                )
            if plan.allowance_tokens:
                # A period's allowance is granted once, whoever asks first; a plan change
                # grants a fresh one inside the same transaction that records the change.
                key = (
                    f"allowance:{user_id}:change:{uuid.uuid4().hex}"
                    if new_plan
                    else f"allowance:{user_id}:{start.isoformat()}"
                )
                await self.credit(
                    conn,
                    user_id,
                    "allowance",
                    plan.allowance_tokens,
                    idempotency_key=key,
                    created_by="gateway",
                    note=f"allowance of plan {plan.name}",
                    expires_at=None if plan.rollover else end,
                )
        soonest = await self._note_expiry(conn, user_id)
        return min(end, soonest) if soonest else end

    async def _append(
        self,
        conn: AsyncConnection,
        user_id: int,
        kind: str,
        amount: int,
        idempotency_key: str,
        created_by: str,
        note: str | None,
    ) -> bool:
        """One ledger entry, once per idempotency key; False when the key was used already."""
        inserted = await conn.execute(
            insert(self.database.dialect, ledger_entries)
            .values(
                user_id=user_id,
                kind=kind,
                amount=amount,
                idempotency_key=idempotency_key,
                note=note,
                created_by=created_by,
                created_at=self.clock(),
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(ledger_entries.c.id)
        )
        return inserted.first() is not None

    async def _note_expiry(self, conn: AsyncConnection, user_id: int) -> datetime | None:
        soonest = await next_expiry(conn, user_id)
        await conn.execute(
            update(accounts).where(accounts.c.user_id == user_id).values(next_expiry=soonest)
        )
        return soonest
