"""The admin's read queries: users with their balances and plans, a user's lots, keys and
latest usage, plans with their subscribers. Each runs on the caller's connection, so a change
can read the state before and after itself inside its own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.errors import NotFound
from solaris.ledger.plans import Plan
from solaris.operations.views import KeyView, LotView, PlanSummary, UsageEntry, UserSummary
from solaris.store.schema import accounts, api_keys, lots, plans, subscriptions, usage, users

__all__ = [
    "LIST_ROWS_MAX",
    "UserNotFound",
    "find_users",
    "keys_of",
    "lots_of",
    "period_used",
    "plan_summaries",
    "recent_usage",
    "user_summary",
]

LIST_ROWS_MAX = 500
LOTS_SHOWN_MAX = 100
KEYS_SHOWN_MAX = 50
QUERY_LENGTH_MAX = 320


class UserNotFound(NotFound):
    code = "user_not_found"


def _summaries() -> Select[Any]:
    return (
        select(
            users.c.id,
            users.c.external_id,
            users.c.email,
            users.c.created_at,
            users.c.blocked_at,
            users.c.blocked_reason,
            accounts.c.balance,
            accounts.c.reserved,
            subscriptions.c.plan_name,
        )
        .join(accounts, accounts.c.user_id == users.c.id)
        .outerjoin(subscriptions, subscriptions.c.user_id == users.c.id)
    )


def _summary(row: Any) -> UserSummary:
    return UserSummary(
        id=int(row.id),
        external_id=row.external_id,
        email=row.email,
        plan=row.plan_name,
        balance=int(row.balance),
        owed=max(0, -int(row.balance)),
        reserved=int(row.reserved),
        blocked=row.blocked_at is not None,
        blocked_reason=row.blocked_reason,
        blocked_at=row.blocked_at,
        created_at=row.created_at,
    )


async def user_summary(conn: AsyncConnection, user_id: int) -> UserSummary:
    """Raises `UserNotFound` (404)."""
    row = (await conn.execute(_summaries().where(users.c.id == user_id))).first()
    if row is None:
        raise UserNotFound(f"No user with id {user_id}.")
    return _summary(row)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def find_users(
    conn: AsyncConnection, query: str | None, limit: int, offset: int
) -> list[UserSummary]:
    """Users whose LibreChat id or e-mail contains `query` (any case), newest first."""
    assert 0 <= limit <= LIST_ROWS_MAX and offset >= 0, (limit, offset)
    statement = _summaries().order_by(users.c.id.desc()).limit(limit).offset(offset)
    text = (query or "").strip()[:QUERY_LENGTH_MAX]
    if text:
        pattern = f"%{_escape_like(text)}%"
        matches: list[ColumnElement[bool]] = [
            users.c.external_id.ilike(pattern, escape="\\"),
            users.c.email.ilike(pattern, escape="\\"),
        ]
        if text.isdigit() and len(text) < 18:
            matches.append(users.c.id == int(text))
        statement = statement.where(or_(*matches))
    return [_summary(row) for row in await conn.execute(statement)]


async def period_used(conn: AsyncConnection, user_id: int) -> int:
    """Billable tokens used since the period's allowance was granted."""
    used = await conn.scalar(select(accounts.c.period_used).where(accounts.c.user_id == user_id))
    return int(used or 0)


async def lots_of(conn: AsyncConnection, user_id: int) -> list[LotView]:
    """The lots with tokens left, in no particular spending order, newest first."""
    rows = await conn.execute(
        select(lots)
        .where(lots.c.user_id == user_id, lots.c.remaining > 0)
        .order_by(lots.c.id.desc())
        .limit(LOTS_SHOWN_MAX)
    )
    return [
        LotView(
            id=int(row.id),
            kind=row.kind,
            amount=int(row.amount),
            remaining=int(row.remaining),
            expires_at=row.expires_at,
            created_at=row.created_at,
        )
        for row in rows
    ]


async def keys_of(conn: AsyncConnection, user_id: int) -> list[KeyView]:
    rows = await conn.execute(
        select(api_keys.c.id, api_keys.c.prefix, api_keys.c.created_at, api_keys.c.revoked_at)
        .where(api_keys.c.user_id == user_id)
        .order_by(api_keys.c.id.desc())
        .limit(KEYS_SHOWN_MAX)
    )
    return [
        KeyView(
            id=int(row.id),
            prefix=row.prefix,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )
        for row in rows
    ]


async def recent_usage(conn: AsyncConnection, user_id: int, limit: int) -> list[UsageEntry]:
    assert 0 <= limit <= LIST_ROWS_MAX, limit
    rows = await conn.execute(
        select(usage).where(usage.c.user_id == user_id).order_by(usage.c.id.desc()).limit(limit)
    )
    return [
        UsageEntry(
            created_at=row.created_at,
            request_id=row.request_id,
            endpoint=row.endpoint,
            model=row.model,
            prompt_tokens=int(row.prompt_tokens),
            completion_tokens=int(row.completion_tokens),
            billable=int(row.billable),
            estimated=bool(row.estimated),
            status=row.status,
            latency_ms=int(row.latency_ms),
        )
        for row in rows
    ]


async def plan_summaries(conn: AsyncConnection, name: str | None = None) -> list[PlanSummary]:
    subscribers = (
        select(subscriptions.c.plan_name, func.count().label("users"))
        .group_by(subscriptions.c.plan_name)
        .subquery()
    )
    statement = (
        select(plans, func.coalesce(subscribers.c.users, 0).label("users"))
        .outerjoin(subscribers, subscribers.c.plan_name == plans.c.name)
        .order_by(plans.c.name)
    )
    if name is not None:
        statement = statement.where(plans.c.name == name)
    summaries = []
    for row in await conn.execute(statement):
        plan = Plan.from_row(row)
        summaries.append(
            PlanSummary(
                name=plan.name,
                allowance_tokens=plan.allowance_tokens,
                period=plan.period,
                anchor=plan.anchor,
                rpm=plan.rpm,
                tpm=plan.tpm,
                models=list(plan.models),
                rollover=plan.rollover,
                rollover_max_tokens=plan.rollover_max_tokens,
                rollover_max_percent=plan.rollover_max_percent,
                windows=list(plan.windows),
                model_caps=dict(plan.model_caps),
                default=bool(row.is_default),
                users=int(row.users),
            )
        )
    return summaries
