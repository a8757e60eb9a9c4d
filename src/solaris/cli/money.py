"""Where the tokens went: usage rows and reports, statements, the ledger's integrity."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from solaris.cli._common import JsonOption, find_user, print_rows, run_job, users_of
from solaris.errors import SolarisError

if TYPE_CHECKING:  # imported by the commands that use them (see _common)
    from zoneinfo import ZoneInfo

    from solaris.config import Settings
    from solaris.ledger.statement import Statement
    from solaris.ledger.verify import Difference
    from solaris.reports.usage import Grouping
    from solaris.store.database import Database

__all__ = ["ledger_app", "register", "usage_app"]

usage_app = typer.Typer(no_args_is_help=True, help="Usage rows and reports.")
ledger_app = typer.Typer(no_args_is_help=True, help="The ledger's integrity.")


def register(app: typer.Typer) -> None:
    app.command("statement")(statement_command)


@usage_app.command("rows")
def usage_rows(
    user: str,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    as_json: JsonOption = False,
) -> None:
    """The latest usage rows of USER. Example: solaris usage rows u123 --limit 50"""
    from sqlalchemy import select

    from solaris.store.schema import usage as usage_table

    async def job(settings: Settings, database: Database) -> list[dict[str, Any]]:
        found = await find_user(users_of(settings, database), user)
        query = (
            select(usage_table)
            .where(usage_table.c.user_id == found.id)
            .order_by(usage_table.c.id.desc())
            .limit(limit)
        )
        async with database.transaction() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    columns = ["created_at", "model", "prompt_tokens", "completion_tokens", "billable"]
    print_rows(run_job(job), as_json, [*columns, "estimated", "status", "request_id"])


@usage_app.command("report")
def usage_report_command(
    by: Annotated[str, typer.Option(help="user, model, hour or day.")] = "model",
    since: Annotated[
        datetime | None, typer.Option(help="From (SOLARIS_TIMEZONE unless a zone is given).")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Until, excluded.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Tokens, requests and USD cost grouped by user, model, hour or day.

    Example: solaris usage report --by day --since 2026-11-01
    """
    from solaris.clock import in_zone
    from solaris.reports.usage import usage_report

    if by not in ("user", "model", "hour", "day"):
        raise SolarisError("--by must be user, model, hour or day")

    async def job(settings: Settings, database: Database) -> list[dict[str, Any]]:
        grouping = cast("Grouping", by)  # checked above
        zone = settings.zone
        rows = await usage_report(
            database,
            by=grouping,
            since=None if since is None else in_zone(since, zone),
            until=None if until is None else in_zone(until, zone),
            user_external_id=user,
            zone=zone,
        )
        return [row.model_dump() for row in rows]

    columns = ["key", "requests", "prompt_tokens", "completion_tokens", "billable", "cost_usd"]
    print_rows(run_job(job), as_json, columns)


def statement_command(
    user: str,
    period: Annotated[
        str | None, typer.Option(help="A calendar month, e.g. 2026-11 (default: current period).")
    ] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write CSV (UTF-8) here.")] = None,
    as_json: JsonOption = False,
) -> None:
    """USER's statement: opening balance, each entry with a running balance, closing balance.

    Example: solaris statement u123 --period 2026-11 --csv extrato.csv
    """
    from solaris.clock import month_bounds
    from solaris.operations.core import Operations

    async def job(settings: Settings, database: Database) -> tuple[Statement, ZoneInfo]:
        operations = Operations.standalone(settings, database)
        found = await find_user(operations.users, user)
        if period is None:
            start, end = await operations.current_period(found.id)
        else:
            bounds = month_bounds(period, settings.zone)
            if bounds is None:
                raise SolarisError(f"--period must look like 2026-11, not {period!r}")
            start, end = bounds
        return await operations.statement(found.id, start, end), settings.zone

    result, zone = run_job(job)
    if csv_file is not None:
        with csv_file.open("w", encoding="utf-8-sig", newline="") as stream:
            result.write_csv(stream, zone)
    if as_json:
        typer.echo(json.dumps(asdict(result), default=str, indent=2))
        return
    start, end = result.start.astimezone(zone), result.end.astimezone(zone)
    typer.echo(f"{result.user}: {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} ({zone.key})")
    typer.echo(f"opening balance {result.opening}")
    print_rows(
        [asdict(line) for line in result.lines],
        False,
        ["at", "kind", "model", "prompt_tokens", "completion_tokens", "amount", "balance"],
    )
    typer.echo(f"closing balance {result.closing}")


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute every balance from the ledger entries, and the reports' usage sums from the
    usage rows; exit 1 on any difference."""
    from solaris.ledger.verify import verify_ledger
    from solaris.reports.rollup import verify_rollup

    async def job(_settings: Settings, database: Database) -> list[Difference]:
        return await verify_ledger(database) + await verify_rollup(database)

    differences = run_job(job)
    for difference in differences:
        typer.echo(
            f"{difference.user}: {difference.check}: expected {difference.expected}, "
            f"found {difference.found}"
        )
    if differences:
        raise typer.Exit(1)
    typer.echo("ledger verified: every balance equals its entries, the usage sums their rows")
