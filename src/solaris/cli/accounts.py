"""Users, their plans, credits and API keys; and the plans themselves."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from solaris.cli._common import JsonOption, find_user, print_rows, run_job, users_of
from solaris.clock import utcnow
from solaris.errors import SolarisError

if TYPE_CHECKING:  # imported by the commands that use them (see _common)
    from solaris.config import Settings
    from solaris.ledger.plans import Plan
    from solaris.ledger.users import User
    from solaris.store.database import Database

__all__ = ["credits_app", "keys_app", "plans_app", "users_app"]

users_app = typer.Typer(no_args_is_help=True, help="Users and their balances.")
credits_app = typer.Typer(no_args_is_help=True, help="Credits on users' balances.")
keys_app = typer.Typer(no_args_is_help=True, help="Per-user API keys.")
plans_app = typer.Typer(no_args_is_help=True, help="Plans: allowance, period, limits, models.")


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """List users and balances, newest first; `owed` is what a balance below zero owes."""

    async def job(settings: Settings, database: Database) -> list[tuple[User, int]]:
        return await users_of(settings, database).list()

    rows = [
        {"id": u.id, "user": u.external_id, "email": u.email, "balance": b, "owed": max(0, -b)}
        for u, b in run_job(job)
    ]
    print_rows(rows, as_json, ["id", "user", "email", "balance", "owed"])


@users_app.command("show")
def users_show(user: str, as_json: JsonOption = False) -> None:
    """Show one user (by LibreChat user id): balance (below zero when they owe), held tokens."""
    from solaris.operations.core import Operations

    async def job(settings: Settings, database: Database) -> dict[str, Any]:
        operations = Operations.standalone(settings, database)
        found = await find_user(operations.users, user)
        detail = await operations.user(found.id)  # with what time has done applied first
        return {
            "id": detail.id,
            "user": detail.external_id,
            "email": detail.email,
            "balance": detail.balance,
            "held": detail.held,
            "available": detail.available,
            "owed": detail.owed,
        }

    found = run_job(job)
    print_rows([found], as_json, ["id", "user", "email", "balance", "held", "available", "owed"])
    if found["owed"] and not as_json:
        typer.echo(
            f"{user} owes {found['owed']} tokens: the next grant or purchase covers it first"
        )


@users_app.command("limit")
def users_limit(
    user: str,
    day: Annotated[int | None, typer.Option(min=1, help="At most this many tokens a day.")] = None,
    month: Annotated[
        int | None, typer.Option(min=1, help="At most this many tokens a month.")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Lift the user's own limit.")] = False,
) -> None:
    """Set the limit USER chose for themselves (as the portal does), in SOLARIS_TIMEZONE's days
    or calendar months. Example: solaris users limit u123 --day 50000"""
    from solaris.ledger.plans import OwnCap
    from solaris.operations.core import CLI_ACTOR, Operations

    if sum((day is not None, month is not None, off)) != 1:
        raise SolarisError("give one of --day N, --month N or --off")
    cap = None if off else OwnCap(day, "day") if day is not None else OwnCap(month or 0, "month")

    async def job(settings: Settings, database: Database) -> None:
        operations = Operations.standalone(settings, database)
        found = await find_user(operations.users, user)
        await operations.set_own_cap(CLI_ACTOR, found.id, cap)

    run_job(job)
    typer.echo(
        f"{user}: {'no limit of their own' if cap is None else f'at most {cap.tokens} tokens a {cap.period}'}"
    )


@users_app.command("plan")
def users_plan(user: str, plan: str) -> None:
    """Put USER on PLAN at once (recorded). Example: solaris users plan u123 pro"""
    from solaris.operations.core import CLI_ACTOR, Operations

    async def job(settings: Settings, database: Database) -> None:
        operations = Operations.standalone(settings, database)
        found = await find_user(operations.users, user)
        await operations.set_plan(CLI_ACTOR, found.id, plan)

    run_job(job)
    typer.echo(f"{user} is now on plan {plan}")


@plans_app.command("list")
def plans_list(as_json: JsonOption = False) -> None:
    """List plans."""
    from solaris.ledger.plans import Plans

    async def job(_settings: Settings, database: Database) -> list[dict[str, Any]]:
        return [
            {
                "plan": plan.name,
                "allowance": plan.allowance_tokens,
                "period": plan.period,
                "anchor": plan.anchor,
                "rollover": _rollover_words(plan),
                "rpm": plan.rpm,
                "tpm": plan.tpm,
                "models": ",".join(plan.models),
                "default": default,
            }
            for plan, default in await Plans(database).all()
        ]

    print_rows(
        run_job(job),
        as_json,
        ["plan", "allowance", "period", "anchor", "rollover", "rpm", "tpm", "models", "default"],
    )


@plans_app.command("set")
def plans_set(
    name: str,
    allowance: Annotated[int, typer.Option(min=0, help="Billable tokens per period.")],
    period: Annotated[str, typer.Option(help="monthly, weekly or daily.")] = "monthly",
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    models: Annotated[str, typer.Option(help="Allowed models, comma-separated patterns.")] = "*",
    anchor: Annotated[
        str, typer.Option(help="subscription (the day joined) or calendar (local 1st/Monday).")
    ] = "subscription",
    rollover: Annotated[
        str | None,
        typer.Option(help="Carry unused allowance over: 'all', tokens (200000) or a % (50%)."),
    ] = None,
    default: Annotated[bool, typer.Option(help="New users get this plan.")] = False,
) -> None:
    """Create or change a plan. Example: solaris plans set pro --allowance 2000000 --rpm 60"""
    from pydantic import ValidationError

    from solaris.config import PlanConfig
    from solaris.operations.core import CLI_ACTOR, Operations

    try:
        config = PlanConfig(
            allowance_tokens=allowance,
            period=period,
            anchor=anchor,
            rpm=rpm,
            tpm=tpm,
            models=[m.strip() for m in models.split(",") if m.strip()],
            default=default,
            **_rollover(rollover),
        )
    except ValidationError as error:
        raise SolarisError(f"invalid plan: {error.errors()[0]['msg']}") from None

    async def job(settings: Settings, database: Database) -> None:
        await Operations.standalone(settings, database).save_plan(CLI_ACTOR, name, config)

    run_job(job)
    typer.echo(f"plan {name} saved")


@credits_app.command("grant")
def credits_grant(
    user: str,
    tokens: Annotated[int, typer.Argument(min=1, help="Billable tokens to add.")],
    note: Annotated[str, typer.Option(help="Why (kept in the ledger).")] = "",
    key: Annotated[str | None, typer.Option(help="Idempotency key: a repeat grants once.")] = None,
    expires_in_days: Annotated[
        float | None, typer.Option(min=0.001, help="The credit expires after this many days.")
    ] = None,
) -> None:
    """Grant TOKENS to USER (created if new). Example: solaris credits grant u123 50000 --note gift"""
    from solaris.operations.core import CLI_ACTOR, Operations

    async def job(settings: Settings, database: Database) -> tuple[bool, int]:
        operations = Operations.standalone(settings, database)
        found = await operations.users.ensure(user)
        expires_at = None if expires_in_days is None else utcnow() + timedelta(days=expires_in_days)
        granted, summary = await operations.grant(
            CLI_ACTOR, found.id, tokens, note, expires_at, key=key
        )
        return granted, summary.balance

    granted, balance = run_job(job)
    typer.echo(f"{'granted' if granted else 'already granted'}; balance {balance}")


@credits_app.command("deduct")
def credits_deduct(
    user: str,
    tokens: Annotated[int, typer.Argument(min=1, help="Billable tokens to take away.")],
    note: Annotated[str, typer.Option(help="Why (required; kept in the ledger).")],
    key: Annotated[str | None, typer.Option(help="Idempotency key: a repeat deducts once.")] = None,
) -> None:
    """Correct USER's balance downwards with an adjustment entry (entries are never edited).

    Example: solaris credits deduct u123 5000 --note "duplicate grant on 2026-11-20"
    """
    from solaris.operations.core import CLI_ACTOR, Operations

    async def job(settings: Settings, database: Database) -> tuple[bool, int]:
        operations = Operations.standalone(settings, database)
        found = await find_user(operations.users, user)
        done, summary = await operations.deduct(CLI_ACTOR, found.id, tokens, note, key=key)
        return done, summary.balance

    done, balance = run_job(job)
    typer.echo(f"{'deducted' if done else 'already deducted'}; balance {balance}")


@keys_app.command("create")
def keys_create(user: str) -> None:
    """Create an API key for USER (created if new). The key is shown once."""
    from solaris.operations.core import CLI_ACTOR, Operations

    async def job(settings: Settings, database: Database) -> str:
        operations = Operations.standalone(settings, database)
        found = await operations.users.ensure(user)
        return await operations.create_key(CLI_ACTOR, found.id)  # audited like the API's

    typer.echo(run_job(job))


def _rollover(given: str | None) -> dict[str, Any]:
    """--rollover all | 200000 | 50% as PlanConfig's fields."""
    if given is None:
        return {}
    text = given.strip().lower()
    try:
        if text == "all":
            return {"rollover": True}
        if text.endswith("%"):
            return {"rollover": True, "rollover_max_percent": int(text[:-1])}
        return {"rollover": True, "rollover_max_tokens": int(text)}
    except ValueError:
        raise SolarisError(
            f"--rollover must be all, a token count or a percentage: {given!r}"
        ) from None


def _rollover_words(plan: Plan) -> str:
    """What `--rollover` would set: "", all, 250000 or 50%."""
    if not plan.rollover:
        return ""
    if plan.rollover_max_percent is not None:
        return f"{plan.rollover_max_percent}%"
    return "all" if plan.rollover_max_tokens is None else str(plan.rollover_max_tokens)
