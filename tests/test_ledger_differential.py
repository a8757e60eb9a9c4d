"""The money rules written twice agree: SQLite's `Ledger` (Python) and `PostgresPending` (PL/pgSQL).

The same random sequence of reserve / settle (over or under the hold) / release / expire / grant
/ deduct / period change / credit expiry / block runs on both, with one scripted clock whose
instants have fractions of a second (the 72ffedc drift: SQL rounded a period start that Python
truncated, so one crossing made two alert keys). Afterwards every observable result must be
equal: what each call returned, the ledger entries, the account row, the lots, the
reservations' states and the alert outbox keys. Each database's usage rollup, rolled up as the
clock advances, reports the days its usage rows make.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from solaris.config import PlanConfig
from solaris.ledger.caps import Cap
from solaris.ledger.ledger import Ledger, UsageRecord
from solaris.ledger.plans import Plans
from solaris.ledger.postgres import PostgresPending
from solaris.ledger.thresholds import Thresholds
from solaris.ledger.users import Users
from solaris.metering.billing import ToolCharge
from solaris.reports.rollup import SETTLED_WITHIN_S, roll_up, verify_rollup
from solaris.reports.usage import usage_report
from solaris.store.database import Database, migrate, open_database
from solaris.store.outbox import list_alerts
from solaris.store.schema import accounts, ledger_entries, lots, reservations, usage
from tests.conftest import new_postgres_database

START = datetime(2026, 3, 30, 23, 59, 58, 900_000, tzinfo=UTC)  # .9 s: rounding shows
TTL_S = 600
ZONE = ZoneInfo("America/Sao_Paulo")
THRESHOLDS = Thresholds(percents=(50, 80, 100), channels=("email", "webhook"))

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(1, 3000), st.integers(1, 200)),
        st.tuples(st.just("settle"), st.integers(0, 5), st.integers(-200, 400)),
        st.tuples(st.just("release"), st.integers(0, 5), st.just(0)),
        st.tuples(st.just("grant"), st.integers(1, 3000), st.sampled_from([0, 2, 40])),
        st.tuples(st.just("deduct"), st.integers(1, 1500), st.just(0)),
        st.tuples(st.just("advance"), st.sampled_from([0.3, 45, 700, 86_400 * 3]), st.just(0)),
        st.tuples(
            st.just("plan"), st.sampled_from(["basic", "pro", "rolling", "capped"]), st.just(0)
        ),
    ),
    min_size=5,
    max_size=60,
)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Side:
    """One implementation on its own database, driven by the shared script."""

    def __init__(self, database: Database, ledger: Ledger, clock: Clock) -> None:
        self.database = database
        self.ledger = ledger
        self.clock = clock
        self.users = Users(ledger)
        self.user_id = 0
        self.open: list[str] = []  # request ids of pending holds, in order

    async def setup(self) -> None:
        plans = Plans(self.database)
        for name, config in (
            ("basic", PlanConfig(allowance_tokens=1000, default=True)),
            ("pro", PlanConfig(allowance_tokens=4000)),
            ("rolling", PlanConfig(allowance_tokens=900, rollover=True)),
            ("capped", PlanConfig(allowance_tokens=800, rollover=True, rollover_max_percent=25)),
        ):
            async with self.database.transaction() as conn:
                await plans.save(conn, name, config, self.clock())
        user = await self.users.ensure("diff-" + uuid.uuid4().hex[:8], "diff@example.com")
        self.user_id = user.id
        await self.refresh()

    async def refresh(self) -> None:
        subscription = await self.users.plans.of_user(self.user_id)
        async with self.database.transaction() as conn:
            await self.ledger.refresh(
                conn, self.user_id, subscription.plan, subscription.anchored_at, self.clock()
            )

    def _caps(self, seed: int) -> tuple[Cap, ...]:
        """A rolling window, a model cap (whose pattern `_` must not read as LIKE's wildcard),
        both, or none: the same for both sides."""
        now = self.clock()
        window = Cap("hours", 2500, now - timedelta(hours=2), None, hours=2)
        model = Cap("model", 1800, now - timedelta(days=1), now, pattern="gpt-4o-m?n*")
        literal = Cap("model", 10, now - timedelta(days=1), now, pattern="gpt_4o*")
        return ((), (window,), (model, literal), (window, model))[seed % 4]

    async def step(self, operation: str, first: Any, second: Any) -> object:
        ledger, user = self.ledger, self.user_id
        if operation == "reserve":
            request_id = f"r{len(self.open)}-{uuid.uuid4().hex[:6]}"
            wanted, minimum = max(first, second), min(first, second)
            hold = await ledger.reserve(user, request_id, wanted, minimum, TTL_S, self._caps(first))
            if hold.amount:
                self.open.append(request_id)
                return ("held", hold.amount, hold.balance)
            if hold.balance < minimum:
                await ledger.note_exhausted(user)
            return ("refused", hold.balance, hold.refused_by)
        if operation in ("settle", "release"):
            if not self.open:
                return None
            request_id = self.open.pop(first % len(self.open))
            if operation == "release":
                await ledger.release(user, request_id)
                return "released"
            held = await self._held(request_id)
            billable = max(0, held + second)  # the provider may report more than was held
            record = UsageRecord(
                request_id, user, "responses", "gpt-4o-mini", billable, 0, 0, 0, billable, False,
                "ok", 1, cache_write_tokens=second % 7, weights='{"input": "1.25"}',
                tool_charges=_tools(billable, second),
            )  # fmt: skip
            outcome = await ledger.settle(record)
            again = await ledger.settle(record)  # a retry charges nothing more
            assert again.already_settled and again.charged == 0
            return (outcome.charged, outcome.crossed, outcome.balance)
        if operation == "grant":
            expires = None if second == 0 else self.clock() + timedelta(days=second)
            async with self.database.transaction() as conn:
                key = f"grant-{uuid.uuid4().hex}"
                await ledger.credit(conn, user, "grant", first, key, "test", expires_at=expires)
            return None
        if operation == "deduct":
            async with self.database.transaction() as conn:
                await ledger.deduct(conn, user, first, uuid.uuid4().hex, "test", "correction")
            return None
        if operation == "plan":
            async with self.database.transaction() as conn:
                await self.users.change_plan(conn, user, first, by="test")
            return None
        await self.refresh()  # "advance": the clock moved (by the caller) — periods, expiry
        return None

    async def _held(self, request_id: str) -> int:
        async with self.database.transaction() as conn:
            amount = await conn.scalar(
                select(reservations.c.amount).where(reservations.c.id == request_id)
            )
        return int(amount or 0)

    async def state(self) -> dict[str, object]:
        """Everything observable, with the user's id and random keys written out."""
        user = self.user_id
        async with self.database.transaction() as conn:
            entries = [
                (
                    row.kind,
                    int(row.amount),
                    row.note,
                    _moment(row.created_at),
                    _settle_key(row.idempotency_key),
                )
                for row in await conn.execute(
                    select(ledger_entries)
                    .where(ledger_entries.c.user_id == user)
                    .order_by(ledger_entries.c.id)
                )
            ]
            usage_rows = [
                (
                    int(row.billable),
                    int(row.cache_write_tokens),
                    row.weights,
                    row.tool_calls,
                    int(row.tool_billable),
                )
                for row in await conn.execute(
                    select(usage).where(usage.c.user_id == user).order_by(usage.c.id)
                )
            ]
            account = (await conn.execute(select(accounts).where(accounts.c.user_id == user))).one()
            lot_rows = [
                (row.kind, int(row.amount), int(row.remaining), _moment(row.expires_at))
                for row in await conn.execute(
                    select(lots).where(lots.c.user_id == user).order_by(lots.c.id)
                )
            ]
            holds = sorted(
                (re.sub(r"-\w+$", "", row.id), row.state, int(row.amount))
                for row in await conn.execute(
                    select(reservations).where(reservations.c.user_id == user)
                )
            )
            alerts = sorted(
                (
                    _key_without_user(row.dedupe_key),
                    sorted((k, v) for k, v in row.payload.items() if k != "user_id"),
                )
                for row in await list_alerts(conn, limit=1000)
                if _key_user(row.dedupe_key) == user
            )
        return {
            "entries": entries,
            "usage": usage_rows,
            "account": {
                "balance": int(account.balance),
                "reserved": int(account.reserved),
                "period_used": int(account.period_used),
                "period_offered": int(account.period_offered),
                "period_start": _moment(account.period_start),
                "next_expiry": _moment(account.next_expiry),
            },
            "lots": lot_rows,
            "holds": holds,
            "alerts": alerts,
        }


async def _days_of_rows(database: Database) -> dict[str, tuple[int, int]]:
    """(requests, billable) per local day, from every usage row of the database."""
    days: dict[str, tuple[int, int]] = {}
    async with database.transaction() as conn:
        for row in await conn.execute(select(usage.c.created_at, usage.c.billable)):
            day = row.created_at.astimezone(ZONE).date().isoformat()
            requests, billable = days.get(day, (0, 0))
            days[day] = (requests + 1, billable + int(row.billable))
    return days


async def _days_reported(database: Database) -> dict[str, tuple[int, int]]:
    """The same from `usage_report` by day: the rollup's buckets and the rows after its mark."""
    report = await usage_report(database, by="day", zone=ZONE)
    return {row.key: (row.requests, row.billable) for row in report}


def _settle_key(key: str) -> str | None:
    """A settle's entry key without its request id: `usage`, or `tool:<tool>`."""
    if key.startswith("usage:"):
        return "usage"
    return "tool:" + key.rsplit(":", 1)[1] if key.startswith("tool:") else None


def _tools(billable: int, variant: int) -> tuple[ToolCharge, ...]:
    """Hosted tool charges within a settle's `billable`: none, one beside the tokens, or two
    that are all of it (so the tokens have no entry of their own)."""
    if variant % 4 == 1 and billable >= 8:
        return (ToolCharge("web_search_call", 2, billable // 4),)
    if variant % 4 == 3 and billable >= 2:
        half = billable // 2
        return (
            ToolCharge("file_search_call", 1, half),
            ToolCharge("web_search_call", 1, billable - half),
        )
    return ()


def _key_user(key: str) -> int | None:
    """The user of a threshold alert's key, `threshold:<user>:<period start>:<percent>:…`."""
    parts = key.split(":")
    return int(parts[1]) if parts[0] == "threshold" else None


def _key_without_user(key: str) -> str:
    kind, _user, rest = key.split(":", 2)
    return f"{kind}:U:{rest}"


def _moment(value: datetime | None) -> str | None:
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    with new_postgres_database() as url:
        yield url


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=OPERATIONS)
def test_sqlite_and_postgresql_ledgers_agree(
    script: list[tuple[str, Any, Any]], postgres_database: str, tmp_path_factory: Any
) -> None:
    async def run() -> None:
        clock = Clock()
        sqlite = open_database(f"sqlite:///{tmp_path_factory.mktemp('diff')}/diff.db", 1)
        postgres = open_database(postgres_database, 2)
        dsn = postgres_database.replace("postgresql://", "postgres://")
        postgres_pending = PostgresPending(dsn, 2, clock, THRESHOLDS)
        sides = [
            Side(sqlite, Ledger(sqlite, clock, THRESHOLDS), clock),
            Side(postgres, Ledger(postgres, clock, THRESHOLDS, postgres_pending), clock),
        ]
        try:
            for side in sides:
                await migrate(side.database)
                await side.ledger.start()
                await side.setup()
            wall = datetime.now(UTC)  # the rollup's clock: the mark was made at migration
            for step, (operation, first, second) in enumerate(script):
                if operation == "advance":
                    clock.now += timedelta(seconds=first)
                    wall += timedelta(seconds=SETTLED_WITHIN_S)
                    for side in sides:  # folds in what the last roll saw: reports stay exact
                        await roll_up(side.database, wall)
                results = [await side.step(operation, first, second) for side in sides]
                assert results[0] == results[1], (step, operation, first, second, results)
            states = [await side.state() for side in sides]
            for name in states[0]:
                assert states[0][name] == states[1][name], name
            for side in sides:
                assert await _days_of_rows(side.database) == await _days_reported(side.database)
                assert await verify_rollup(side.database) == []
        finally:
            for side in sides:
                await side.ledger.close()
                await side.database.close()

    asyncio.run(run())
