"""Allowance periods: [start, end) of the period that contains a moment.

Computed, never scheduled: a gateway that was down over a boundary renews correctly the next time
it looks. Anchored at the subscription (every month on the day the user subscribed, clamped to
the month's last day) or at the calendar (first of the month, Monday, midnight — in UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dateutil.relativedelta import relativedelta

__all__ = ["period_bounds"]

STEPS = {
    "monthly": relativedelta(months=1),
    "weekly": relativedelta(weeks=1),
    "daily": relativedelta(days=1),
}


def period_bounds(
    period: str, anchor: str, anchored_at: datetime, now: datetime
) -> tuple[datetime, datetime]:
    assert period in STEPS, period
    assert now.tzinfo is not None and anchored_at.tzinfo is not None, "times are UTC-aware"
    now = now.astimezone(UTC)
    if anchor == "calendar":
        start = _calendar_start(period, now)
        return start, start + STEPS[period]
    origin = anchored_at.astimezone(UTC)
    if now < origin:
        return origin, origin + STEPS[period]
    # Step from the anchor; relativedelta(months=k) from the origin keeps the anchor day
    # (Jan 31 → Feb 28 → Mar 31), which repeated one-month steps would not.
    step = STEPS[period]
    k = _whole_steps(period, origin, now)
    start = origin + step * k
    while start > now:  # month lengths make the estimate overshoot by one at most
        k -= 1
        start = origin + step * k
    while origin + step * (k + 1) <= now:
        k += 1
        start = origin + step * k
    return start, origin + step * (k + 1)


def _whole_steps(period: str, origin: datetime, now: datetime) -> int:
    if period == "monthly":
        return (now.year - origin.year) * 12 + (now.month - origin.month)
    days = (now - origin) // timedelta(days=1)
    return days // 7 if period == "weekly" else days


def _calendar_start(period: str, now: datetime) -> datetime:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight
    if period == "weekly":
        return midnight - timedelta(days=midnight.weekday())
    return midnight.replace(day=1)
