"""Large histories (#16): the reads of a 10 M-row usage history on PostgreSQL, timed.

    uv run python bench/history.py                    # fresh database, 10 M rows, ~5 minutes
    uv run python bench/history.py --rows 500000      # a quick try
    uv run python bench/history.py --keep             # keep solaris_history_bench afterwards…
    uv run python bench/history.py --reuse            # …and time it again (migrated to head)

Creates `solaris_history_bench`, migrates it with the project's own `migrate`, fills it
(`history_fill.py`), then calls the functions the faces call, in process, with the clock at
`history_fill.NOW` (the last day of a month, so "this month" holds 30 days of rows): the
statement of the heaviest user and of typical users (`Operations.statement`, as the portal, the
admin API and `solaris statement` read it), its CSV (`Statement.write_csv`), `usage_report` by
user, model and day over the last 30 days (`solaris usage report`), and the dashboard overview
(`Operations.overview` and its 30-day chart, `Operations.daily_usage`). Each runs `--runs` times
after one warm-up; p50 and p95 are printed. Every SQL statement a call sends that reads usage
or ledger entries is then run once more under `EXPLAIN (ANALYZE, BUFFERS)`, into `--plans`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event

from history_fill import NOW, fill
from solaris.config import Settings
from solaris.ledger.ledger import Ledger
from solaris.ledger.users import Users
from solaris.operations.core import Operations
from solaris.operations.resources import Standalone
from solaris.reports.rollup import SETTLED_WITHIN_S, roll_up
from solaris.reports.usage import Grouping, usage_report
from solaris.store.database import Database, migrate, open_database

ADMIN_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DATABASE = "solaris_history_bench"
GOAL_MS = 100.0
HEAVY_USER = 1  # the fill's skew makes user 1 the heaviest
Call = Callable[[], Awaitable[object]]


def _url(database: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + database


async def _prepare(options: argparse.Namespace) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if exists and options.reuse:
            print(f"reusing {DATABASE} (migrated to head below)")
            return
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await admin.close()
    database = open_database(_url(DATABASE))
    try:
        await migrate(database)
    finally:
        await database.close()
    print(f"filling {DATABASE}: {options.rows:,} usage rows, {options.users:,} users")
    started = time.perf_counter()
    conn = await asyncpg.connect(_url(DATABASE))
    try:
        await fill(conn, options.rows, options.users)
    finally:
        await conn.close()
    print(f"filled in {time.perf_counter() - started:.0f} s")


def _operations(database: Database) -> Operations:
    """The CLI's `Operations.standalone`, with the clock at the end of the history."""
    resources = Standalone(Settings(database_url=_url(DATABASE)), database)
    resources.ledger = Ledger(database, clock=lambda: NOW)
    resources.users = Users(resources.ledger)
    return Operations(resources)


