"""`solaris <noun> <verb>`: the operator's command line. Each command is a thin library call.

Examples:

    solaris migrate
    solaris serve --port 8080
    solaris users list --json
    solaris credits grant alice@example.com 50000 --note "welcome pack"
    solaris keys create alice@example.com
    solaris usage report --by day --since 2026-11-01
    solaris statement alice@example.com --period 2026-11 --csv extrato.csv
    solaris ledger verify
    solaris dev-provider --port 9100 --chunk-delay-s 0.05
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer
from dateutil.relativedelta import relativedelta
from pydantic import ValidationError
from sqlalchemy import select

from solaris.config import PlanConfig, Settings, load_settings
from solaris.errors import SolarisError
from solaris.ledger.ledger import Ledger, utcnow
from solaris.ledger.periods import period_bounds
from solaris.ledger.plans import Plans
from solaris.ledger.statement import Statement, statement
from solaris.ledger.users import User, Users
from solaris.ledger.verify import Difference, verify_ledger
from solaris.observability.logs import configure_logging
from solaris.reports.usage import Grouping, usage_report
from solaris.store.database import Database, migrate, open_database
from solaris.store.schema import usage as usage_table

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
users_app = typer.Typer(no_args_is_help=True, help="Users and their balances.")
credits_app = typer.Typer(no_args_is_help=True, help="Credits on users' balances.")
keys_app = typer.Typer(no_args_is_help=True, help="Per-user API keys.")
plans_app = typer.Typer(no_args_is_help=True, help="Plans: allowance, period, limits, models.")
usage_app = typer.Typer(no_args_is_help=True, help="Usage rows and reports.")
ledger_app = typer.Typer(no_args_is_help=True, help="The ledger's integrity.")
app.add_typer(users_app, name="users")
app.add_typer(credits_app, name="credits")
app.add_typer(keys_app, name="keys")
app.add_typer(plans_app, name="plans")
app.add_typer(usage_app, name="usage")
app.add_typer(ledger_app, name="ledger")

T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _run(job: Callable[[Settings, Database], Awaitable[T]]) -> T:
    """Run one async job with the settings and an open database; errors become one line."""
    settings = load_settings()

    async def wrapper() -> T:
        database = open_database(settings.database_url, pool_size=2)
        try:
            return await job(settings, database)
        finally:
            await database.close()

    return asyncio.run(wrapper())


def _users(settings: Settings, database: Database) -> Users:
    return Users(Ledger(database))


async def _find(users: Users, external_id: str) -> User:
    user = await users.find(external_id)
    if user is None:
        raise SolarisError(f"no user {external_id!r}")
    return user


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (SOLARIS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SOLARIS_PORT).")] = None,
) -> None:
    """Run the gateway. Refuses an unmigrated database: run `solaris migrate` first."""
    import uvicorn

    from solaris.app import build_app

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = load_settings(**overrides)
    configure_logging(settings.log_format)

    async def check(settings: Settings, database: Database) -> None:
        if settings.migrate_on_start:
            await migrate(database)
        await database.check_migrated()
        await Plans(database).sync_from_settings(settings, utcnow())

    _run(check)
    # uvicorn drains on SIGTERM, then re-raises the signal to the handler it found: make that
    # one a clean exit, so a graceful shutdown exits 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,  # the gateway logs one structured line per request itself
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


@app.command("migrate")
def migrate_command() -> None:
    """Create or upgrade the database schema (SOLARIS_DATABASE_URL)."""

    async def job(settings: Settings, database: Database) -> str | None:
        revision = await migrate(database)
        await Plans(database).sync_from_settings(settings, utcnow())
        return revision

    typer.echo(f"database at revision {_run(job)}")


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """List users and balances, newest first."""

    async def job(settings: Settings, database: Database) -> list[tuple[User, int]]:
        return await _users(settings, database).list()

    rows = [
        {"id": u.id, "user": u.external_id, "email": u.email, "balance": b} for u, b in _run(job)
    ]
    _print(rows, as_json, ["id", "user", "email", "balance"])


@users_app.command("show")
def users_show(user: str, as_json: JsonOption = False) -> None:
    """Show one user (by LibreChat user id) with balance and held tokens."""

    async def job(settings: Settings, database: Database) -> dict[str, Any]:
        users = _users(settings, database)
        found = await _find(users, user)
        balance, held = await users.ledger.balance(found.id)
        return {
            "id": found.id,
            "user": found.external_id,
            "email": found.email,
            "balance": balance,
            "held": held,
            "available": balance - held,
        }

    _print([_run(job)], as_json, ["id", "user", "email", "balance", "held", "available"])


@users_app.command("plan")
def users_plan(user: str, plan: str) -> None:
    """Put USER on PLAN at once (recorded). Example: solaris users plan u123 pro"""

    async def job(settings: Settings, database: Database) -> None:
        users = _users(settings, database)
        found = await _find(users, user)
        await users.change_plan(found.id, plan, by="cli")

    _run(job)
    typer.echo(f"{user} is now on plan {plan}")


@plans_app.command("list")
def plans_list(as_json: JsonOption = False) -> None:
    """List plans."""

    async def job(_settings: Settings, database: Database) -> list[dict[str, Any]]:
        return [
            {
                "plan": plan.name,
                "allowance": plan.allowance_tokens,
                "period": plan.period,
                "rpm": plan.rpm,
                "tpm": plan.tpm,
                "models": ",".join(plan.models),
                "default": default,
            }
            for plan, default in await Plans(database).all()
        ]

    _print(_run(job), as_json, ["plan", "allowance", "period", "rpm", "tpm", "models", "default"])


@plans_app.command("set")
def plans_set(
    name: str,
    allowance: Annotated[int, typer.Option(min=0, help="Billable tokens per period.")],
    period: Annotated[str, typer.Option(help="monthly, weekly or daily.")] = "monthly",
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    models: Annotated[str, typer.Option(help="Allowed models, comma-separated patterns.")] = "*",
    default: Annotated[bool, typer.Option(help="New users get this plan.")] = False,
) -> None:
    """Create or change a plan. Example: solaris plans set pro --allowance 2000000 --rpm 60"""
    config = PlanConfig(
        allowance_tokens=allowance,
        period=period,
        rpm=rpm,
        tpm=tpm,
        models=[m.strip() for m in models.split(",") if m.strip()],
        default=default,
    )

    async def job(_settings: Settings, database: Database) -> None:
        await Plans(database).save(name, config, utcnow())

    _run(job)
    typer.echo(f"plan {name} saved")


@credits_app.command("grant")
def credits_grant(
    user: str,
    tokens: Annotated[int, typer.Argument(min=1, help="Billable tokens to add.")],
    note: Annotated[str, typer.Option(help="Why (kept in the ledger).")] = "",
    key: Annotated[str | None, typer.Option(help="Idempotency key: a repeat grants once.")] = None,
    expires_in_days: Annotated[
        float | None, typer.Option(min=0, help="The credit expires after this many days.")
    ] = None,
) -> None:
    """Grant TOKENS to USER (created if new). Example: solaris credits grant u123 50000 --note gift"""

    async def job(settings: Settings, database: Database) -> tuple[bool, int]:
        users = _users(settings, database)
        found = await users.ensure(user)
        async with database.transaction() as conn:
            granted = await users.ledger.credit(
                conn,
                found.id,
                "grant",
                tokens,
                idempotency_key=key or f"grant:{uuid.uuid4().hex}",
                created_by="cli",
                note=note or None,
                expires_at=None
                if expires_in_days is None
                else utcnow() + timedelta(days=expires_in_days),
            )
        balance, _held = await users.ledger.balance(found.id)
        return granted, balance

    granted, balance = _run(job)
    typer.echo(f"{'granted' if granted else 'already granted'}; balance {balance}")


@keys_app.command("create")
def keys_create(user: str) -> None:
    """Create an API key for USER (created if new). The key is shown once."""

    async def job(settings: Settings, database: Database) -> str:
        users = _users(settings, database)
        return await users.create_key((await users.ensure(user)).id)

    typer.echo(_run(job))


@usage_app.command("rows")
def usage_rows(
    user: str,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    as_json: JsonOption = False,
) -> None:
    """The latest usage rows of USER. Example: solaris usage rows u123 --limit 50"""

    async def job(settings: Settings, database: Database) -> list[dict[str, Any]]:
        found = await _find(_users(settings, database), user)
        query = (
            select(usage_table)
            .where(usage_table.c.user_id == found.id)
            .order_by(usage_table.c.id.desc())
            .limit(limit)
        )
        async with database.transaction() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    columns = ["created_at", "model", "prompt_tokens", "completion_tokens", "billable"]
    _print(_run(job), as_json, [*columns, "estimated", "status", "request_id"])


@usage_app.command("report")
def usage_report_command(
    by: Annotated[str, typer.Option(help="user, model, hour or day.")] = "model",
    since: Annotated[
        datetime | None, typer.Option(help="From (UTC unless a zone is given).")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Until, excluded.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Tokens, requests and USD cost grouped by user, model, hour or day.

    Example: solaris usage report --by day --since 2026-11-01
    """
    if by not in ("user", "model", "hour", "day"):
        raise SolarisError("--by must be user, model, hour or day")

    async def job(_settings: Settings, database: Database) -> list[dict[str, Any]]:
        grouping = cast(Grouping, by)  # checked above
        rows = await usage_report(
            database, by=grouping, since=since, until=until, user_external_id=user
        )
        return [asdict(row) for row in rows]

    columns = ["key", "requests", "prompt_tokens", "completion_tokens", "billable", "cost_usd"]
    _print(_run(job), as_json, columns)


