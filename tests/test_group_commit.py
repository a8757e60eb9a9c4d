"""Group commit on PostgreSQL: calls that arrive together share a transaction, and every
guarantee of one call at a time still holds (exact hard balance, idempotent settles, one call's
error its own)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import func, select, text

from solaris.clock import utcnow
from solaris.config import PlanConfig
from solaris.ledger.ledger import Ledger, UsageRecord
from solaris.ledger.plans import Plans
from solaris.ledger.postgres import PostgresPending
from solaris.ledger.thresholds import Thresholds
from solaris.ledger.users import Users
from solaris.ledger.verify import verify_ledger
from solaris.store.database import Database, migrate, open_database
from solaris.store.schema import usage
from tests.conftest import new_postgres_database

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

THRESHOLDS = Thresholds(percents=(80, 100), channels=("webhook",))
TTL_S = 600


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    with new_postgres_database() as url:
        yield url


class Books:
    def __init__(self, database: Database, ledger: Ledger) -> None:
        self.database = database
        self.ledger = ledger

    async def user(self, tokens: int) -> int:
        user = await Users(self.ledger).ensure("batch-" + uuid.uuid4().hex[:10])
        async with self.database.transaction() as conn:
            await self.ledger.credit(conn, user.id, "grant", tokens, uuid.uuid4().hex, "test")
        return user.id

    async def transactions(self, table: str, user_id: int) -> int:
        """How many transactions wrote this user's rows of `table` (each row keeps its xmin)."""
        query = text(f"SELECT count(DISTINCT xmin::text) FROM {table} WHERE user_id = :user")
        async with self.database.transaction() as conn:
            return int(await conn.scalar(query, {"user": user_id}) or 0)


@pytest.fixture
async def books(postgres_database: str) -> AsyncIterator[Books]:
    database = open_database(postgres_database, 2)
    await migrate(database)
    async with database.transaction() as conn:  # the plan new users get: no allowance
        await Plans(database).save(conn, "default", PlanConfig(allowance_tokens=0), utcnow())
    dsn = postgres_database.replace("postgresql://", "postgres://")
    ledger = Ledger(database, utcnow, THRESHOLDS, PostgresPending(dsn, 4, utcnow, THRESHOLDS))
    await ledger.start()
    try:
        yield Books(database, ledger)
    finally:
        await ledger.close()
        await database.close()


def record(user_id: int, request_id: str, billable: int) -> UsageRecord:
    return UsageRecord(
        request_id, user_id, "chat", "gpt-4o-mini", billable - 10, 10, 0, 0, billable, False,
        "ok", 5,
    )  # fmt: skip


async def test_parallel_calls_share_transactions_and_the_balance_stays_exact(
    books: Books,
) -> None:
    user_id = await books.user(50 * 100)  # room for exactly 50 holds of 100
    ledger = books.ledger
    ids = [f"req-{uuid.uuid4().hex}" for _ in range(200)]
    holds = await asyncio.gather(*(ledger.reserve(user_id, i, 100, 100, TTL_S) for i in ids))
    granted = [i for i, hold in zip(ids, holds, strict=True) if hold.amount]
    assert len(granted) == 50
    assert {hold.amount for hold in holds} == {0, 100}
    assert await ledger.balance(user_id) == (5000, 5000)
    assert await books.transactions("reservations", user_id) < 50  # they went together

    outcomes = await asyncio.gather(*(ledger.settle(record(user_id, i, 90)) for i in granted))
    assert sum(outcome.charged for outcome in outcomes) == 50 * 90
    # One settle crossed 80% (4000 of 5000).
    assert [o.crossed for o in outcomes if o.crossed] == [(80,)]
    again = await asyncio.gather(*(ledger.settle(record(user_id, i, 90)) for i in granted))
    assert all(outcome.already_settled for outcome in again)  # idempotent by request id
    assert await ledger.balance(user_id) == (5000 - 4500, 0)
    assert await books.transactions("usage", user_id) < 50
    async with books.database.transaction() as conn:
        rows = await conn.scalar(select(func.count()).where(usage.c.user_id == user_id))
    assert rows == 50
    assert await verify_ledger(books.database) == []


async def test_a_call_the_database_refuses_fails_alone(books: Books) -> None:
    user_id = await books.user(1000)
    ledger = books.ledger
    taken = f"req-{uuid.uuid4().hex}"
    await ledger.reserve(user_id, taken, 100, 100, TTL_S)
    # The same request id again (refused: a reservation's id is unique) amid good calls.
    calls = [ledger.reserve(user_id, f"req-{uuid.uuid4().hex}", 100, 100, TTL_S) for _ in range(5)]
    results = await asyncio.gather(
        *calls[:2], ledger.reserve(user_id, taken, 100, 100, TTL_S), *calls[2:],
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(results[2], asyncpg.UniqueViolationError)
    assert [getattr(hold, "amount", None) for i, hold in enumerate(results) if i != 2] == [100] * 5
    assert await ledger.balance(user_id) == (1000, 600)


async def test_a_caller_gone_while_its_hold_is_made_leaves_no_hold(books: Books) -> None:
    user_id = await books.user(1000)
    waiting = asyncio.ensure_future(
        books.ledger.reserve(user_id, f"req-{uuid.uuid4().hex}", 400, 400, TTL_S)
    )
    await asyncio.sleep(0)  # submitted, its batch not yet answered
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await books.ledger.pending.close()  # waits for what is in flight, the release included
    await books.ledger.pending.start()
    assert await books.ledger.balance(user_id) == (1000, 0)
