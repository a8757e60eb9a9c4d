"""Usage aggregated by user, model, hour or day, with an estimated USD cost, for the operator.

The database groups the usage rows by (key, model), reading whole quarter hours from the usage
rollup where it can (`solaris.reports.rollup`); Python merges the models of each key and
prices each (key, model) group, since prices are per model and live in Python
(`solaris.reports.prices`). Days are the operator's (`SOLARIS_TIMEZONE`), grouped by the
database; hours are grouped in UTC (an hour is an hour everywhere) and labelled with the zone's
offset, so a day of daylight-saving change has its 23 or 25 hours. A report is bounded: at most `ROWS_MAX`
rows from at most `GROUPS_MAX` (key, model) groups; a wider window comes back cut, in key
order, with `truncated` set.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, PlainSerializer
from sqlalchemy import ColumnElement, Select, Subquery, func, select

from solaris.clock import as_utc
from solaris.reports.prices import Pricer
from solaris.reports.rollup import raw_rows, rolled_until, usage_rows
from solaris.store.columns import local_day
from solaris.store.database import Database
from solaris.store.schema import ROLLUP_SUMS, usage, users

__all__ = [
    "GROUPS_MAX",
    "ROWS_MAX",
    "Grouping",
    "UsageReport",
    "UsageRow",
    "Usd",
    "usage_report",
]

Grouping = Literal["user", "model", "hour", "day"]
ROWS_MAX = 10_000
GROUPS_MAX = 100_000  # (key, model) pairs read from the database for one report

# The bucket's ISO string, made in SQL so both databases group by the same text. SQLite holds
# the ledger's UTC timestamps as "YYYY-MM-DD HH:MM:SS.ffffff" strings; strftime reads those.
_SQLITE_HOUR = "%Y-%m-%dT%H:00:00+00:00"
_POSTGRES_FORMATS = {"hour": 'YYYY-MM-DD"T"HH24":00:00+00:00"', "day": "YYYY-MM-DD"}


# A USD estimate: exact in Python, a JSON number for clients and charts.
Usd = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class UsageRow(BaseModel):
    """One key's totals. `key` is the user's external id, the model, or the hour
    ("2025-01-02T00:00:00-03:00") or day ("2025-01-02") in the operator's zone. `cost_usd` sums the priced models'
    costs; it is None when none was priced, and `unpriced_requests` counts requests left out.
    The admin API answers with it as it is."""

    model_config = ConfigDict(frozen=True)

    key: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    billable: int
    estimated_requests: int
    cost_usd: Usd | None
    unpriced_requests: int


class UsageReport(list[UsageRow]):
    """The rows in key order; `truncated` when the window held more than the bounds allow."""

    truncated: bool = False


async def usage_report(
    database: Database,
    *,
    by: Grouping,
    since: datetime | None = None,
    until: datetime | None = None,
    user_external_id: str | None = None,
    zone: ZoneInfo,
) -> UsageReport:
    """Usage from `since` (inclusive) to `until` (exclusive), grouped `by` one key.

    Naive datetimes are taken as UTC. Returns at most ROWS_MAX rows (see `UsageReport.truncated`).
    """
    async with database.snapshot() as conn:
        mark = await rolled_until(conn)
        query = _grouped_query(database.dialect, by, since, until, user_external_id, zone, mark)
        groups = list(await conn.execute(query.limit(GROUPS_MAX + 1)))
    truncated = len(groups) > GROUPS_MAX
    if truncated:  # the last key may have lost some of its models to the limit: drop it whole
        last_key = groups[GROUPS_MAX - 1].key
        groups = [group for group in groups[:GROUPS_MAX] if group.key != last_key]
    rows, cut = _merge(groups, ROWS_MAX, zone if by == "hour" else None)
    report = UsageReport(rows)
    report.truncated = truncated or cut
    return report


def _grouped_query(
    dialect: str,
    by: Grouping,
    since: datetime | None,
    until: datetime | None,
    user_external_id: str | None,
    zone: ZoneInfo,
    mark: int,
) -> Select[Any]:
    """One row per (key, model) with its sums, ordered by key so a limit cuts between keys.

    By model, hour or day over every user the sums come from the rollup (`reports.rollup`,
    up to usage id `mark`) and the rows after it; by user, or for one user, from the usage rows
    (the user's index), joined to `users`. On PostgreSQL an hour or day is grouped as a
    truncated timestamp and made text once per group, not per row (HISTORY.md)."""
    if by == "user" or user_external_id is not None:
        rows = raw_rows(since and as_utc(since), until and as_utc(until))
        rows = rows.add_columns(users.c.external_id).join_from(
            usage, users, users.c.id == usage.c.user_id
        )
        if user_external_id is not None:
            rows = rows.where(users.c.external_id == user_external_id)
        source = rows.subquery("rows")
    else:
        source = usage_rows(since and as_utc(since), until and as_utc(until), mark)
    # Grouped outside a subquery: the key expression's bound parameters then appear once,
    # which PostgreSQL needs to see that the GROUP BY and the SELECT are the same expression.
    each = select(
        _key_column(dialect, by, zone, source).label("key"),
        source.c.model,
        *(source.c[name] for name in ROLLUP_SUMS),
    ).subquery("each")
    key: ColumnElement[Any] = each.c.key
    if dialect == "postgresql" and by in ("hour", "day"):
        key = func.to_char(each.c.key, _POSTGRES_FORMATS[by]).label("key")
    return (
        select(key, each.c.model, *(func.sum(each.c[name]).label(name) for name in ROLLUP_SUMS))
        .group_by(each.c.key, each.c.model)
        .order_by(each.c.key, each.c.model)
    )


def _key_column(dialect: str, by: Grouping, zone: ZoneInfo, rows: Subquery) -> ColumnElement[Any]:
    if by == "user":
        return rows.c.external_id
    if by == "model":
        return rows.c.model
    if by not in ("hour", "day"):
        raise ValueError(f"unknown grouping {by!r}: user, model, hour or day")
    if dialect == "postgresql":  # made text by `_grouped_query`, once per group
        local = func.timezone("UTC" if by == "hour" else zone.key, rows.c.created_at)
        return func.date_trunc(by, local)
    if by == "day":
        return local_day(dialect, rows.c.created_at, zone)
    return func.strftime(_SQLITE_HOUR, rows.c.created_at)


def _merge(
    groups: list[Any], rows_max: int, hours_in: ZoneInfo | None
) -> tuple[list[UsageRow], bool]:
    """Fold each key's models into one row, pricing each (key, model) group, up to `rows_max`
    keys; True when there were more. UTC hours are relabelled in `hours_in`."""
    pricer = Pricer()
    merged: dict[str, UsageRow] = {}
    for group in groups:
        key = str(group.key)
        if hours_in is not None:
            key = datetime.fromisoformat(key).astimezone(hours_in).isoformat()
        if len(merged) == rows_max and key not in merged:
            return list(merged.values()), True
        requests = int(group.requests)
        cost = pricer.group_cost(
            group.model,
            requests,
            int(group.prompt_tokens),
            int(group.completion_tokens),
            int(group.cached_tokens),
        )
        row = UsageRow(
            key=key,
            requests=requests,
            prompt_tokens=int(group.prompt_tokens),
            completion_tokens=int(group.completion_tokens),
            cached_tokens=int(group.cached_tokens),
            reasoning_tokens=int(group.reasoning_tokens),
            billable=int(group.billable),
            estimated_requests=int(group.estimated),
            cost_usd=cost,
            unpriced_requests=0 if cost is not None else requests,
        )
        previous = merged.get(row.key)
        merged[row.key] = row if previous is None else _add(previous, row)
    return list(merged.values()), False


def _add(left: UsageRow, right: UsageRow) -> UsageRow:
    assert left.key == right.key, (left.key, right.key)
    totals: dict[str, Any] = {
        field: getattr(left, field) + getattr(right, field)
        for field in UsageRow.model_fields
        if field not in ("key", "cost_usd")
    }
    costs = [cost for cost in (left.cost_usd, right.cost_usd) if cost is not None]
    return UsageRow(key=left.key, cost_usd=sum(costs, Decimal(0)) if costs else None, **totals)
