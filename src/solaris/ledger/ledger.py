"""Balances as pending transfers: reserve → settle | release | expire.

A request first *reserves* billable tokens against `balance - reserved` (atomically: the account
row is locked, so concurrent requests on any number of gateway processes serialise on it). After
the upstream answers, *settle* writes the usage row and its ledger entry, debits the balance and
closes the reservation in one transaction, keyed by the request id so a retry never charges twice.
An upstream failure *releases* the reservation. A reservation nobody resolves (a killed process)
*expires*: it stops counting against the balance once `expires_at` has passed.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.clock import Clock, utcnow
from solaris.ledger.lots import add_lot, expire_lots, next_expiry, spend
from solaris.ledger.periods import period_bounds
from solaris.ledger.plans import Plan
from solaris.ledger.thresholds import (
    NO_THRESHOLDS,
    Thresholds,
    crossed_thresholds,
    enqueue_thresholds,
)
from solaris.store.database import Database
from solaris.store.schema import accounts, ledger_entries, reservations, usage

__all__ = ["Hold", "Ledger", "SettleOutcome", "UsageRecord"]

# Credits granted with an expiry by another process are swept within this long.
REFRESH_CHECK_S = 60.0
DUE_ENTRIES_MAX = 100_000


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one finished request consumed; becomes one immutable usage row."""

    request_id: str
    user_id: int
    endpoint: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    billable: int
    estimated: bool
    status: str  # "ok" | "client_disconnected" | "upstream_cut"
    latency_ms: int
    conversation_id: str | None = None
    finished_at: datetime | None = None  # set when journaled: the replay keeps the real time

    def __post_init__(self) -> None:
        assert self.request_id, "a usage record needs its request id"
        assert self.billable >= 0, "billable tokens are never negative"
        assert min(self.prompt_tokens, self.completion_tokens) >= 0


@dataclass(frozen=True, slots=True)
class Hold:
    """What a reservation got: `amount` tokens held (0: refused), and the account's balance
    then, holds aside (a refusal with a balance of at least the minimum is the user's other
    requests still holding it, not a balance used up)."""

    amount: int
    balance: int


@dataclass(frozen=True, slots=True)
class SettleOutcome:
    charged: int
    already_settled: bool
    crossed: tuple[int, ...] = ()  # thresholds (percent of the period) this settle crossed
    balance: int | None = None  # after the settle, when a threshold was crossed
    journaled: bool = False  # the database was away: written to the journal, replayed later


