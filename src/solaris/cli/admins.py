"""Admin accounts for the dashboard and the admin API, and their API keys."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from solaris.cli._common import JsonOption, print_rows, run_job
from solaris.clock import utcnow
from solaris.errors import SolarisError

if TYPE_CHECKING:  # imported by the commands that use them (see _common)
    from solaris.config import Settings
    from solaris.operations.admins import AdminAccount, AdminKey, Admins
    from solaris.store.database import Database

__all__ = ["admins_app"]

admins_app = typer.Typer(no_args_is_help=True, help="Admin accounts and admin API keys.")
keys_app = typer.Typer(no_args_is_help=True, help="Admin API keys (for automation).")
admins_app.add_typer(keys_app, name="key")


def _admins(database: Database) -> Admins:
    from solaris.operations.admins import Admins

    return Admins(database, utcnow)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


async def _admin(admins: Admins, email: str) -> AdminAccount:
    found = await admins.find(email)
    if found is None:
        raise SolarisError(f"no admin {email!r}")
    return found


@admins_app.command("create")
def admins_create(
    email: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an admin who signs in with EMAIL and a password (asked twice).

    Example: solaris admins create ops@example.com
    Example: printf '%s\\n' "$PASSWORD" | solaris admins create ops@example.com --password-stdin
    """
    password = _read_password(password_stdin)

    async def job(_settings: Settings, database: Database) -> int:
        return await _admins(database).create(email, password)

    admin_id = run_job(job)
    typer.echo(f"admin {admin_id} created: {email.strip().lower()}")


@admins_app.command("list")
def admins_list(as_json: JsonOption = False) -> None:
    """List admins."""

    async def job(_settings: Settings, database: Database) -> list[AdminAccount]:
        return await _admins(database).all()

    rows = [
        {"id": a.id, "email": a.email, "created_at": a.created_at, "disabled": a.disabled}
        for a in run_job(job)
    ]
    print_rows(rows, as_json, ["id", "email", "created_at", "disabled"])


@keys_app.command("create")
def admin_key_create(
    email: str,
    name: Annotated[str, typer.Option(help="What the key is for, e.g. the script using it.")],
) -> None:
    """Create an admin API key for EMAIL; the key (sk-adm-…) is printed once.

    Example: solaris admins key create ops@example.com --name billing-sync
    """

    async def job(_settings: Settings, database: Database) -> str:
        admins = _admins(database)
        return await admins.create_api_key((await _admin(admins, email)).id, name)

    typer.echo(run_job(job))


@keys_app.command("list")
def admin_key_list(email: str, as_json: JsonOption = False) -> None:
    """List EMAIL's admin API keys (never the keys themselves)."""

    async def job(_settings: Settings, database: Database) -> list[AdminKey]:
        admins = _admins(database)
        return await admins.api_keys((await _admin(admins, email)).id)

    rows = [
        {
            "id": k.id,
            "name": k.name,
            "created_at": k.created_at,
            "last_used_at": k.last_used_at,
            "revoked": k.revoked,
        }
        for k in run_job(job)
    ]
    print_rows(rows, as_json, ["id", "name", "created_at", "last_used_at", "revoked"])


@keys_app.command("revoke")
def admin_key_revoke(key_id: int) -> None:
    """Revoke the admin API key KEY_ID (see `solaris admins key list`). Example: ... revoke 3"""

    async def job(_settings: Settings, database: Database) -> bool:
        return await _admins(database).revoke_api_key(key_id)

    if not run_job(job):
        raise SolarisError(f"no live admin API key {key_id}")
    typer.echo(f"admin API key {key_id} revoked")
