"""The dashboard's overview: what the database knows (tokens, users, latency of served
requests) and what only the gateway's Prometheus metrics know (requests that were blocked,
limited or failed leave no row)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.clock import local_date, local_midnight
from solaris.operations.views import Overview, RankedRow
from solaris.reports.prices import Pricer
from solaris.reports.rollup import rolled_until, usage_rows
from solaris.store.schema import usage, users

if TYPE_CHECKING:
    from solaris.observability.metrics import Metrics

__all__ = ["LATENCY_SAMPLE_MAX", "TOP_ROWS", "overview", "request_counts"]

TOP_ROWS = 5
LATENCY_SAMPLE_MAX = 5000  # the latest served requests of the day the percentiles are read from
FAILED_OUTCOMES = ("upstream_error", "unavailable")


def request_counts(metrics: Metrics | None) -> dict[str, int]:
    """The gateway's requests by outcome (every worker's), read from its metrics."""
    counts: dict[str, int] = {}
    if metrics is None:
        return counts
    for family in metrics.exposed.collect():
        if family.name != "solaris_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                outcome = sample.labels.get("outcome", "")
                counts[outcome] = counts.get(outcome, 0) + int(sample.value)
    return counts


def _percentile(sorted_values: list[int], fraction: float) -> int | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _top_users(conn: AsyncConnection, since: datetime) -> list[RankedRow]:
    """Ranked by user id, named afterwards: grouping 10 M rows' month by the external id's text
    (through a join) was most of the overview's time (bench/HISTORY.md)."""
    billable = func.sum(usage.c.billable).label("billable")
    top = (
        select(usage.c.user_id, billable, func.count().label("requests"))
        .where(usage.c.created_at >= since)
        .group_by(usage.c.user_id)
        .order_by(billable.desc())
        .limit(TOP_ROWS)
        .subquery()
    )
    rows = await conn.execute(
        select(users.c.external_id.label("key"), top.c.billable, top.c.requests)
        .join(top, top.c.user_id == users.c.id)
        .order_by(top.c.billable.desc())
    )
    return [
        RankedRow(key=str(r.key), billable=int(r.billable), requests=int(r.requests)) for r in rows
    ]


async def _models(conn: AsyncConnection, since: datetime) -> list[RankedRow]:
    """Every model since `since`, most tokens first: its sum is also the month's total. Read
    from the usage rollup (`reports.rollup`), in the caller's snapshot."""
    rows = usage_rows(since, None, await rolled_until(conn))
    billable = func.sum(rows.c.billable).label("billable")
    ranked = await conn.execute(
        select(rows.c.model.label("key"), billable, func.sum(rows.c.requests).label("requests"))
        .group_by(rows.c.model)
        .order_by(billable.desc())
    )
    return [
        RankedRow(key=str(r.key), billable=int(r.billable), requests=int(r.requests))
        for r in ranked
    ]


async def overview(
    conn: AsyncConnection,
    metrics: Metrics | None,
    now: datetime,
    zone: ZoneInfo,
    process_started_at: datetime,
) -> Overview:
    """Today and this month are the operator's (local midnight, the local 1st). `conn` is a
    snapshot (`Database.snapshot`)."""
    today_local = local_date(now, zone)
    day = local_midnight(today_local, zone)
    month = local_midnight(today_local.replace(day=1), zone)
    today = usage.c.created_at >= day
    totals = (
        await conn.execute(
            select(
                func.coalesce(func.sum(usage.c.billable), 0).label("billable"),
                func.count().label("requests"),
                func.count(func.distinct(usage.c.user_id)).label("users"),
            ).where(today)
        )
    ).one()
    month_models = await _models(conn, month)
    cost = None
    models_today = await conn.execute(
        select(
            usage.c.model,
            func.count().label("requests"),
            func.sum(usage.c.prompt_tokens).label("prompt"),
            func.sum(usage.c.completion_tokens).label("completion"),
            func.sum(usage.c.cached_tokens).label("cached"),
        )
        .where(today)
        .group_by(usage.c.model)
    )
    pricer = Pricer()
    for row in models_today:
        priced = pricer.group_cost(
            row.model, int(row.requests), int(row.prompt), int(row.completion), int(row.cached)
        )
        if priced is not None:
            cost = priced if cost is None else cost + priced
    latencies = sorted(
        int(value)
        for value in await conn.scalars(
            select(usage.c.latency_ms)
            .where(today)
            .order_by(usage.c.id.desc())
            .limit(LATENCY_SAMPLE_MAX)
        )
    )
    users_total = await conn.scalar(select(func.count()).select_from(users))
    users_blocked = await conn.scalar(
        select(func.count()).select_from(users).where(users.c.blocked_at.is_not(None))
    )
    counts = request_counts(metrics)
    requests = sum(counts.values())
    failed = sum(counts.get(outcome, 0) for outcome in FAILED_OUTCOMES)
    return Overview(
        generated_at=now,
        tokens_today=int(totals.billable),
        tokens_this_month=sum(row.billable for row in month_models),
        requests_today=int(totals.requests),
        cost_today_usd=cost,
        active_users_today=int(totals.users),
        users_total=int(users_total or 0),
        users_blocked=int(users_blocked or 0),
        top_users=await _top_users(conn, month),
        top_models=month_models[:TOP_ROWS],
        latency_p50_ms=_percentile(latencies, 0.5),
        latency_p95_ms=_percentile(latencies, 0.95),
        process_started_at=process_started_at,
        process_requests=requests,
        process_blocked_requests=counts.get("blocked", 0),
        process_limited_requests=counts.get("limited", 0),
        process_error_rate=failed / requests if requests else None,
    )
