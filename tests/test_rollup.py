"""The usage rollup behind the reports (solaris.reports.rollup): whatever order rows commit in
and however many processes fold them in, a report counts each usage row once, and `solaris
ledger verify` finds any sum that drifted from its rows."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from solaris.config import PlanConfig
from solaris.ledger.ledger import Ledger
from solaris.ledger.plans import DEFAULT_PLAN, Plans
from solaris.ledger.users import Users
from solaris.reports import rollup
from solaris.reports.rollup import SETTLED_WITHIN_S, roll_up, verify_rollup
from solaris.reports.usage import usage_report
from solaris.store.database import Database as Store
from solaris.store.database import migrate, open_database
from solaris.store.schema import usage, usage_rollup
from tests.conftest import Database, new_postgres_database

START = datetime(2026, 3, 1, 12, 7, tzinfo=UTC)
LATER = timedelta(seconds=SETTLED_WITHIN_S + 1)


async def _store(url: str) -> tuple[Store, int]:
    """A migrated database with a default plan and one user; the user's id."""
    store = open_database(url, pool_size=4)
    await migrate(store)
    async with store.transaction() as conn:
        await Plans(store).save(conn, DEFAULT_PLAN, PlanConfig(allowance_tokens=0), START)
    user = await Users(Ledger(store, lambda: START)).ensure("rollup-user")
    return store, user.id


def _row(user_id: int, at: datetime, billable: int = 10) -> dict[str, Any]:
    return {
        "request_id": uuid.uuid4().hex,
        "user_id": user_id,
        "endpoint": "chat",
        "model": "gpt-4o-mini",
        "prompt_tokens": billable - 1,
        "completion_tokens": 1,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "billable": billable,
        "estimated": False,
        "status": "ok",
        "latency_ms": 5,
        "created_at": at,
    }


async def _requests_and_billable(store: Store) -> tuple[int, int]:
    report = await usage_report(store, by="model", zone=ZoneInfo("UTC"))
    return sum(row.requests for row in report), sum(row.billable for row in report)


async def _catch_up(store: Store, now: datetime) -> datetime:
    """Rolls up until nothing is due, moving the clock past each wait; the clock."""
    while True:
        now += LATER
        if await roll_up(store, now) == 0 and await roll_up(store, now + LATER) == 0:
            return now + LATER


def test_a_row_that_commits_after_a_later_id_is_counted_once() -> None:
    """PostgreSQL hands ids out in order but commits in any order (SQLite, with one writer,
    commits in id order): the rollup reads only up to what it saw committed a settling time
    before, so the slow row is neither lost nor doubled."""
    with new_postgres_database() as url:
        asyncio.run(_slow_row_counted_once(url))


async def _slow_row_counted_once(url: str) -> None:
    store, user_id = await _store(url)
    try:
        now = datetime.now(UTC)
        async with store.transaction() as slow:
            await slow.execute(usage.insert().values(_row(user_id, START, billable=7)))
            async with store.transaction() as quick:
                await quick.execute(usage.insert().values(_row(user_id, START, billable=5)))
            now += LATER
            await roll_up(store, now)  # sees the quick row's id, the slow one's below it
            assert await _requests_and_billable(store) == (1, 5)
        assert await _requests_and_billable(store) == (2, 12)
        assert await roll_up(store, now + LATER) > 0  # folds both in
        async with store.transaction() as conn:
            rolled = await conn.scalar(select(func.sum(usage_rollup.c.billable)))
        assert rolled == 12
        assert await _requests_and_billable(store) == (2, 12)
        assert await verify_rollup(store) == []
    finally:
        await store.close()


def test_processes_rolling_up_together_fold_each_row_once(
    fresh_backend: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four processes (each its own pool) step through 600 rows 64 ids at a time, together,
    while rows keep arriving: the sums are the rows', and reports agree before and after."""
    monkeypatch.setattr(rollup, "ROLL_ROWS_MAX", 64)

    async def run() -> None:
        store, user_id = await _store(fresh_backend.url)
        others = [open_database(fresh_backend.url, pool_size=2) for _ in range(3)]
        try:
            rows = [_row(user_id, START + timedelta(minutes=i), billable=i + 1) for i in range(600)]
            now = datetime.now(UTC)
            for chunk in range(0, len(rows), 100):
                async with store.transaction() as conn:
                    await conn.execute(usage.insert(), rows[chunk : chunk + 100])
                now += LATER
                await asyncio.gather(*(roll_up(each, now) for each in [store, *others]))
            want = (len(rows), sum(row["billable"] for row in rows))
            assert await _requests_and_billable(store) == want
            await _catch_up(store, now)
            assert await _requests_and_billable(store) == want
            async with store.transaction() as conn:
                rolled = await conn.scalar(select(func.sum(usage_rollup.c.requests)))
            assert rolled == len(rows)
            assert await verify_rollup(store) == []
        finally:
            for each in others:
                await each.close()
            await store.close()

    asyncio.run(run())


def test_reports_over_partial_quarter_hours_read_the_rows_themselves(
    fresh_backend: Database,
) -> None:
    """A window that starts and ends inside quarter hours takes whole buckets from the rollup
    and the edges from the rows: each window's report equals the rows in it."""

    async def run() -> None:
        store, user_id = await _store(fresh_backend.url)
        try:
            times = [START + timedelta(minutes=3 * i, seconds=i) for i in range(60)]
            async with store.transaction() as conn:
                await conn.execute(
                    usage.insert(),
                    [_row(user_id, at, billable=i + 1) for i, at in enumerate(times)],
                )
            await _catch_up(store, datetime.now(UTC))
            for since, until in [
                (START + timedelta(minutes=4), START + timedelta(minutes=100)),
                (START + timedelta(minutes=20), START + timedelta(minutes=29)),
                (START - timedelta(hours=1), START + timedelta(minutes=53, seconds=30)),
            ]:
                report = await usage_report(
                    store, by="day", since=since, until=until, zone=ZoneInfo("America/Sao_Paulo")
                )
                inside = [i + 1 for i, at in enumerate(times) if since <= at < until]
                assert [(r.requests, r.billable) for r in report] == [(len(inside), sum(inside))]
        finally:
            await store.close()

    asyncio.run(run())


def test_verify_finds_a_sum_that_drifted_from_its_rows(fresh_backend: Database) -> None:
    async def run() -> None:
        store, user_id = await _store(fresh_backend.url)
        try:
            async with store.transaction() as conn:
                await conn.execute(usage.insert(), [_row(user_id, START), _row(user_id, START)])
            await _catch_up(store, datetime.now(UTC))
            assert await verify_rollup(store) == []
            async with store.transaction() as conn:
                await conn.execute(
                    update(usage_rollup).values(billable=usage_rollup.c.billable + 1)
                )
            (difference,) = await verify_rollup(store)
            assert difference.check.endswith("gpt-4o-mini billable")
            assert (difference.expected, difference.found) == (20, 21)
        finally:
            await store.close()

    asyncio.run(run())
