"""Calendar periods in the operator's zone (SOLARIS_TIMEZONE): local midnights, Mondays and
firsts across daylight-saving changes, month ends and leap days; and a zone change that never
grants one period twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solaris.clock import from_wall, month_bounds
from solaris.config import PlanConfig
from solaris.ledger.ledger import Ledger
from solaris.ledger.periods import period_bounds
from solaris.ledger.plans import Plans
from solaris.ledger.users import Users
from solaris.store.database import migrate, open_database
from solaris.store.schema import ledger_entries
from tests.conftest import _pg

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
LISBON = ZoneInfo("Europe/Lisbon")
HOUR = timedelta(hours=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _fixed(moment: datetime) -> datetime:
    return moment


def calendar(period: str, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return period_bounds(period, "calendar", utc(2000, 1, 1), now, zone)


def test_sao_paulo_days_when_its_midnights_were_skipped_and_repeated() -> None:
    # 2018-11-04: clocks jumped from 00:00 to 01:00 (-03 → -02): the day began at 01:00 and
    # lasted 23 hours.
    start, end = calendar("daily", utc(2018, 11, 4, 15), SAO_PAULO)
    assert (start, end) == (utc(2018, 11, 4, 3), utc(2018, 11, 5, 2))
    assert end - start == 23 * HOUR
    # 2019-02-16: at midnight clocks went back to 23:00 (-02 → -03): a 25-hour day.
    start, end = calendar("daily", utc(2019, 2, 17, 2, 30), SAO_PAULO)  # the second 23:30
    assert (start, end) == (utc(2019, 2, 16, 2), utc(2019, 2, 17, 3))
    assert end - start == 25 * HOUR


def test_lisbon_days_weeks_and_months_across_summer_time() -> None:
    # 2026-03-29 01:00 UTC Lisbon moves from WET to WEST; 2026-10-25 01:00 UTC back.
    assert calendar("daily", utc(2026, 3, 29, 12), LISBON) == (
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 23),
    )
    assert calendar("daily", utc(2026, 10, 25, 12), LISBON) == (
        utc(2026, 10, 24, 23),
        utc(2026, 10, 26, 0),
    )
    # The week holding the change starts on Monday 23 March (WET) and ends on Monday 30 (WEST).
    assert calendar("weekly", utc(2026, 3, 29, 12), LISBON) == (
        utc(2026, 3, 23, 0),
        utc(2026, 3, 29, 23),
    )
    assert calendar("monthly", utc(2026, 3, 31, 23, 30), LISBON) == (  # 00:30 of April 1st
        utc(2026, 3, 31, 23),
        utc(2026, 4, 30, 23),
    )


def test_a_calendar_month_in_sao_paulo_and_its_last_instant() -> None:
    november_2018 = (utc(2018, 11, 1, 3), utc(2018, 12, 1, 2))  # -03 at its start, -02 at its end
    assert calendar("monthly", utc(2018, 11, 1, 3), SAO_PAULO) == november_2018
    assert calendar("monthly", utc(2018, 12, 1, 1, 59, 59), SAO_PAULO) == november_2018
    assert month_bounds("2018-11", SAO_PAULO) == november_2018
    assert month_bounds("2018-13", SAO_PAULO) is None


def test_subscription_months_keep_their_day_through_short_months_and_leap_days() -> None:
    anchored = from_wall(datetime(2028, 1, 31, 9, 0), SAO_PAULO)

    def start_of(now: datetime) -> datetime:
        return period_bounds("monthly", "subscription", anchored, now, SAO_PAULO)[0]

    assert start_of(utc(2028, 2, 15)) == from_wall(datetime(2028, 1, 31, 9), SAO_PAULO)
    assert start_of(utc(2028, 3, 1)) == from_wall(datetime(2028, 2, 29, 9), SAO_PAULO)  # leap
    assert start_of(utc(2028, 4, 1)) == from_wall(datetime(2028, 3, 31, 9), SAO_PAULO)
    leap = from_wall(datetime(2028, 2, 29, 9), SAO_PAULO)
    after = period_bounds("monthly", "subscription", leap, utc(2029, 3, 1), SAO_PAULO)
    assert after == (
        from_wall(datetime(2029, 2, 28, 9), SAO_PAULO),  # no 29th: the month's last day
        from_wall(datetime(2029, 3, 29, 9), SAO_PAULO),
    )


def test_a_subscription_day_whose_wall_time_was_skipped_starts_when_the_clocks_jumped() -> None:
    anchored = from_wall(datetime(2018, 11, 3, 0, 30), SAO_PAULO)  # -03
    start, end = period_bounds("daily", "subscription", anchored, utc(2018, 11, 4, 12), SAO_PAULO)
    assert start == utc(2018, 11, 4, 3, 30)  # 00:30 did not exist: 01:30 -02
    assert end == utc(2018, 11, 5, 2, 30)


ZONES = ["America/Sao_Paulo", "Europe/Lisbon", "UTC", "Asia/Kolkata", "Australia/Lord_Howe"]
MOMENTS = st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2030, 12, 31))


@settings(max_examples=300, deadline=None)
@given(
    period=st.sampled_from(["daily", "weekly", "monthly"]),
    anchor=st.sampled_from(["calendar", "subscription"]),
    zone=st.sampled_from(ZONES),
    anchored=MOMENTS,
    now=MOMENTS,
)
def test_periods_contain_the_moment_and_follow_each_other(
    period: str, anchor: str, zone: str, anchored: datetime, now: datetime
) -> None:
    """Whatever the zone's history (Lord Howe moves by half an hour), a period holds its moment
    and the next one starts exactly where it ends: no gap, no overlap."""
    tz, anchored_at, moment = ZoneInfo(zone), anchored.replace(tzinfo=UTC), now.replace(tzinfo=UTC)
    start, end = period_bounds(period, anchor, anchored_at, moment, tz)
    assert start <= moment < end or moment < anchored_at
    following = period_bounds(period, anchor, anchored_at, end, tz)
    assert following[0] == end and following[1] > end
    if anchor == "calendar":
        local = start.astimezone(tz)
        assert (local.hour, local.minute) == (0, 0) or local.utcoffset() != (
            (start - HOUR).astimezone(tz).utcoffset()
        ), "a calendar period starts at local midnight, or when the clocks jumped past it"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/calendar.db"
        return
    admin = request.getfixturevalue("postgres_url")
    name = "solaris_calendar_" + uuid.uuid4().hex[:10]
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    yield admin.rsplit("/", 1)[0] + "/" + name
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_changing_the_zone_does_not_grant_the_current_period_twice(database_url: str) -> None:
    """Gateways that start with another SOLARIS_TIMEZONE see the month begin three hours later;
    the month granted under UTC is that same month, and the next is granted once, at local
    midnight."""

    async def run() -> list[int]:
        database = open_database(database_url, pool_size=2)
        await migrate(database)
        now = utc(2026, 12, 1, 1)
        async with database.transaction() as conn:
            config = PlanConfig(allowance_tokens=1000, anchor="calendar", default=True)
            await Plans(database).save(conn, "monthly", config, now)
        allowances = []
        for zone, moment in (
            (ZoneInfo("UTC"), now),  # December, by UTC
            (SAO_PAULO, utc(2026, 12, 1, 4)),  # December in São Paulo: granted already
            (SAO_PAULO, utc(2027, 1, 1, 2, 59)),  # still 31 December there
            (SAO_PAULO, utc(2027, 1, 1, 3)),  # January
        ):
            users = Users(Ledger(database, partial(_fixed, moment), zone=zone))
            user = await users.ensure("calendar-user")
            subscription = await users.plans.of_user(user.id)
            async with database.transaction() as conn:
                await users.ledger.refresh(
                    conn, user.id, subscription.plan, subscription.anchored_at, moment
                )
                kinds = await conn.scalars(
                    ledger_entries.select()
                    .with_only_columns(ledger_entries.c.kind)
                    .where(ledger_entries.c.user_id == user.id)
                )
                allowances.append(list(kinds).count("allowance"))
        await database.close()
        return allowances

    assert asyncio.run(run()) == [1, 1, 1, 2]
