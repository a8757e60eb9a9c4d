"""The money model with an injectable clock: periods, expiry, spending order, plan changes,
statements and `ledger verify` — on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from solaris.config import PlanConfig
from solaris.ledger.ledger import Ledger, UsageRecord
from solaris.ledger.plans import Plans
from solaris.ledger.statement import Statement, StatementLine, statement
from solaris.ledger.users import User, Users
from solaris.ledger.verify import verify_ledger
from solaris.store.database import Database, migrate, open_database
from solaris.store.schema import ledger_entries, lots, plan_changes
from tests.conftest import _pg

START = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('money')}/money.db"
        return
    admin = request.getfixturevalue("postgres_url")  # fails under CI=true without PostgreSQL
    name = "solaris_money_" + uuid.uuid4().hex[:10]
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    yield admin.rsplit("/", 1)[0] + "/" + name
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class World:
    database: Database
    clock: Clock
    ledger: Ledger
    users: Users

    async def user(self, plan: str = "basic") -> User:
        user = await self.users.ensure("u-" + uuid.uuid4().hex[:10])
        if plan != "basic":
            await self.change_plan(user, plan, by="test")
        return user

    async def change_plan(self, user: User, plan: str, by: str) -> None:
        async with self.database.transaction() as conn:
            await self.users.change_plan(conn, user.id, plan, by=by)

    async def use(self, user: User, billable: int) -> None:
        request_id = uuid.uuid4().hex
        held = (await self.ledger.reserve(user.id, request_id, billable, 1, 600)).amount
        assert held > 0
        record = UsageRecord(
            request_id, user.id, "chat", "gpt-4o-mini", billable, 0, 0, 0, billable, False, "ok", 5
        )
        await self.ledger.settle(record)

    async def refresh(self, user: User) -> None:
        subscription = await self.users.plans.of_user(user.id)
        async with self.database.transaction() as conn:
            await self.ledger.refresh(
                conn, user.id, subscription.plan, subscription.anchored_at, self.clock()
            )

    async def grant(self, user: User, amount: int, expires_in_days: float | None = None) -> None:
        expires = (
            None if expires_in_days is None else self.clock() + timedelta(days=expires_in_days)
        )
        async with self.database.transaction() as conn:
            await self.ledger.credit(
                conn, user.id, "grant", amount, uuid.uuid4().hex, "test", expires_at=expires
            )

    async def deduct(self, user: User, amount: int) -> None:
        async with self.database.transaction() as conn:
            await self.ledger.deduct(conn, user.id, amount, uuid.uuid4().hex, "test", "correction")

    async def balance(self, user: User) -> int:
        balance, _held = await self.ledger.balance(user.id)
        return balance

    async def remaining(self, user: User) -> list[int]:
        async with self.database.transaction() as conn:
            rows = await conn.execute(
                select(lots.c.remaining).where(lots.c.user_id == user.id).order_by(lots.c.id)
            )
            return [int(r.remaining) for r in rows]


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    database = open_database(database_url, pool_size=2)
    await migrate(database)
    clock = Clock()
    plans = Plans(database)
    async with database.transaction() as conn:
        await plans.save(conn, "basic", PlanConfig(allowance_tokens=1000, default=True), clock())
        await plans.save(conn, "rolling", PlanConfig(allowance_tokens=1000, rollover=True), clock())
        await plans.save(conn, "pro", PlanConfig(allowance_tokens=5000), clock())
        capped = PlanConfig(allowance_tokens=1000, rollover=True, rollover_max_tokens=250)
        await plans.save(conn, "capped", capped, clock())
        tenth = PlanConfig(allowance_tokens=1000, rollover=True, rollover_max_percent=10)
        await plans.save(conn, "tenth", tenth, clock())
        await plans.save(
            conn,
            "calendar-daily",
            PlanConfig(allowance_tokens=100, period="daily", anchor="calendar"),
            clock(),
        )
    ledger = Ledger(database, clock)
    yield World(database, clock, ledger, Users(ledger))
    await database.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


pytestmark = pytest.mark.anyio


async def test_allowance_renews_at_the_period_boundary_without_rollover(world: World) -> None:
    user = await world.user()
    assert await world.balance(user) == 1000
    await world.use(user, 300)
    world.clock.now = datetime(2026, 2, 28, 9, 59, tzinfo=UTC)  # Jan 31 + 1 month, clamped
    await world.refresh(user)
    assert await world.balance(user) == 700
    world.clock.advance(minutes=1)
    await world.refresh(user)
    await world.refresh(user)  # idempotent
    assert await world.balance(user) == 1000
    assert await verify_ledger(world.database) == []


async def test_rollover_keeps_what_was_left(world: World) -> None:
    user = await world.user("rolling")
    await world.use(user, 400)
    world.clock.advance(days=31)
    await world.refresh(user)
    assert await world.balance(user) == 600 + 1000


async def test_rollover_carries_at_most_its_cap_as_an_entry_of_its_own(world: World) -> None:
    user = await world.user("capped")
    await world.grant(user, 100)  # a credit is not allowance: it never counts against the cap
    await world.use(user, 400)  # 600 of the allowance left
    world.clock.advance(days=31)
    await world.refresh(user)
    await world.refresh(user)  # idempotent
    assert await world.balance(user) == 250 + 1000 + 100
    world.clock.advance(days=31)  # nothing used: 1250 of allowance left, still at most 250
    await world.refresh(user)
    assert await world.balance(user) == 250 + 1000 + 100
    result = await statement(
        world.database, user.id, user.external_id, START, world.clock() + timedelta(days=1)
    )
    rolled = [line for line in result.lines if "rolled over" in (line.note or "")]
    assert [(line.kind, line.amount) for line in rolled] == [("allowance", 250), ("allowance", 250)]
    # One expiry per lot: the first plan's allowance (at the change), what the first period
    # left, then both lots of the second (what was carried, and that period's allowance).
    expired = [line.amount for line in result.lines if line.kind == "expiry"]
    assert expired == [-1000, -600, -250, -1000]
    assert await verify_ledger(world.database) == []


async def test_a_rollover_cap_in_percent_follows_the_allowance(world: World) -> None:
    user = await world.user("tenth")
    await world.use(user, 500)
    world.clock.advance(days=31)
    await world.refresh(user)
    assert await world.balance(user) == 100 + 1000


def test_a_rollover_cap_needs_rollover_and_is_one_kind() -> None:
    with pytest.raises(ValueError, match="needs rollover"):
        PlanConfig(allowance_tokens=10, rollover_max_tokens=5)
    with pytest.raises(ValueError, match="not both"):
        PlanConfig(
            allowance_tokens=10, rollover=True, rollover_max_tokens=5, rollover_max_percent=5
        )


async def test_a_gateway_down_over_boundaries_renews_once_for_the_current_period(
    world: World,
) -> None:
    user = await world.user()
    world.clock.advance(days=100)
    await world.refresh(user)
    assert await world.balance(user) == 1000
    async with world.database.transaction() as conn:
        kinds = [
            row.kind
            for row in await conn.execute(
                select(ledger_entries.c.kind).where(ledger_entries.c.user_id == user.id)
            )
        ]
    assert kinds.count("allowance") == 2 and kinds.count("expiry") == 1


async def test_calendar_periods_start_at_the_operators_midnight(world: World) -> None:
    user = await world.user("calendar-daily")
    await world.use(user, 60)
    world.clock.now = datetime(2026, 2, 1, 2, 59, tzinfo=UTC)  # 23:59 in São Paulo (the default)
    await world.refresh(user)
    assert await world.balance(user) == 40
    world.clock.now = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)  # local midnight
    await world.refresh(user)
    assert await world.balance(user) == 100
    subscription = await world.users.plans.of_user(user.id)
    start, end = world.ledger.period(subscription.plan, subscription.anchored_at, world.clock())
    assert (start, end) == (world.clock(), world.clock() + timedelta(days=1))


async def test_spending_order_allowance_then_soonest_expiring_credits(world: World) -> None:
    user = await world.user()  # lot 1: allowance 1000
    await world.grant(user, 50, expires_in_days=10)  # lot 2
    await world.grant(user, 50, expires_in_days=5)  # lot 3: expires first
    await world.grant(user, 50)  # lot 4: never expires
    await world.use(user, 1020)
    assert await world.remaining(user) == [0, 50, 30, 50]
    await world.use(user, 40)
    assert await world.remaining(user) == [0, 40, 0, 50]
    world.clock.advance(days=11)
    await world.refresh(user)  # lot 2 has expired; the period (to Feb 28) has not ended
    assert (await world.remaining(user))[:4] == [0, 0, 0, 50]
    assert await verify_ledger(world.database) == []


async def test_plan_change_takes_effect_at_once_and_is_recorded(world: World) -> None:
    user = await world.user()
    await world.use(user, 200)
    await world.change_plan(user, "pro", by="admin@test")
    assert await world.balance(user) == 5000
    assert (await world.users.plans.of_user(user.id)).plan.name == "pro"
    async with world.database.transaction() as conn:
        changes = (
            await conn.execute(select(plan_changes).where(plan_changes.c.user_id == user.id))
        ).all()
    assert [(c.from_plan, c.to_plan) for c in changes] == [(None, "basic"), ("basic", "pro")]
    assert await verify_ledger(world.database) == []


async def test_statement_adds_up_to_the_enforced_balance_and_exports_csv(world: World) -> None:
    user = await world.user()
    await world.grant(user, 300, expires_in_days=3)
    await world.use(user, 250)
    world.clock.advance(days=4)
    await world.refresh(user)  # the grant's unspent part expires
    await world.change_plan(user, "pro", by="test")
    await world.use(user, 120)
    month = datetime(2026, 1, 1, tzinfo=UTC)
    result = await statement(
        world.database, user.id, user.external_id, month, month + timedelta(days=62)
    )
    kinds = [line.kind for line in result.lines]
    assert {"allowance", "grant", "usage", "expiry"} <= set(kinds)
    assert result.opening == 0
    assert result.closing == result.opening + sum(line.amount for line in result.lines)
    assert result.closing == await world.balance(user) == 5000 - 120
    usage_line = next(line for line in result.lines if line.kind == "usage")
    assert usage_line.model == "gpt-4o-mini" and usage_line.estimated is False
    buffer = io.StringIO()
    result.write_csv(buffer)
    rows = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert rows[0][:3] == ["date", "kind", "model"]
    assert len(rows) == len(result.lines) + 1
    grant_line = next(line for line in result.lines if line.kind == "grant")
    assert grant_line.expires_at is not None and usage_line.expires_at is None
    table = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    [grant_row] = [row for row in table if row["kind"] == "grant"]
    assert grant_row["expires_at"] == grant_line.expires_at.isoformat()
    # What was added and what was taken, each in its own column, add up to the closing balance.
    debits, credits = (
        sum(int(row[column] or 0) for row in table) for column in ("debit", "credit")
    )
    assert all(not (row["debit"] and row["credit"]) for row in table)
    assert credits - debits == result.closing - result.opening


def test_csv_cells_that_a_spreadsheet_would_run_are_written_as_text() -> None:
    """Tab and carriage return too (the pages strip them from notes, the gateway refuses them in
    model names, but a CSV must not depend on that); numbers stay numbers."""
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [
        StatementLine(moment, "grant", 5, 5, note="\t=cmd|' /C calc'!A0"),
        StatementLine(moment, "usage", -9, -4, model="\r=1+1", prompt_tokens=3),
    ]
    buffer = io.StringIO()
    Statement("u", moment, moment + timedelta(days=1), 0, lines, -4, False).write_csv(buffer)
    grant, used = csv.DictReader(io.StringIO(buffer.getvalue()))
    assert grant["note"] == "'\t=cmd|' /C calc'!A0" and used["model"] == "'\r=1+1"
    assert (grant["credit"], used["debit"], used["balance"]) == ("5", "9", "-4")


async def test_verify_finds_a_row_edited_behind_the_ledgers_back(world: World) -> None:
    user = await world.user()
    await world.use(user, 10)
    assert await verify_ledger(world.database) == []
    async with world.database.transaction() as conn:
        await conn.execute(
            text("UPDATE accounts SET balance = balance + 5 WHERE user_id = :u"), {"u": user.id}
        )
    differences = await verify_ledger(world.database)
    assert [(d.user, d.check, d.found - d.expected) for d in differences] == [
        (user.external_id, "balance = sum of entries", 5)
    ]
    async with world.database.transaction() as conn:  # put it back for the other tests
        await conn.execute(
            text("UPDATE accounts SET balance = balance - 5 WHERE user_id = :u"), {"u": user.id}
        )


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("use"), st.integers(1, 400)),
        st.tuples(st.just("grant"), st.integers(1, 300)),
        st.tuples(st.just("grant_expiring"), st.integers(1, 300)),
        st.tuples(st.just("advance"), st.integers(1, 20)),
        st.tuples(st.just("plan"), st.sampled_from(["basic", "pro", "rolling"])),
        st.tuples(st.just("release"), st.integers(1, 100)),
        st.tuples(st.just("deduct"), st.integers(1, 500)),
    ),
    min_size=50,
    max_size=250,
)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS)
def test_verify_holds_after_random_operations(
    database_url: str, operations: list[tuple[str, object]], tmp_path: Path
) -> None:
    async def run() -> None:
        database = open_database(database_url, pool_size=2)
        await migrate(database)
        clock = Clock()
        ledger = Ledger(database, clock)
        users = Users(ledger)
        world = World(database, clock, ledger, users)
        plans = Plans(database)
        async with database.transaction() as conn:
            for name, allowance in (("basic", 1000), ("pro", 5000)):
                config = PlanConfig(allowance_tokens=allowance, default=name == "basic")
                await plans.save(conn, name, config, clock())
            rolling = PlanConfig(allowance_tokens=1000, rollover=True)
            await plans.save(conn, "rolling", rolling, clock())
        user = await world.user()
        for operation, argument in operations:
            assert isinstance(argument, int | str)
            if operation == "use":
                balance, held = await ledger.balance(user.id)
                if balance - held >= 1:
                    await world.use(user, min(int(argument), balance - held))
            elif operation == "grant":
                await world.grant(user, int(argument))
            elif operation == "grant_expiring":
                await world.grant(user, int(argument), expires_in_days=3)
            elif operation == "advance":
                clock.advance(days=int(argument))
                await world.refresh(user)
            elif operation == "plan":
                await world.change_plan(user, str(argument), by="test")
            elif operation == "deduct":  # may overdraw: the next credit pays the debt first
                await world.deduct(user, int(argument))
            else:
                request_id = uuid.uuid4().hex
                if (await ledger.reserve(user.id, request_id, int(argument), 1, 600)).amount:
                    await ledger.release(user.id, request_id)
        assert await verify_ledger(database) == []
        await database.close()

    asyncio.run(run())
