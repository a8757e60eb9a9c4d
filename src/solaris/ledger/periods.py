"""Allowance periods: [start, end) of the period that contains a moment.

Computed, never scheduled: a gateway that was down over a boundary renews correctly the next time
it looks. Anchored at the subscription (every month on the day the user subscribed, clamped to
the month's last day, at the time of day they subscribed) or at the calendar (the 1st, Monday,
midnight). Both step in the operator's wall-clock time (`SOLARIS_TIMEZONE`), so a day is 23 or
25 hours long across a daylight-saving change and a period still starts at local midnight.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from solaris.clock import from_wall

__all__ = ["period_bounds"]

STEPS = {
    "monthly": relativedelta(months=1),
    "weekly": relativedelta(weeks=1),
    "daily": relativedelta(days=1),
}


def period_bounds(
    period: str, anchor: str, anchored_at: datetime, now: datetime, zone: ZoneInfo
) -> tuple[datetime, datetime]:
    """The period around `now`, both bounds UTC."""
    assert period in STEPS, period
    assert now.tzinfo is not None and anchored_at.tzinfo is not None, "times are UTC-aware"
    wall_now = _wall(now, zone)
    step = STEPS[period]
    if anchor == "calendar":
        start = _calendar_start(period, wall_now)
        return from_wall(start, zone), from_wall(start + step, zone)
    origin = _wall(anchored_at, zone)
    if now < anchored_at:
        return anchored_at.astimezone(UTC), from_wall(origin + step, zone)
    # Step from the anchor; relativedelta(months=k) from the origin keeps the anchor day
    # (Jan 31 → Feb 28 → Mar 31), which repeated one-month steps would not.
    k = _whole_steps(period, origin, wall_now)
    while k > 0 and from_wall(origin + step * k, zone) > now:  # month lengths overshoot by one
        k -= 1
    while from_wall(origin + step * (k + 1), zone) <= now:
        k += 1
    start = anchored_at.astimezone(UTC) if k == 0 else from_wall(origin + step * k, zone)
    return start, from_wall(origin + step * (k + 1), zone)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    """`moment` as the clocks of `zone` show it, naive."""
    return moment.astimezone(zone).replace(tzinfo=None)


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
