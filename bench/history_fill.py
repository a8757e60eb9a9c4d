"""The large history of `history.py`, written with SQL (`generate_series`), not through the API.

Users `hist-u000001` … on one monthly calendar plan, each with one grant (and its lot) a year
before `END`; `rows` usage rows spread evenly over the 365 days before `END` (ids in time order,
as the gateway appends them), each with its `usage` ledger entry; accounts whose balance is the
sum of their entries and whose period is the current one, so reading a statement writes nothing.
Users are skewed like real ones: user k gets a share ∝ 1/√k (user 1: ~0.3 % of all rows, the
median user ~0.7 rows per 100 k), so there is a heavy user as well as typical ones.

The usage and ledger_entries indexes and unique constraints are dropped during the insert and
rebuilt afterwards from their own definitions (`pg_get_indexdef`, `pg_get_constraintdef`), and
foreign keys are not checked row by row (`session_replication_role = replica`): that is what
keeps 10 M rows under a few minutes on 2 cores. Then VACUUM ANALYZE, as autovacuum would have.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["END", "GRANT", "MODELS", "NOW", "PLAN", "fill"]

END = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # the last usage row
NOW = END + timedelta(minutes=30)  # the clock of every timed call: the last day of a month
SPAN = timedelta(days=365)
GRANT = 10**11
PLAN = "bench-history"
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash")
REBUILT = ("usage", "ledger_entries")

SESSION = (
    "SET synchronous_commit = off",
    "SET session_replication_role = replica",  # no FK or trigger per row: the data is made valid
    "SET maintenance_work_mem = '1GB'",
    "SET max_parallel_maintenance_workers = 2",
    "SET work_mem = '256MB'",
)

USERS = """
INSERT INTO users (external_id, email, created_at)
SELECT 'hist-u' || lpad(g::text, 6, '0'), 'hist-u' || g || '@example.com', $2
FROM generate_series(1, $1::int) g"""

PLAN_ROW = """
INSERT INTO plans (name, allowance_tokens, period, anchor, rpm, tpm, models, weights, rollover,
                   is_default, updated_at)
VALUES ($1, 0, 'monthly', 'calendar', NULL, NULL, '["*"]', '{}', false, false, $2)"""

SUBSCRIPTIONS = """
INSERT INTO subscriptions (user_id, plan_name, anchored_at, changed_at)
SELECT id, $1, created_at, created_at FROM users"""

GRANTS = """
INSERT INTO ledger_entries (user_id, kind, amount, idempotency_key, created_by, created_at)
SELECT id, 'grant', $1::bigint, 'grant:hist:' || id, 'bench', created_at FROM users ORDER BY id"""

# random() squared makes the skew; setseed() before it makes the same history on every run.
USAGE = """
INSERT INTO usage (request_id, user_id, endpoint, model, prompt_tokens, completion_tokens,
                   cached_tokens, reasoning_tokens, billable, estimated, status, latency_ms,
                   conversation_id, created_at, cache_write_tokens, tool_billable)
SELECT 'hist-' || g, least($2::int, 1 + floor($2::int * power(random(), 2))::int), 'chat',
       ($3::text[])[1 + g % 4], p, c, CASE WHEN g % 3 = 0 THEN p / 2 ELSE 0 END, 0, p + c,
       g % 50 = 0, 'ok', 150 + (g * 37) % 4000, NULL,
       $4::timestamptz - ($5::float8 * (1 - g::float8 / $1::int)) * interval '1 second', 0, 0
FROM generate_series(1, $1::bigint) g,
     LATERAL (SELECT 20 + (g * 7919) % 3000 AS p, 10 + (g * 104729) % 900 AS c) tokens"""

USAGE_ENTRIES = """
INSERT INTO ledger_entries (user_id, kind, amount, idempotency_key, request_id, created_by,
                            created_at)
SELECT user_id, 'usage', -billable, 'usage:' || request_id, request_id, 'gateway', created_at
FROM usage ORDER BY id"""

ACCOUNTS = """
INSERT INTO accounts (user_id, balance, reserved, period_start, next_expiry, period_used,
                      period_offered)
SELECT u.id, $1::bigint - coalesce(t.used, 0), 0, $2, NULL, coalesce(t.period, 0),
       $1::bigint - coalesce(t.used, 0) + coalesce(t.period, 0)
FROM users u
LEFT JOIN (SELECT user_id, sum(billable) AS used,
                  sum(billable) FILTER (WHERE created_at >= $2) AS period
           FROM usage GROUP BY user_id) t ON t.user_id = u.id"""

LOTS = """
INSERT INTO lots (user_id, kind, amount, remaining, expires_at, entry_key, created_at)
SELECT a.user_id, 'grant', $1::bigint, greatest(a.balance, 0), NULL, 'grant:hist:' || a.user_id,
       u.created_at
FROM accounts a JOIN users u ON u.id = a.user_id"""

DEFINITIONS = """
SELECT 'constraint' AS what, c.conname AS name, t.relname AS tab,
       pg_get_constraintdef(c.oid) AS definition
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
WHERE t.relname = ANY($1::text[]) AND c.contype IN ('p', 'u')
UNION ALL
SELECT 'index', i.relname, t.relname, pg_get_indexdef(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
WHERE t.relname = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"""


def _log(step: str, started: float) -> None:
    print(f"  {step:<44} {time.perf_counter() - started:6.1f} s", flush=True)


async def fill(conn: Any, rows: int, users: int) -> None:
    """Write the history into a freshly migrated database (asyncpg connection)."""
    for setting in SESSION:
        await conn.execute(setting)
    period_start = datetime(END.year, END.month, 1, tzinfo=UTC)
    definitions = list(await conn.fetch(DEFINITIONS, list(REBUILT)))
    for row in definitions:
        if row["what"] == "constraint":
            await conn.execute(f'ALTER TABLE {row["tab"]} DROP CONSTRAINT "{row["name"]}"')
        else:
            await conn.execute(f'DROP INDEX "{row["name"]}"')
    steps: list[tuple[str, str, tuple[Any, ...]]] = [
        ("users", USERS, (users, END - SPAN - timedelta(days=30))),
        ("plan", PLAN_ROW, (PLAN, END - SPAN)),
        ("subscriptions", SUBSCRIPTIONS, (PLAN,)),
        ("grant entries", GRANTS, (GRANT,)),
        ("setseed", "SELECT setseed(0.16)", ()),
        (f"usage ({rows:,} rows)", USAGE, (rows, users, list(MODELS), END, SPAN.total_seconds())),
        ("usage entries", USAGE_ENTRIES, ()),
    ]
    for name, sql, arguments in steps:
        started = time.perf_counter()
        await conn.execute(sql, *arguments)
        _log(name, started)
    for row in definitions:
        started = time.perf_counter()
        if row["what"] == "constraint":
            await conn.execute(
                f'ALTER TABLE {row["tab"]} ADD CONSTRAINT "{row["name"]}" {row["definition"]}'
            )
        else:
            await conn.execute(row["definition"])
        _log(f"rebuilt {row['name']}", started)
    for name, sql, arguments in (
        ("accounts", ACCOUNTS, (GRANT, period_start)),
        ("lots", LOTS, (GRANT,)),
    ):
        started = time.perf_counter()
        await conn.execute(sql, *arguments)
        _log(name, started)
    started = time.perf_counter()
    await conn.execute("VACUUM (ANALYZE)")
    _log("vacuum analyze", started)