@app.command("statement")
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

    async def job(settings: Settings, database: Database) -> Statement:
        users = _users(settings, database)
        found = await _find(users, user)
        subscription = await users.plans.of_user(found.id)
        await users.ledger.refresh(found.id, subscription.plan, subscription.anchored_at)
        if period is None:
            plan = subscription.plan
            start, end = period_bounds(plan.period, plan.anchor, subscription.anchored_at, utcnow())
        else:
            start, end = month_bounds(period)
        return await statement(database, found.id, found.external_id, start, end)

    result = _run(job)
    if csv_file is not None:
        with csv_file.open("w", encoding="utf-8-sig", newline="") as stream:
            result.write_csv(stream)
    if as_json:
        typer.echo(json.dumps(asdict(result), default=str, indent=2))
        return
    typer.echo(f"{result.user}: {result.start:%Y-%m-%d %H:%M} → {result.end:%Y-%m-%d %H:%M} UTC")
    typer.echo(f"opening balance {result.opening}")
    _print(
        [asdict(line) for line in result.lines],
        False,
        ["at", "kind", "model", "prompt_tokens", "completion_tokens", "amount", "balance"],
    )
    typer.echo(f"closing balance {result.closing}")


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute every balance from the ledger entries; exit 1 on any difference."""

    async def job(_settings: Settings, database: Database) -> list[Difference]:
        return await verify_ledger(database)

    differences = _run(job)
    for difference in differences:
        typer.echo(
            f"{difference.user}: {difference.check}: expected {difference.expected}, "
            f"found {difference.found}"
        )
    if differences:
        raise typer.Exit(1)
    typer.echo("ledger verified: every balance equals its entries")


def month_bounds(period: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise SolarisError(f"--period must look like 2026-11, not {period!r}") from None
    return start, start + relativedelta(months=1)


@app.command("dev-provider")
def dev_provider(
    host: str = "127.0.0.1",
    port: int = 9100,
    reply_tokens: int = 16,
    chunk_delay_s: float = 0.0,
    fail_status: int | None = None,
    fail_rate: float = 0.0,
    stall_s: float = 0.0,
    omit_usage: bool = False,
    cut_after_chunks: int | None = None,
    usage_style: str = "openai",
) -> None:
    """A local OpenAI-compatible provider for development and tests (never for production).

    It counts usage with the real tokenizer; each option can also be set per request with a
    body field, e.g. {"dev_provider": {"fail_status": 500}}.
    """
    from solaris.devprovider.request import Behaviour
    from solaris.devprovider.server import run

    behaviour = Behaviour(
        reply_tokens=reply_tokens,
        chunk_delay_s=chunk_delay_s,
        fail_status=fail_status,
        fail_rate=fail_rate,
        stall_s=stall_s,
        omit_usage=omit_usage,
        cut_after_chunks=cut_after_chunks,
        usage_style=usage_style,  # type: ignore[arg-type]
    )
    run(host, port, behaviour)


def _print(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        typer.echo("(none)")
        return
    table = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in table:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def main() -> None:
    try:
        app()
    except SolarisError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except ValidationError as error:  # e.g. `plans set --period yearly`
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        typer.echo(f"error: {problems}", err=True)
        sys.exit(2)
