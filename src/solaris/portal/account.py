"""What the portal shows a signed-in user, read for that user only.

Every function takes the user id of the session, never one from the request: the portal has no
user id in any URL or form, so there is nothing to change to see someone else's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dateutil.relativedelta import relativedelta
from sqlalchemy import func, select

from solaris.ledger.ledger import Ledger
from solaris.ledger.periods import period_bounds
from solaris.ledger.plans import Plan, Plans
from solaris.ledger.statement import Statement, statement
from solaris.reports.usage import UsageRow, usage_report
from solaris.store.database import Database
from solaris.store.schema import users

__all__ = [
    "EMAIL_MATCHES_MAX",
    "Account",
    "PortalUser",
    "account",
    "month_bounds",
    "portal_user",
    "recent_months",
    "user_statement",
    "users_with_email",
]

DAYS_MAX = 31  # a period's chart shows at most its last month of days
EMAIL_MATCHES_MAX = 3  # users sharing one e-mail who get a sign-in link at once
MONTHS_BACK = 12  # how far back the statement's period selector goes


@dataclass(frozen=True, slots=True)
class PortalUser:
    id: int
    external_id: str
    email: str | None


@dataclass(frozen=True, slots=True)
class Account:
    user: PortalUser
    plan: Plan
    balance: int
    held: int
    period_start: datetime
    period_end: datetime
    used: int  # billable tokens this period
    by_day: list[tuple[str, int]]  # ("2026-11-03", billable), every day so far, zeros included
    by_model: list[UsageRow]  # this period, most used first

    @property
    def available(self) -> int:
        """What the user can spend now; 0 when they owe (`owed` says how much)."""
        return max(0, self.balance - self.held)

    @property
    def owed(self) -> int:
        """Tokens the user owes: a provider counted more than was held, and the balance went
        below zero. The next credit (purchase or grant) pays it first."""
        return max(0, -self.balance)

    @property
    def used_percent(self) -> int:
        """Share of what the period offered (used + what is left) that is used."""
        offered = self.used + max(0, self.balance)
        return min(100, round(100 * self.used / offered)) if offered else 0


async def portal_user(database: Database, user_id: int) -> PortalUser | None:
    async with database.transaction() as conn:
        row = (
            await conn.execute(
                select(users.c.id, users.c.external_id, users.c.email).where(users.c.id == user_id)
            )
        ).first()
    return PortalUser(int(row.id), row.external_id, row.email) if row else None


async def users_with_email(database: Database, email: str) -> list[PortalUser]:
    """The users (at most EMAIL_MATCHES_MAX) whose e-mail is this one, case aside."""
    async with database.transaction() as conn:
        rows = await conn.execute(
            select(users.c.id, users.c.external_id, users.c.email)
            .where(func.lower(users.c.email) == email.strip().lower())
            .order_by(users.c.id)
            .limit(EMAIL_MATCHES_MAX)
        )
        return [PortalUser(int(row.id), row.external_id, row.email) for row in rows]


async def _current_period(ledger: Ledger, user_id: int) -> tuple[Plan, datetime, datetime]:
    """The user's plan and period, after applying what time has done (renewals, expiries)."""
    subscription = await Plans(ledger.database).of_user(user_id)
    async with ledger.database.transaction() as conn:
        await ledger.refresh(
            conn, user_id, subscription.plan, subscription.anchored_at, ledger.clock()
        )
    plan = subscription.plan
    start, end = period_bounds(plan.period, plan.anchor, subscription.anchored_at, ledger.clock())
    return plan, start, end


async def account(ledger: Ledger, user: PortalUser) -> Account:
    plan, start, end = await _current_period(ledger, user.id)
    balance, held = await ledger.balance(user.id)
    now = ledger.clock()
    by_model = await usage_report(
        ledger.database, by="model", since=start, until=end, user_external_id=user.external_id
    )
    first_day = max(start, now - timedelta(days=DAYS_MAX - 1)).astimezone(UTC).date()
    days = await usage_report(
        ledger.database,
        by="day",
        since=datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC),
        until=end,
        user_external_id=user.external_id,
    )
    billable = {row.key: row.billable for row in days}
    by_day = []
    day = first_day
    while day <= now.astimezone(UTC).date():
        by_day.append((day.isoformat(), billable.get(day.isoformat(), 0)))
        day += timedelta(days=1)
    return Account(
        user=user,
        plan=plan,
        balance=balance,
        held=held,
        period_start=start,
        period_end=end,
        used=sum(row.billable for row in by_model),
        by_day=by_day,
        by_model=sorted(by_model, key=lambda row: -row.billable),
    )


def month_bounds(period: str) -> tuple[datetime, datetime] | None:
    """[start, end) of a calendar month "YYYY-MM" in UTC, or None if it is not one."""
    try:
        start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        return None
    return start, start + relativedelta(months=1)


def recent_months(now: datetime) -> list[tuple[int, int]]:
    """(year, month) of this month and the MONTHS_BACK - 1 before it, newest first."""
    first = now.astimezone(UTC).replace(day=1)
    months = [first - relativedelta(months=back) for back in range(MONTHS_BACK)]
    return [(month.year, month.month) for month in months]


async def user_statement(ledger: Ledger, user: PortalUser, period: str) -> Statement | None:
    """The statement of "current" (the plan's period) or a calendar month; None if unknown."""
    if period == "current":
        _plan, start, end = await _current_period(ledger, user.id)
    else:
        bounds = month_bounds(period)
        if bounds is None:
            return None
        start, end = bounds
    return await statement(ledger.database, user.id, user.external_id, start, end)
