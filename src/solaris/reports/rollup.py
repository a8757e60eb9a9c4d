"""The usage rollup: `usage` summed by quarter hour (UTC) and model, so a report over weeks of
every user reads thousands of sums instead of every row (bench/HISTORY.md).

Exact, not approximate: a read (`usage_rows`) takes the buckets for the rows up to the mark and
the rows after it from `usage` itself, in one snapshot (`Database.snapshot`). Rows are folded in
by id, so a row that arrives late with an early time (a settlement replayed from the journal
after an outage) still lands in its own bucket. Ids are handed out in order but may commit out
of order, so the rollup folds in up to the newest id it saw committed `SETTLED_WITHIN_S` before:
by then every transaction that took a smaller id has ended (the gateway writes usage in
single-statement transactions of milliseconds). `solaris ledger verify` checks the sums.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Subquery,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from solaris.clock import Clock
from solaris.errors import StoreUnavailable
from solaris.ledger.verify import Difference
from solaris.store.database import Database, insert
from solaris.store.schema import ROLLUP_SUMS, usage, usage_rollup, usage_rollup_mark

__all__ = [
    "BUCKET",
    "ROLL_EVERY_S",
    "ROLL_ROWS_MAX",
    "SETTLED_WITHIN_S",
    "raw_rows",
    "roll_up",
    "roll_up_forever",
    "rolled_until",
    "usage_rows",
    "verify_rollup",
]

log = structlog.get_logger(__name__)
BUCKET = timedelta(minutes=15)
SETTLED_WITHIN_S = 60.0
ROLL_ROWS_MAX = 200_000  # usage ids folded in per transaction, so catching up never stalls
ROLL_EVERY_S = 30.0
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # where quarter hours are counted from
_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
_POSTGRES_BUCKET = "INTERVAL '15 minutes'"


def floor_bucket(moment: datetime) -> datetime:
    return moment - (moment - _EPOCH) % BUCKET


def ceil_bucket(moment: datetime) -> datetime:
    floor = floor_bucket(moment)
    return floor if floor == moment else floor + BUCKET


async def roll_up(database: Database, now: datetime) -> int:
    """One step; returns how many usage ids it folded in (0: nothing due yet). Any number of
    processes may call it: the mark's row (PostgreSQL's row lock, SQLite's write lock) makes
    them take turns, and each step moves the mark in the transaction that adds its sums."""
    async with database.transaction() as conn:
        mark = (
            await conn.execute(
                update(usage_rollup_mark)
                .where(usage_rollup_mark.c.id == 1)
                .values(id=1)
                .returning(
                    usage_rollup_mark.c.usage_id,
                    usage_rollup_mark.c.seen_id,
                    usage_rollup_mark.c.seen_at,
                )
            )
        ).one()
        if now - mark.seen_at < timedelta(seconds=SETTLED_WITHIN_S):
            return 0
        done = int(mark.usage_id)
        upto = min(int(mark.seen_id), done + ROLL_ROWS_MAX)
        if upto > done:
            await _fold(conn, database.dialect, done, upto)
        values: dict[str, Any] = {"usage_id": upto}
        if upto == mark.seen_id:  # caught up: wait on what is committed now
            newest = await conn.scalar(select(func.max(usage.c.id)))
            values |= {"seen_id": max(int(newest or 0), upto), "seen_at": now}
        await conn.execute(
            update(usage_rollup_mark).where(usage_rollup_mark.c.id == 1).values(**values)
        )
        return upto - done


async def _fold(conn: AsyncConnection, dialect: str, after: int, upto: int) -> None:
    sums = select(
        _bucket(dialect).label("bucket"),
        usage.c.model,
        *(func.sum(column).label(name) for name, column in _raw_sums().items()),
    ).where(usage.c.id > after, usage.c.id <= upto)
    sums = sums.group_by(sums.selected_columns.bucket, usage.c.model)
    add = insert(dialect, usage_rollup).from_select(list(sums.selected_columns.keys()), sums)
    await conn.execute(
        add.on_conflict_do_update(
            index_elements=["bucket", "model"],
            set_={name: usage_rollup.c[name] + add.excluded[name] for name in ROLLUP_SUMS},
        )
    )


def _bucket(dialect: str) -> ColumnElement[Any]:
    """A usage row's quarter hour, in the form each database stores a moment."""
    created = usage.c.created_at
    if dialect == "postgresql":
        return func.date_bin(literal_column(_POSTGRES_BUCKET), created, literal_column(_ORIGIN))
    # SQLite holds naive UTC text, "YYYY-MM-DD HH:MM:SS.ffffff": the minutes rounded down to 15.
    minutes = cast(func.substr(created, 15, 2), Integer) / 15 * 15
    hour = func.substr(created, 1, 14, type_=String)
    return hour.op("||")(func.printf("%02d:00.000000", minutes))


