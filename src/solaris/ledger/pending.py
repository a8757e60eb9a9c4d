"""Pending transfers, the request path's three ledger calls: reserve → settle | release.

A request first *reserves* billable tokens against `balance - reserved` (atomically: the account
row is locked, so concurrent requests on any number of gateway processes serialise on it). After
the upstream answers, *settle* writes the usage row and its ledger entry, debits the balance and
closes the reservation in one transaction, keyed by the request id so a retry never charges twice.
An upstream failure *releases* the reservation. A reservation nobody resolves (a killed process)
*expires*: it stops counting once `expires_at` has passed, swept whenever it would make a new
reservation smaller than wanted.

`Pending` is the protocol; `StatementPending` is the money rules written once in Python, as
SQLAlchemy statements that run on SQLite and PostgreSQL alike. `postgres.PostgresPending` is
the same rules as PL/pgSQL functions (one round trip each) for the PostgreSQL request path;
`tests/test_ledger_differential.py` holds the two to the same results.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.clock import Clock
from solaris.ledger.caps import Cap, spent
from solaris.ledger.lots import spend
from solaris.ledger.records import Hold, SettleOutcome, UsageRecord
from solaris.ledger.thresholds import Thresholds, crossed_thresholds, enqueue_thresholds
from solaris.metering.billing import ToolCharge
from solaris.store.database import Database, insert
from solaris.store.schema import accounts, ledger_entries, reservations, usage

__all__ = ["Pending", "StatementPending", "tool_calls_json", "tool_entries"]


class Pending(Protocol):
    """The request path's ledger calls; `start`/`close` open and close what they need."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def reserve(
        self,
        user_id: int,
        request_id: str,
        wanted: int,
        minimum: int,
        ttl_s: float,
        caps: Sequence[Cap] = (),
    ) -> Hold: ...
    async def settle(self, record: UsageRecord) -> SettleOutcome: ...
    async def release(self, user_id: int, request_id: str) -> None: ...


class StatementPending:
    """The rules as SQLAlchemy statements, one transaction per call (SQLite's request path)."""

    def __init__(self, database: Database, clock: Clock, thresholds: Thresholds) -> None:
        self.database = database
        self.clock = clock
        self.thresholds = thresholds

    async def start(self) -> None:
        """Nothing beyond the database engine to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def reserve(
        self,
        user_id: int,
        request_id: str,
        wanted: int,
        minimum: int,
        ttl_s: float,
        caps: Sequence[Cap] = (),
    ) -> Hold:
        """Hold up to `wanted` billable tokens, at least `minimum`, within the balance and each
        cap; 0 when not even that fits (the balance first, then the caps in order). Holds past
        their expiry stop counting whenever they would make this one smaller or meet a cap."""
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
            if reserved > 0 and (balance - reserved < wanted or caps):
                reserved -= await self._expire_overdue(conn, user_id, now)
            if balance - reserved < minimum:
                return Hold(0, balance)
            amount = min(wanted, balance - reserved)
            for index, cap in enumerate(caps):
                room = cap.tokens - await spent(conn, user_id, cap) - reserved
                if room < minimum:
                    return Hold(0, balance, refused_by=index)
                amount = min(amount, room)
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
                insert(self.database.dialect, usage)
                .values(_usage_row(record, now))
                .on_conflict_do_nothing(index_elements=["request_id"])
                .returning(usage.c.id)
            )
            if inserted.first() is None:
                return SettleOutcome(charged=0, already_settled=True)
            held = await self._resolve(conn, record.request_id, "settled", now)
            if record.billable:
                await spend(conn, record.user_id, record.billable)
                await conn.execute(ledger_entries.insert(), _usage_entries(record, now))
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


def _usage_entries(record: UsageRecord, now: datetime) -> list[dict[str, Any]]:
    """The tokens' entry and one per hosted tool, each a line of the statement."""
    entry = {"user_id": record.user_id, "kind": "usage", "request_id": record.request_id}
    entry |= {"created_by": "gateway", "created_at": now, "note": None}
    entries = []
    if record.token_billable:
        key = f"usage:{record.request_id}"
        entries.append({**entry, "amount": -record.token_billable, "idempotency_key": key})
    for charge, key, note in tool_entries(record):
        entries.append({**entry, "amount": -charge.amount, "idempotency_key": key, "note": note})
    return entries


def tool_entries(record: UsageRecord) -> list[tuple[ToolCharge, str, str]]:
    """Each hosted tool's charge with its entry's idempotency key and note."""
    return [
        (charge, f"tool:{record.request_id}:{charge.tool}", tool_note(charge))
        for charge in record.tool_charges
    ]


def tool_note(charge: ToolCharge) -> str:
    return f"{charge.tool}: {charge.calls} x {charge.price}"


def tool_calls_json(record: UsageRecord) -> str | None:
    if not record.tool_charges:
        return None
    calls = {c.tool: {"calls": c.calls, "price": c.price} for c in record.tool_charges}
    return orjson.dumps(calls).decode()


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
        "cache_write_tokens": record.cache_write_tokens,
        "weights": record.weights,
        "tool_calls": tool_calls_json(record),
        "tool_billable": record.tool_billable,
    }
