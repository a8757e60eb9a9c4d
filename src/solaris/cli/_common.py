"""What every command shares: settings and a database for one async job, printing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from solaris.errors import SolarisError

# The library behind the commands (settings, SQLAlchemy, the ledger) is imported by the command
# that runs, never at import: `solaris --help` and a typo answer without loading it.
if TYPE_CHECKING:
    from solaris.config import Settings
    from solaris.ledger.users import User, Users
    from solaris.store.database import Database

__all__ = ["JsonOption", "find_user", "print_rows", "run_job", "users_of"]

T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def run_job(job: Callable[[Settings, Database], Awaitable[T]]) -> T:
    """Run one async job with the settings and an open database; errors become one line."""
    import asyncio

    from solaris.config import load_settings
    from solaris.store.database import open_database

    settings = load_settings()

    async def wrapper() -> T:
        database = open_database(settings.database_url, pool_size=2)
        try:
            return await job(settings, database)
        finally:
            await database.close()

    return asyncio.run(wrapper())


def users_of(settings: Settings, database: Database) -> Users:
    from solaris.ledger.ledger import Ledger
    from solaris.ledger.users import Users

    return Users(Ledger(database, zone=settings.zone))


async def find_user(users: Users, external_id: str) -> User:
    user = await users.find(external_id)
    if user is None:
        raise SolarisError(f"no user {external_id!r}")
    return user


def print_rows(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
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