def _calls(
    database: Database, operations: Operations, users: int, period: tuple[datetime, datetime]
) -> dict[str, Call]:
    month_start, month_end = period  # the current period, as `solaris statement` reads it
    typical = _cycle(range(users * 2 // 5, users + 1, max(1, users * 3 // 200)))  # 40 users

    async def statement_heavy() -> object:
        return await operations.statement(HEAVY_USER, month_start, month_end)

    async def statement_typical() -> object:
        return await operations.statement(next(typical), month_start, month_end)

    async def csv_month() -> object:
        found = await operations.statement(HEAVY_USER, month_start, month_end)
        found.write_csv(io.StringIO())
        return found

    async def csv_year() -> object:
        found = await operations.statement(HEAVY_USER, NOW - timedelta(days=365), NOW)
        found.write_csv(io.StringIO())
        return found

    def report(by: Grouping) -> Call:
        async def call() -> object:
            since, zone = NOW - timedelta(days=30), operations.zone
            return await usage_report(database, by=by, since=since, until=NOW, zone=zone)

        return call

    async def overview() -> object:
        return await operations.overview()

    async def chart() -> object:
        return await operations.daily_usage(None, 30)

    return {
        "statement, heaviest user, this month": statement_heavy,
        "statement, typical users, this month": statement_typical,
        "CSV export, heaviest user, this month": csv_month,
        "usage report --by user, 30 days": report("user"),
        "usage report --by model, 30 days": report("model"),
        "usage report --by day, 30 days": report("day"),
        "dashboard overview (Operations.overview)": overview,
        "dashboard overview chart (daily_usage, 30 days)": chart,
        "CSV export, heaviest user, 365 days (extra)": csv_year,
    }


def _cycle(values: range) -> Iterator[int]:
    while True:
        yield from values


def _percentile(sorted_ms: list[float], fraction: float) -> float:
    return sorted_ms[max(0, math.ceil(fraction * len(sorted_ms)) - 1)]


async def _time(call: Call, runs: int, budget_s: float) -> list[float]:
    """`runs` timed calls, or fewer (3 at least) once they have taken `budget_s`."""
    await call()  # warm-up: the first call also compiles SQLAlchemy's statement cache
    times: list[float] = []
    while len(times) < runs and (len(times) < 3 or sum(times) < 1000 * budget_s):
        started = time.perf_counter()
        await call()
        times.append(1000 * (time.perf_counter() - started))
    return sorted(times)


@contextmanager
def _captured(database: Database) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (and their parameters) sent while inside."""
    sent: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_args: Any) -> None:
        sent.append((sql, parameters))

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def _plans(database: Database, name: str, call: Call) -> str:
    with _captured(database) as sent:
        await call()
    seen: set[str] = set()
    out = []
    for sql, parameters in sent:
        reads_history = "usage" in sql or "ledger_entries" in sql
        if sql in seen or not sql.lstrip().upper().startswith("SELECT") or not reads_history:
            continue
        seen.add(sql)
        async with database.engine.connect() as conn:
            result = await conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + sql, tuple(parameters or ())
            )
            plan = "\n".join(str(row[0]) for row in result)
            await conn.rollback()
        out.append(f"-- {name}\n{sql}\n-- parameters: {parameters!r}\n{plan}\n")
    return "\n".join(out)


async def _roll_up(database: Database) -> None:
    """What the gateways' rollup does after the fill, timed: it steps ROLL_ROWS_MAX ids at a
    time, each settling delay passed at once (a moving clock)."""
    started, folded, idle = time.perf_counter(), 0, 0
    wall = datetime.now(UTC)
    while idle < 2:  # one idle step to see the newest id, one to find nothing after it
        wall += timedelta(seconds=SETTLED_WITHIN_S)
        step = await roll_up(database, wall)
        folded, idle = folded + step, 0 if step else idle + 1
    print(f"rolled up {folded:,} usage ids in {time.perf_counter() - started:.0f} s")


async def _measure(options: argparse.Namespace) -> int:
    database = open_database(_url(DATABASE))
    try:
        await migrate(database)  # on --reuse: whatever migrations the code has gained
        await _roll_up(database)
        operations = _operations(database)
        period = await operations.current_period(HEAVY_USER)
        assert (period[0].day, period[1].day) == (1, 1), period  # a calendar month
        calls = _calls(database, operations, options.users, period)
        plans = []
        print(f"\n| query | runs | p50 ms | p95 ms | p95 ≤ {GOAL_MS:.0f} ms |")
        print("|---|---|---|---|---|")
        for name, call in calls.items():
            times = await _time(call, options.runs, options.budget)
            p50, p95 = _percentile(times, 0.5), _percentile(times, 0.95)
            verdict = "met" if p95 <= GOAL_MS else "**missed**"
            print(f"| {name} | {len(times)} | {p50:.1f} | {p95:.1f} | {verdict} |", flush=True)
        for name, call in calls.items():
            plans.append(await _plans(database, name, call))
        options.plans.write_text("\n\n".join(plans))
        print(f"\nplans: {options.plans}")
        return 0
    finally:
        await database.close()


async def _drop() -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    finally:
        await admin.close()


async def main_async(options: argparse.Namespace) -> int:
    await _prepare(options)
    try:
        return await _measure(options)
    finally:
        if not options.keep:
            await _drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="usage rows")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20, help="timed calls of each query")
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds per query: fewer runs (3+) after"
    )
    parser.add_argument("--keep", action="store_true", help=f"keep {DATABASE} afterwards")
    parser.add_argument("--reuse", action="store_true", help=f"time {DATABASE} as it is")
    parser.add_argument("--plans", type=Path, default=Path(__file__).with_name("HISTORY.plans.txt"))
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