class Ledger:
    def __init__(
        self, database: Database, clock: Clock = utcnow, thresholds: Thresholds = NO_THRESHOLDS
    ) -> None:
        self.database = database
        self.clock = clock
        self.thresholds = thresholds
        dialect = postgresql if database.dialect == "postgresql" else sqlite
        self._insert = dialect.insert
        self._due: OrderedDict[int, datetime] = OrderedDict()
        self._exhausted: OrderedDict[int, datetime] = OrderedDict()  # user → last looked

    async def start(self) -> None:
        """Open what the ledger needs beyond the database engine (nothing, here)."""

    async def close(self) -> None:
        """Close what `start` opened."""

    async def reserve(
        self, user_id: int, request_id: str, wanted: int, minimum: int, ttl_s: float
    ) -> Hold:
        """Hold up to `wanted` billable tokens, at least `minimum`; 0 when not even that fits.
        Holds past their expiry stop counting whenever they would make this one smaller."""
        assert 0 < minimum <= wanted, (minimum, wanted)
        now = self.clock()
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    select(accounts.c.balance, accounts.c.reserved)
                    .where(accounts.c.user_id == user_id)
                    .with_for_update()
                )
            ).one()
            balance, reserved = int(row.balance), int(row.reserved)
            if reserved > 0 and balance - reserved < wanted:
                reserved -= await self._expire_overdue(conn, user_id, now)
            if balance - reserved < minimum:
                return Hold(0, balance)
            amount = min(wanted, balance - reserved)
            await conn.execute(
                update(accounts)
                .where(accounts.c.user_id == user_id)
                .values(reserved=accounts.c.reserved + amount)
            )
            await conn.execute(
                reservations.insert().values(
                    id=request_id,
                    user_id=user_id,
                    amount=amount,
                    state="pending",
                    created_at=now,
                    expires_at=now + timedelta(seconds=ttl_s),
                )
            )
        return Hold(amount, balance)

    async def settle(self, record: UsageRecord) -> SettleOutcome:
        """Charge what was used, close the reservation; idempotent by request id."""
        now = record.finished_at or self.clock()
        async with self.database.transaction() as conn:
            inserted = await conn.execute(
                self._insert(usage)
                .values(_usage_row(record, now))
                .on_conflict_do_nothing(index_elements=["request_id"])
                .returning(usage.c.id)
            )
            if inserted.first() is None:
                return SettleOutcome(charged=0, already_settled=True)
            held = await self._resolve(conn, record.request_id, "settled", now)
            if record.billable:
                await spend(conn, record.user_id, record.billable)
                await conn.execute(
                    ledger_entries.insert().values(
                        user_id=record.user_id,
                        kind="usage",
                        amount=-record.billable,
                        idempotency_key=f"usage:{record.request_id}",
                        request_id=record.request_id,
                        created_by="gateway",
                        created_at=now,
                    )
                )
            account = (
                await conn.execute(
                    update(accounts)
                    .where(accounts.c.user_id == record.user_id)
                    .values(
                        balance=accounts.c.balance - record.billable,
                        reserved=accounts.c.reserved - held,
                        period_used=accounts.c.period_used + record.billable,
                    )
                    .returning(
                        accounts.c.balance,
                        accounts.c.period_used,
                        accounts.c.period_offered,
                        accounts.c.period_start,
                    )
                )
            ).one()
            used = int(account.period_used)
            crossed = crossed_thresholds(
                used - record.billable, used, int(account.period_offered), self.thresholds.percents
            )
            if crossed:  # in the settle's transaction: exactly once (row lock + unique key)
                await enqueue_thresholds(
                    conn,
                    self.database.dialect,
                    self.thresholds,
                    record.user_id,
                    crossed,
                    account,
                    now,
                )
        if crossed:
            return SettleOutcome(record.billable, False, tuple(crossed), int(account.balance))
        return SettleOutcome(charged=record.billable, already_settled=False)

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

    async def release(self, user_id: int, request_id: str) -> None:
        """The call failed: free the hold, charge nothing."""
        now = self.clock()
        async with self.database.transaction() as conn:
            held = await self._resolve(conn, request_id, "released", now)
            if held:
                await conn.execute(
                    update(accounts)
                    .where(accounts.c.user_id == user_id)
                    .values(reserved=accounts.c.reserved - held)
                )

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

    async def refresh_if_due(self, user_id: int, plan: Plan, anchored_at: datetime) -> None:
        """`refresh` when this process has not checked since the user's next boundary or
        expiry (at most every REFRESH_CHECK_S): the request path skips the database otherwise."""
        due = self._due.get(user_id)
        now = self.clock()
        if due is not None and now < due:
            return
        next_due = await self.refresh(user_id, plan, anchored_at)
        self._due[user_id] = min(next_due, now + timedelta(seconds=REFRESH_CHECK_S))
        self._due.move_to_end(user_id)
        if len(self._due) > DUE_ENTRIES_MAX:
            self._due.popitem(last=False)

    async def refresh(self, user_id: int, plan: Plan, anchored_at: datetime) -> datetime:
        """Apply what time has done to the user's balance: expire due lots, grant the period's
        allowance if a new period began. Idempotent; returns when it is next due."""
        now = self.clock()
        async with self.database.transaction() as conn:
            return await self.refresh_in(conn, user_id, plan, anchored_at, now)

    async def refresh_in(
        self,
        conn: AsyncConnection,
        user_id: int,
        plan: Plan,
        anchored_at: datetime,
        now: datetime,
        *,
        new_plan: bool = False,
    ) -> datetime:
        """`refresh` inside the caller's transaction; `new_plan` replaces the allowance now."""
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
        start, end = period_bounds(plan.period, plan.anchor, anchored_at, now)
        granted = account.period_start
        if new_plan or granted is None or start > granted:
            if new_plan or not plan.rollover:
                await expire_lots(conn, user_id, now, allowance_only=True)
            # A new period offers what is left now (after expiry) plus what is credited below.
            await conn.execute(
                update(accounts)
                .where(accounts.c.user_id == user_id)
                .values(period_start=start, period_used=0, period_offered=accounts.c.balance)
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
            self._insert(ledger_entries)
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

    async def _expire_overdue(self, conn: AsyncConnection, user_id: int, now: datetime) -> int:
        """Expire this user's reservations past their deadline; returns the tokens freed."""
        expired = await conn.execute(
            update(reservations)
            .where(
                reservations.c.user_id == user_id,
                reservations.c.state == "pending",
                reservations.c.expires_at <= now,
            )
            .values(state="expired", resolved_at=now)
            .returning(reservations.c.amount)
        )
        freed = sum(int(row.amount) for row in expired)
        if freed:
            await conn.execute(
                update(accounts)
                .where(accounts.c.user_id == user_id)
                .values(reserved=accounts.c.reserved - freed)
            )
        return freed

    async def _resolve(
        self, conn: AsyncConnection, request_id: str, state: str, now: datetime
    ) -> int:
        """Close a pending reservation; returns what it held (0 if it had expired meanwhile)."""
        closed = await conn.execute(
            update(reservations)
            .where(reservations.c.id == request_id, reservations.c.state == "pending")
            .values(state=state, resolved_at=now)
            .returning(reservations.c.amount)
        )
        amount = closed.scalar()
        return int(amount or 0)


def _usage_row(record: UsageRecord, now: datetime) -> dict[str, Any]:
    return {
        "request_id": record.request_id,
        "user_id": record.user_id,
        "endpoint": record.endpoint,
        "model": record.model,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cached_tokens": record.cached_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "billable": record.billable,
        "estimated": record.estimated,
        "status": record.status,
        "latency_ms": record.latency_ms,
        "conversation_id": record.conversation_id,
        "created_at": now,
    }
