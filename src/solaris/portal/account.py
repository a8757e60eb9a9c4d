"""What the portal shows a signed-in user, read for that user only.

Every function takes the user id of the session, never one from the request: the portal has no
user id in any URL or form, so there is nothing to change to see someone else's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from sqlalchemy import func, select

from solaris.clock import local_date, month_bounds, recent_days
from solaris.ledger.ledger import Ledger
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
    start, end = ledger.period(plan, subscription.anchored_at, ledger.clock())
    return plan, start, end


async def account(ledger: Ledger, user: PortalUser) -> Account:
    plan, start, end = await _current_period(ledger, user.id)
    balance, held = await ledger.balance(user.id)
    now = ledger.clock()
    zone = ledger.zone
    by_model = await usage_report(
        ledger.database,
        by="model",
        since=start,
        until=end,
        user_external_id=user.external_id,
        zone=zone,
    )
    # The period's local days so far, at most DAYS_MAX of them.
    shown = min(DAYS_MAX, (local_date(now, zone) - local_date(start, zone)).days + 1)
    keys, since, until = recent_days(now, zone, shown)
    days = await usage_report(
        ledger.database,
        by="day",
        since=max(since, start),
        until=until,
        user_external_id=user.external_id,
        zone=zone,
    )
    billable = {row.key: row.billable for row in days}
    by_day = [(key, billable.get(key, 0)) for key in keys]
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


def recent_months(now: datetime, zone: ZoneInfo) -> list[tuple[int, int]]:
    """(year, month) of this local month and the MONTHS_BACK - 1 before it, newest first."""
    first = local_date(now, zone).replace(day=1)
    months = [first - relativedelta(months=back) for back in range(MONTHS_BACK)]
    return [(month.year, month.month) for month in months]


async def user_statement(ledger: Ledger, user: PortalUser, period: str) -> Statement | None:
    """The statement of "current" (the plan's period) or a calendar month; None if unknown."""
    if period == "current":
        _plan, start, end = await _current_period(ledger, user.id)
    else:
        bounds = month_bounds(period, ledger.zone)
        if bounds is None:
            return None
        start, end = bounds
    return await statement(ledger.database, user.id, user.external_id, start, end)
