"""`solaris orders …`: credit purchases as the operator sees them."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy import select

from solaris.cli._common import JsonOption, print_rows, run_job
from solaris.clock import utcnow
from solaris.config import Settings
from solaris.ledger.ledger import Ledger
from solaris.operations.purchases import Purchases
from solaris.operations.reconciler import reconcile_once
from solaris.payments.configured import configured_providers
from solaris.store.database import Database
from solaris.store.schema import orders, users

__all__ = ["orders_app"]

orders_app = typer.Typer(no_args_is_help=True, help="Credit purchases (orders).")
LISTED_MAX = 1000


@orders_app.command("reconcile")
def orders_reconcile() -> None:
    """Ask the payment providers about pending and lately paid orders and apply what they say,
    as every gateway does every five minutes (a lost webhook is credited; a lost refund taken).

    Example: solaris orders reconcile
    """

    async def job(settings: Settings, database: Database) -> int | None:
        providers = configured_providers(settings)
        purchases = Purchases(database, Ledger(database), settings.credit_packs, providers, utcnow)
        try:
            return await reconcile_once(purchases)
        finally:
            for provider in providers.values():
                await provider.close()

    looked_at = run_job(job)
    if looked_at is None:
        typer.echo("another gateway is reconciling right now; nothing done")
    else:
        typer.echo(f"{looked_at} orders asked about")


@orders_app.command("list")
def orders_list(
    user: Annotated[str | None, typer.Option(help="Only this user's (LibreChat id).")] = None,
    status: Annotated[str | None, typer.Option(help="Only orders in this state.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The newest orders first.

    Example: solaris orders list --status pending
    """

    async def job(_settings: Settings, database: Database) -> list[dict[str, Any]]:
        query = (
            select(
                orders.c.public_id, users.c.external_id.label("user"), orders.c.pack_name,
                orders.c.tokens, orders.c.amount_cents, orders.c.currency, orders.c.provider,
                orders.c.status, orders.c.refunded_cents, orders.c.created_at, orders.c.paid_at,
            )
            .join(users, users.c.id == orders.c.user_id)
            .order_by(orders.c.created_at.desc(), orders.c.id.desc())
            .limit(LISTED_MAX)
        )  # fmt: skip
        if user is not None:
            query = query.where(users.c.external_id == user)
        if status is not None:
            query = query.where(orders.c.status == status)
        async with database.transaction() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    columns = ["public_id", "user", "pack_name", "tokens", "amount_cents", "currency", "status"]
    print_rows(run_job(job), as_json, columns)