async def rolled_until(conn: AsyncConnection) -> int:
    """The last usage id the rollup holds; read in the snapshot that reads the sums."""
    return int(await conn.scalar(select(usage_rollup_mark.c.usage_id)) or 0)


def usage_rows(since: datetime | None, until: datetime | None, mark: int) -> Subquery:
    """The usage of [since, until) as rows of (created_at, model, and the ROLLUP_SUMS): whole
    buckets from the rollup, the rest (ids after `mark`, and the window's partial quarter hours)
    from `usage`, one row each. Group them by model or by a function of `created_at`."""
    low = None if since is None else ceil_bucket(since)
    high = None if until is None else floor_bucket(until)
    if low is not None and high is not None and low >= high:  # no whole bucket inside
        return raw_rows(since, until).subquery("rows")
    rolled = select(
        usage_rollup.c.bucket.label("created_at"),
        usage_rollup.c.model,
        *(usage_rollup.c[name] for name in ROLLUP_SUMS),
    )
    if low is not None:
        rolled = rolled.where(usage_rollup.c.bucket >= low)
    if high is not None:
        rolled = rolled.where(usage_rollup.c.bucket < high)
    parts = [rolled, raw_rows(low, high, usage.c.id > mark)]
    if since is not None and low != since:
        parts.append(raw_rows(since, low))
    if until is not None and high != until:
        parts.append(raw_rows(high, until))
    return union_all(*parts).subquery("rows")


def _raw_sums() -> dict[str, ColumnElement[Any]]:
    """Each of ROLLUP_SUMS as one usage row contributes it."""
    sums: dict[str, ColumnElement[Any]] = {"requests": literal(1)}
    sums |= {name: usage.c[name] for name in ROLLUP_SUMS if name not in ("requests", "estimated")}
    return sums | {"estimated": case((usage.c.estimated, 1), else_=0)}


def raw_rows(
    since: datetime | None, until: datetime | None, *where: ColumnElement[bool]
) -> Select[Any]:
    """`usage_rows`' columns, one row per usage row of [since, until) that matches `where`."""
    rows = select(
        usage.c.created_at,
        usage.c.model,
        *(column.label(name) for name, column in _raw_sums().items()),
    )
    window = [*where]
    if since is not None:
        window.append(usage.c.created_at >= since)
    if until is not None:
        window.append(usage.c.created_at < until)
    return rows.where(and_(*window)) if window else rows


async def verify_rollup(database: Database) -> list[Difference]:
    """The rollup's sums against the usage rows they were made of (`solaris ledger verify`):
    one difference per bucket, model and sum that disagree."""
    async with database.snapshot() as conn:
        mark = await rolled_until(conn)
        made = select(
            _bucket(database.dialect).label("bucket"),
            usage.c.model,
            *(func.sum(column).label(name) for name, column in _raw_sums().items()),
        ).where(usage.c.id <= mark)
        made = made.group_by(made.selected_columns.bucket, usage.c.model)
        expected = {_bucket_key(row): row for row in await conn.execute(made)}
        found = {_bucket_key(row): row for row in await conn.execute(select(usage_rollup))}
    differences = []
    for key in sorted(expected.keys() | found.keys()):
        for name in ROLLUP_SUMS:
            want = int(getattr(expected.get(key), name, 0) or 0)
            have = int(getattr(found.get(key), name, 0) or 0)
            if want != have:
                label = f"usage rollup {key[0]} {key[1]} {name}"
                differences.append(Difference("(rollup)", label, want, have))
    return differences


def _bucket_key(row: Any) -> tuple[str, str]:
    bucket = row.bucket
    if isinstance(bucket, str):  # SQLite's text, from the expression
        bucket = datetime.fromisoformat(bucket).replace(tzinfo=UTC)
    return bucket.astimezone(UTC).isoformat(), str(row.model)


async def roll_up_forever(
    database: Database, clock: Clock, stop: asyncio.Event, every_s: float = ROLL_EVERY_S
) -> None:
    """Steps until caught up, then once each `every_s`; a failed step is tried next time."""
    while not stop.is_set():
        try:
            while await roll_up(database, clock()) == ROLL_ROWS_MAX and not stop.is_set():
                pass
        except StoreUnavailable as error:  # an outage: the next step catches up
            log.warning("usage_rollup_unavailable", error=str(error))
        except Exception:
            log.exception("usage_rollup_failed")
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
