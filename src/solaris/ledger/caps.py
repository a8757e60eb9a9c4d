"""Caps a reservation checks beside the balance: a plan's usage windows (per local day or week,
per rolling N hours), its per-model caps (per allowance period) and the cap a user set
themselves (per local day or calendar month).

A cap's room is its tokens less what the user spent since its window began (of its models, for
a model cap) and less every hold the user has open. The reservation computes it in the same
transaction that locks the account row and holds the balance (`pending`), so no
check-then-act gap opens between replicas. A hold counts against every cap whatever its model
(holds keep none): that keeps each cap exact under parallel requests, at the price of a
request held smaller while another of the user's runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.clock import Clock, local_date, local_midnight, month_bounds
from solaris.ledger.periods import period_bounds
from solaris.ledger.plans import Subscription
from solaris.store.database import Database
from solaris.store.schema import usage

__all__ = ["Cap", "CapKind", "caps_for", "plan_caps", "reopens_at", "spent"]

CapKind = Literal["day", "week", "hours", "model", "own_day", "own_month"]


@dataclass(frozen=True, slots=True)
class Cap:
    kind: CapKind
    tokens: int
    since: datetime  # the window's start
    until: datetime | None  # when it starts afresh; None: rolling, it reopens as usage ages
    hours: int | None = None  # a rolling window's length
    pattern: str | None = None  # a model cap's models (fnmatch, `*` and `?`)

    @property
    def model_like(self) -> str | None:
        """The pattern as SQL LIKE, `\\` escaping LIKE's own wildcards."""
        if self.pattern is None:
            return None
        escaped = self.pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return escaped.replace("*", "%").replace("?", "_")

    def to_call(self) -> dict[str, object]:
        """As `solaris_reserve` takes it."""
        return {"tokens": self.tokens, "since": self.since, "like": self.model_like}


def caps_for(
    subscription: Subscription, model: str, clock: Clock, zone: ZoneInfo
) -> tuple[Cap, ...]:
    """The caps on a request for `model`; none for most plans (then nothing is summed, and
    the clock is not read)."""
    plan = subscription.plan
    if not (plan.windows or plan.model_caps or subscription.own_cap):
        return ()
    caps = plan_caps(subscription, clock(), zone)
    return tuple(cap for cap in caps if cap.pattern is None or fnmatchcase(model, cap.pattern))


def plan_caps(subscription: Subscription, now: datetime, zone: ZoneInfo) -> tuple[Cap, ...]:
    """Every cap of the plan and the user's own at `now`, model caps whatever their models."""
    plan, own, anchored_at = subscription.plan, subscription.own_cap, subscription.anchored_at
    caps: list[Cap] = []
    for window in plan.windows:
        if window.hours is not None:
            since = now - timedelta(hours=window.hours)
            caps.append(Cap("hours", window.tokens, since, None, hours=window.hours))
        else:
            period = "daily" if window.every == "day" else "weekly"
            start, end = period_bounds(period, "calendar", anchored_at, now, zone)
            caps.append(Cap("day" if window.every == "day" else "week", window.tokens, start, end))
    if plan.model_caps:
        start, end = period_bounds(plan.period, plan.anchor, anchored_at, now, zone)
        for pattern, tokens in plan.model_caps:
            caps.append(Cap("model", tokens, start, end, pattern=pattern))
    if own is not None:
        if own.period == "day":
            today = local_date(now, zone)
            start, end = local_midnight(today, zone), local_midnight(today + timedelta(1), zone)
            caps.append(Cap("own_day", own.tokens, start, end))
        else:
            bounds = month_bounds(f"{local_date(now, zone):%Y-%m}", zone)
            assert bounds is not None
            caps.append(Cap("own_month", own.tokens, *bounds))
    return tuple(caps)


async def spent(conn: AsyncConnection, user_id: int, cap: Cap) -> int:
    """What the user was charged since the cap's window began, of its models."""
    query = select(func.coalesce(func.sum(usage.c.billable), 0)).where(
        usage.c.user_id == user_id, usage.c.created_at >= cap.since
    )
    if cap.pattern is not None:  # case-sensitive on both: SQLite's LIKE would ignore case
        if conn.dialect.name == "sqlite":
            query = query.where(usage.c.model.op("GLOB")(cap.pattern))
        else:
            query = query.where(usage.c.model.like(cap.model_like, escape="\\"))
    return int(await conn.scalar(query) or 0)


async def reopens_at(
    database: Database, user_id: int, cap: Cap, needed: int, now: datetime
) -> datetime:
    """When `cap` leaves room for `needed` tokens again: its next window, or (rolling) the moment
    enough of the usage in it has aged out. Read after a refusal, outside any lock: the time a
    refusal states, not a promise."""
    if cap.until is not None:
        return cap.until
    assert cap.hours is not None
    query = (
        select(usage.c.billable, usage.c.created_at)
        .where(usage.c.user_id == user_id, usage.c.created_at >= cap.since)
        .order_by(usage.c.created_at)
    )
    async with database.transaction() as conn:
        rows = (await conn.execute(query)).all()
    used = sum(int(row.billable) for row in rows)
    if used + needed <= cap.tokens:
        return now  # only holds stand in the way: they end with their requests
    for row in rows:
        used -= int(row.billable)
        if used + needed <= cap.tokens:
            aged_out: datetime = row.created_at + timedelta(hours=cap.hours)
            return max(aged_out, now)
    return now + timedelta(hours=cap.hours)  # more than the window ever holds
