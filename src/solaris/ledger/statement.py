"""The statement (extrato): a user's entries over a period with a running balance.

The same data serves the CLI, the admin API and the portal. The opening balance is the sum of
the user's entries before the period, so opening + the period's entries = closing, always.
A credit line carries its lot's expiry (a lot is linked to the entry that made it by the
entry's idempotency key). The CSV keeps what was taken (`debit`: usage, expiries, corrections)
and what was added (`credit`: allowances, grants, purchases, refunds) in columns of their own,
both as positive numbers, so a spreadsheet sums each without reading `kind`. A request's hosted
tool calls (a Responses web search, …) are lines of their own beside its tokens' line: `tool`,
`tool_calls`, and the price per call in the note.
"""

from __future__ import annotations

import csv
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, TextIO

import orjson
from sqlalchemy import func, select

from solaris.ledger.csv_cells import safe_row
from solaris.ledger.refusals import refusals_between
from solaris.store.database import Database
from solaris.store.schema import ledger_entries, lots, usage

__all__ = ["CSV_COLUMNS", "Statement", "StatementLine", "statement"]

LINES_MAX = 50_000
CSV_COLUMNS = (
    "date", "kind", "model", "prompt_tokens", "completion_tokens", "estimated", "debit",
    "credit", "balance", "expires_at", "note", "tool", "tool_calls",
)  # fmt: skip
TOOL_KEY = "tool:"  # a hosted tool's entry: tool:<request id>:<tool>


@dataclass(frozen=True, slots=True)
class StatementLine:
    at: datetime
    kind: str
    amount: int  # signed billable tokens: credits > 0, usage and expiry < 0
    balance: int  # running balance after this entry
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    estimated: bool | None = None
    note: str | None = None
    expires_at: datetime | None = None  # a credit's lot: when what is left of it expires
    tool: str | None = None  # a hosted tool's line: its output item type (web_search_call)
    tool_calls: int | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    user: str
    start: datetime
    end: datetime
    opening: int
    lines: list[StatementLine]
    closing: int
    truncated: bool

    def write_csv(self, stream: TextIO, zone: tzinfo = UTC) -> None:
        """The lines as CSV, times in `zone` with its offset; text a spreadsheet would run as a
        formula is neutralised."""
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for line in self.lines:
            writer.writerow(
                safe_row(
                    (
                        line.at.astimezone(zone),
                        line.kind,
                        line.model,
                        line.prompt_tokens,
                        line.completion_tokens,
                        line.estimated,
                        -line.amount if line.amount < 0 else None,
                        line.amount if line.amount > 0 else None,
                        line.balance,
                        line.expires_at and line.expires_at.astimezone(zone),
                        line.note,
                        line.tool,
                        line.tool_calls,
                    )
                )
            )


async def statement(
    database: Database, user_id: int, external_id: str, start: datetime, end: datetime
) -> Statement:
    assert start < end, (start, end)
    entries = ledger_entries.c
    opening_query = select(func.coalesce(func.sum(entries.amount), 0)).where(
        entries.user_id == user_id, entries.created_at < start
    )
    # A subquery, not a join: a join let PostgreSQL hash every lot of every user to find the
    # few of this user's credits (bench/HISTORY.md); this is one unique-index probe a line.
    expires_at = (
        select(lots.c.expires_at)
        .where(lots.c.entry_key == entries.idempotency_key)
        .scalar_subquery()
        .label("expires_at")
    )
    lines_query = (
        select(
            entries.created_at,
            entries.kind,
            entries.amount,
            entries.note,
            entries.idempotency_key,
            usage.c.tool_calls,
            usage.c.model,
            usage.c.prompt_tokens,
            usage.c.completion_tokens,
            usage.c.estimated,
            expires_at,
        )
        .outerjoin(usage, usage.c.request_id == entries.request_id)
        .where(entries.user_id == user_id, entries.created_at >= start, entries.created_at < end)
        .order_by(entries.created_at, entries.id)
        .limit(LINES_MAX + 1)
    )
    async with database.transaction() as conn:
        opening = int(await conn.scalar(opening_query) or 0)
        rows = (await conn.execute(lines_query)).all()
        refused = await refusals_between(conn, user_id, start, end, LINES_MAX)
    truncated = len(rows) > LINES_MAX or len(refused) == LINES_MAX
    balance = opening
    lines = []
    pending = deque(refused)
    for row in rows[:LINES_MAX]:
        balance += int(row.amount)
        at = row.created_at
        assert at is not None
        while pending and pending[0].created_at < at:
            lines.append(_refusal_line(pending.popleft(), balance - int(row.amount)))
        tool, calls = _tool_of(row.idempotency_key, row.tool_calls)
        lines.append(
            StatementLine(
                at=at,
                kind=row.kind,
                amount=int(row.amount),
                balance=balance,
                model=row.model,
                prompt_tokens=None if tool else row.prompt_tokens,
                completion_tokens=None if tool else row.completion_tokens,
                estimated=None if tool else row.estimated,
                note=row.note,
                expires_at=row.expires_at,
                tool=tool,
                tool_calls=calls,
            )
        )
    lines.extend(_refusal_line(refusal, balance) for refusal in pending)
    return Statement(external_id, start, end, opening, lines, balance, truncated)


def _refusal_line(refusal: Any, balance: int) -> StatementLine:
    """A refused request: nothing charged, the balance as it was, and why (`note`)."""
    return StatementLine(
        at=refusal.created_at, kind="refusal", amount=0, balance=balance, model=refusal.model,
        note=f"{refusal.reason}: {refusal.note}",
    )  # fmt: skip


def _tool_of(key: str, tool_calls: str | None) -> tuple[str | None, int | None]:
    """A hosted tool's line: the tool (from its entry's key) and its calls (from the row)."""
    if not key.startswith(TOOL_KEY):
        return None, None
    tool = key.rsplit(":", 1)[1]
    calls = orjson.loads(tool_calls).get(tool, {}).get("calls") if tool_calls else None
    return tool, calls
