"""The check that makes the benchmark a test too: every 2xx response wrk counted has its usage
row, balances equal their ledger entries and nothing is left pending; and what the database did
per request (pg_stat_database)."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from common import GATEWAYS, MODE_LABEL
from measure import Bench, Run


@dataclass
class Accounting:
    measured_2xx: int
    measured_rows: int
    in_flight_allowance: int
    short_runs: list[str]  # runs with fewer rows than 2xx: lost usage
    extra_runs: list[str]  # more rows than 2xx + connections: unexplained
    status: dict[str, int]
    totals: dict[str, int]
    settle_problems: int
    non_2xx: int

    @property
    def passed(self) -> bool:
        t = self.totals
        return (
            not self.short_runs
            and not self.extra_runs
            and t["pending"] == 0
            and t["unbalanced_accounts"] == 0
            and t["usage_rows"] == t["settled_reservations"]
            and self.settle_problems == 0
        )


async def check_accounting(bench: Bench, runs: list[Run]) -> Accounting:
    await bench.settled()
    gateway_runs = [r for r in runs if r.target in GATEWAYS]
    short, extra = [], []
    status: Counter[str] = Counter()
    for r in gateway_runs:
        rows = r.rows or 0
        status.update(r.row_status)
        label = (
            f"round {r.round} {r.target} {r.api} {MODE_LABEL[r.mode]} c={r.connections} "
            f"users={r.users}"
        )
        if rows < r.ok:
            short.append(f"{label}: {r.ok} 2xx but {rows} usage rows")
        elif rows > r.ok + r.connections + r.non_2xx:
            extra.append(f"{label}: {r.ok} 2xx but {rows} usage rows")
    db = bench.db
    totals = {
        "usage_rows": int(await db.fetchval("SELECT count(*) FROM usage")),
        "reservations": int(await db.fetchval("SELECT count(*) FROM reservations")),
        "settled_reservations": int(
            await db.fetchval("SELECT count(*) FROM reservations WHERE state = 'settled'")
        ),
        "pending": int(
            await db.fetchval("SELECT count(*) FROM reservations WHERE state = 'pending'")
        ),
        "usage_entries": int(
            await db.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'usage'")
        ),
        "users": int(await db.fetchval("SELECT count(*) FROM users")),
        "unbalanced_accounts": int(
            await db.fetchval(
                """SELECT count(*) FROM accounts a
                   WHERE a.reserved <> 0 OR a.balance <> (
                       SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e
                       WHERE e.user_id = a.user_id)"""
            )
        ),
    }
    problems = 0
    for name in ("gateway.log", "chain-gateway.log"):  # the chain's gateway, when it ran
        with contextlib.suppress(FileNotFoundError):
            log_text = (bench.workdir / name).read_text(errors="replace")
            problems += sum(log_text.count(word) for word in ("settle_retry", "settle_failed"))
    return Accounting(
        measured_2xx=sum(r.ok for r in gateway_runs),
        measured_rows=sum(r.rows or 0 for r in gateway_runs),
        in_flight_allowance=sum(r.connections for r in gateway_runs),
        short_runs=short,
        extra_runs=extra,
        status=dict(status),
        totals=totals,
        settle_problems=problems,
        non_2xx=sum(r.non_2xx for r in gateway_runs),
    )


async def database_work(db: Any, name: str, usage_rows: int) -> dict[str, float]:
    row = await db.fetchrow(
        "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_fetched, blks_hit "
        "FROM pg_stat_database WHERE datname = $1",
        name,
    )
    return {k: int(v) / usage_rows for k, v in dict(row).items()} if usage_rows else {}
