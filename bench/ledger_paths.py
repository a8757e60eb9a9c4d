"""What one request's accounting (reserve + settle) costs, several ways, one request at a time.

    uv run python bench/ledger_paths.py          # fresh database, migrated, dropped afterwards

A. `Ledger` (SQLAlchemy Core on asyncpg, statement by statement: 7 statements plus BEGIN/COMMIT
   twice = 11 round trips). The gateway's path on SQLite, and on PostgreSQL before it had SQL
   functions.
B. the same statements and transactions sent with raw asyncpg (prepared, from an asyncpg pool);
C. one statement for the reservation and one for the settlement (data-modifying CTEs), raw asyncpg;
D. `PostgresPending`, when the code has it: the gateway's PostgreSQL request path (one call to a
   PL/pgSQL function per phase, raw asyncpg pool).

All write the same rows (usage row, reservation, ledger entry, account update), so the differences
are the client stack and the number of round trips, not the work in PostgreSQL. B and C are
sketches for measurement, not the gateway's code (C leaves out the expiry of overdue reservations,
only needed when a balance is short). `bench/run.py` runs this after its wrk runs and puts the
table in the report.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from solaris.ledger.ledger import Ledger, UsageRecord
from solaris.store.database import migrate, open_database

WANTED, MINIMUM, BILLABLE, TTL_S = 4104, 24, 24, 900
GRANT = 10_000_000_000

RESERVE_ONE_STATEMENT = """
WITH account AS (
    SELECT user_id, LEAST($3::bigint, balance - reserved) AS amount
    FROM accounts WHERE user_id = $1 FOR UPDATE
), held AS (
    UPDATE accounts a SET reserved = a.reserved + account.amount
    FROM account WHERE a.user_id = account.user_id AND account.amount >= $4
    RETURNING account.amount
)
INSERT INTO reservations (id, user_id, amount, state, created_at, expires_at)
SELECT $2, $1, amount, 'pending', $5, $6 FROM held
RETURNING amount"""

SETTLE_ONE_STATEMENT = """
WITH used AS (
    INSERT INTO usage (request_id, user_id, endpoint, model, prompt_tokens, completion_tokens,
                       cached_tokens, reasoning_tokens, billable, estimated, status, latency_ms,
                       conversation_id, created_at)
    VALUES ($1, $2, 'chat', 'gpt-4o-mini', 8, 16, 0, 0, $3, false, 'ok', 1, NULL, $4)
    ON CONFLICT (request_id) DO NOTHING
    RETURNING id
), closed AS (
    UPDATE reservations SET state = 'settled', resolved_at = $4
    WHERE id = $1 AND state = 'pending' AND EXISTS (SELECT 1 FROM used)
    RETURNING amount
), entry AS (
    INSERT INTO ledger_entries (user_id, kind, amount, idempotency_key, request_id, created_by,
                                created_at)
    SELECT $2, 'usage', -$3::bigint, 'usage:' || $1, $1, 'gateway', $4 FROM used
)
UPDATE accounts
SET balance = balance - $3::bigint, reserved = reserved - coalesce((SELECT amount FROM closed), 0)
WHERE user_id = $2 AND EXISTS (SELECT 1 FROM used)"""


@dataclass(frozen=True)
class PathCost:
    key: str  # "sqlalchemy" | "raw" | "cte" | "functions"
    name: str
    round_trips: int
    wall_ms: float
    cpu_ms: float


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _time(one: Callable[[], Awaitable[None]], count: int) -> tuple[float, float]:
    for _ in range(max(20, count // 10)):
        await one()
    wall, cpu = time.perf_counter(), _cpu_s()
    for _ in range(count):
        await one()
    return 1000 * (time.perf_counter() - wall) / count, 1000 * (_cpu_s() - cpu) / count


def _record(request_id: str, user_id: int) -> UsageRecord:
    return UsageRecord(
        request_id, user_id, "chat", "gpt-4o-mini", 8, 16, 0, 0, BILLABLE, False, "ok", 1
    )


async def _new_user(pool: Any, external_id: str) -> int:
    """A user with a large balance, written directly (the Users API is not what is measured)."""
    async with pool.acquire() as conn, conn.transaction():
        user_id: int = await conn.fetchval(
            "INSERT INTO users (external_id, created_at) VALUES ($1, now()) RETURNING id",
            external_id,
        )
        await conn.execute(
            "INSERT INTO accounts (user_id, balance, reserved) VALUES ($1, $2, 0)",
            user_id,
            GRANT,
        )
        await conn.execute(
            "INSERT INTO ledger_entries (user_id, kind, amount, idempotency_key, created_by, "
            "created_at) VALUES ($1, 'grant', $2, $3, 'bench', now())",
            user_id,
            GRANT,
            f"bench:{external_id}",
        )
    return user_id


async def measure(database_url: str, count: int = 400) -> list[PathCost]:
    """Time the three paths against a migrated database (adds users `ledger-paths-*`)."""
    database = open_database(database_url)
    ledger = Ledger(database)
    pool: Any = await asyncpg.create_pool(
        database_url.replace("postgresql+asyncpg://", "postgresql://"), min_size=1, max_size=2
    )
    tag = secrets.token_hex(3)
    user_a, user_b, user_c, user_d = [
        await _new_user(pool, f"ledger-paths-{tag}-{n}") for n in "abcd"
    ]
    functions: Ledger | None = None
    try:  # the gateway's PostgreSQL ledger, where the code has one
        from solaris.clock import utcnow
        from solaris.ledger.postgres import PostgresPending
        from solaris.ledger.thresholds import NO_THRESHOLDS

        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        pending = PostgresPending(dsn, 2, utcnow, NO_THRESHOLDS)
        functions = Ledger(database, utcnow, NO_THRESHOLDS, pending)
        await functions.start()
    except (ImportError, TypeError, AttributeError):
        functions = None

    async def gateway_ledger() -> None:
        request_id = "req_" + uuid.uuid4().hex
        held = (await ledger.reserve(user_a, request_id, WANTED, MINIMUM, TTL_S)).amount
        assert held == WANTED
        await ledger.settle(_record(request_id, user_a))

    async def same_statements_raw() -> None:
        request_id = "req_" + uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC)
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT balance, reserved FROM accounts WHERE user_id = $1 FOR UPDATE", user_b
            )
            amount = min(WANTED, row["balance"] - row["reserved"])
            await conn.execute(
                "UPDATE accounts SET reserved = reserved + $2 WHERE user_id = $1", user_b, amount
            )
            await conn.execute(
                "INSERT INTO reservations (id, user_id, amount, state, created_at, expires_at) "
                "VALUES ($1, $2, $3, 'pending', $4, $5)",
                request_id,
                user_b,
                amount,
                now,
                now + dt.timedelta(seconds=TTL_S),
            )
        async with pool.acquire() as conn, conn.transaction():
            await conn.fetchval(
                "INSERT INTO usage (request_id, user_id, endpoint, model, prompt_tokens, "
                "completion_tokens, cached_tokens, reasoning_tokens, billable, estimated, status, "
                "latency_ms, conversation_id, created_at) VALUES ($1, $2, 'chat', 'gpt-4o-mini', "
                "8, 16, 0, 0, $3, false, 'ok', 1, NULL, $4) "
                "ON CONFLICT (request_id) DO NOTHING RETURNING id",
                request_id,
                user_b,
                BILLABLE,
                now,
            )
            held = await conn.fetchval(
                "UPDATE reservations SET state = 'settled', resolved_at = $2 "
                "WHERE id = $1 AND state = 'pending' RETURNING amount",
                request_id,
                now,
            )
            await conn.execute(
                "INSERT INTO ledger_entries (user_id, kind, amount, idempotency_key, request_id, "
                "created_by, created_at) VALUES ($1, 'usage', $2, $3, $4, 'gateway', $5)",
                user_b,
                -BILLABLE,
                "usage:" + request_id,
                request_id,
                now,
            )
            await conn.execute(
                "UPDATE accounts SET balance = balance - $2, reserved = reserved - $3 "
                "WHERE user_id = $1",
                user_b,
                BILLABLE,
                held,
            )

    async def one_statement_each() -> None:
        request_id = "req_" + uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC)
        expires = now + dt.timedelta(seconds=TTL_S)
        async with pool.acquire() as conn:
            held = await conn.fetchval(
                RESERVE_ONE_STATEMENT, user_c, request_id, WANTED, MINIMUM, now, expires
            )
        assert held == WANTED
        async with pool.acquire() as conn:
            await conn.execute(SETTLE_ONE_STATEMENT, request_id, user_c, BILLABLE, now)

    async def sql_functions() -> None:
        assert functions is not None
        request_id = "req_" + uuid.uuid4().hex
        held = (await functions.reserve(user_d, request_id, WANTED, MINIMUM, TTL_S)).amount
        assert held == WANTED
        await functions.settle(_record(request_id, user_d))

    try:
        paths: list[tuple[str, str, int, Callable[[], Awaitable[None]]]] = [
            (
                "sqlalchemy",
                "A. `Ledger`: SQLAlchemy Core, statement by statement",
                11,
                gateway_ledger,
            ),
            ("raw", "B. the same statements, raw asyncpg", 11, same_statements_raw),
            ("cte", "C. one CTE statement per phase, raw asyncpg", 2, one_statement_each),
        ]
        if functions is not None:
            name = "D. `PostgresPending` (the gateway's PostgreSQL path): SQL functions"
            paths.append(("functions", name, 2, sql_functions))
        results = []
        for key, name, round_trips, one in paths:
            wall, cpu = await _time(one, count)
            results.append(PathCost(key, name, round_trips, wall, cpu))
        for user in (user_a, user_b, user_c, user_d):
            row = await pool.fetchrow(
                "SELECT a.balance, a.reserved, (SELECT sum(amount) FROM ledger_entries e "
                "WHERE e.user_id = a.user_id) AS entries FROM accounts a WHERE a.user_id = $1",
                user,
            )
            assert row["reserved"] == 0 and row["balance"] == row["entries"], dict(row)
        return results
    finally:
        if functions is not None:
            await functions.close()
        await pool.close()
        await database.close()


def table(results: list[PathCost]) -> str:
    lines = [
        "| path | round trips | wall ms/request | client CPU ms/request |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r.name} | {r.round_trips} | {r.wall_ms:.3f} | {r.cpu_ms:.3f} |" for r in results]
    return "\n".join(lines)


async def _standalone() -> None:
    admin_url = os.environ.get(
        "BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"solaris_ledger_paths_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        database = open_database(url, pool_size=1)
        try:
            await migrate(database)
        finally:
            await database.close()
        print(table(await measure(url)))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(_standalone())
