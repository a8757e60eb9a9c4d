"""`solaris orders …`: credit purchases as the operator sees them, through the same
`solaris.operations.orders.Orders` as the admin API and the dashboard (a refund here is audited
as `cli`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from solaris.cli._common import JsonOption, print_rows, run_job
from solaris.clock import as_utc, utcnow

if TYPE_CHECKING:  # imported by the commands that use them (see _common)
    from solaris.config import Settings
    from solaris.operations.purchases import Purchases
    from solaris.store.database import Database

__all__ = ["orders_app"]

orders_app = typer.Typer(no_args_is_help=True, help="Credit purchases (orders).")
T = TypeVar("T")


def _with_purchases(job: Callable[[Purchases], Awaitable[T]]) -> T:
    """Run `job` with the purchases of the configured providers, closed afterwards."""
    from solaris.ledger.ledger import Ledger
    from solaris.operations.purchases import Purchases
    from solaris.operations.receipts import receipts_of
    from solaris.payments.configured import configured_providers

    async def run(settings: Settings, database: Database) -> T:
        providers = configured_providers(settings)
        purchases = Purchases(
            database, Ledger(database, zone=settings.zone), settings.credit_packs, providers, utcnow,
            receipts=receipts_of(settings),
        )  # fmt: skip
        try:
            return await job(purchases)
        finally:
            for provider in providers.values():
                await provider.close()

    return run_job(run)


@orders_app.command("reconcile")
def orders_reconcile() -> None:
    """Ask the payment providers about pending and lately paid orders and apply what they say,
    as every gateway does every five minutes (a lost webhook is credited; a lost refund taken).

    Example: solaris orders reconcile
    """
    from solaris.operations.reconciler import reconcile_once

    looked_at = _with_purchases(reconcile_once)
    if looked_at is None:
        typer.echo("another gateway is reconciling right now; nothing done")
    else:
        typer.echo(f"{looked_at} orders asked about")


@orders_app.command("list")
def orders_list(
    user: Annotated[str | None, typer.Option(help="Only this user's (LibreChat id).")] = None,
    status: Annotated[str | None, typer.Option(help="Only orders in this state.")] = None,
    provider: Annotated[str | None, typer.Option(help="stripe or mercadopago.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Created at or after (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Created before (UTC).")] = None,
    # At most one page: OrderFilter refuses more, as the admin API does.
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: JsonOption = False,
) -> None:
    """The newest orders first.

    Example: solaris orders list --status pending --since 2026-01-01
    """
    from solaris.operations.orders import OrderFilter, Orders

    wanted = OrderFilter(
        status, provider, user, since and as_utc(since), until and as_utc(until), limit
    )

    async def job(purchases: Purchases) -> list[dict[str, Any]]:
        return [line.model_dump() for line in await Orders(purchases).find(wanted)]

    columns = ["public_id", "user", "pack_name", "tokens", "amount_cents", "currency", "status"]
    print_rows(_with_purchases(job), as_json, columns)


@orders_app.command("show")
def orders_show(order: Annotated[str, typer.Argument(help="The order's id (ord_…).")]) -> None:
    """One order in full, as JSON: its provider events and audit lines.

    Example: solaris orders show ord_0123…
    """
    from solaris.operations.orders import Orders

    async def job(purchases: Purchases) -> dict[str, Any]:
        return (await Orders(purchases).detail(order)).model_dump(mode="json")

    typer.echo(json.dumps(_with_purchases(job), indent=2, ensure_ascii=False))


@orders_app.command("refund")
def orders_refund(
    order: Annotated[str, typer.Argument(help="The order's id (ord_…).")],
    amount: Annotated[
        int | None,
        typer.Option(min=1, help="In the currency's minor unit (centavos); default all left."),
    ] = None,
) -> None:
    """Ask the order's payment provider to refund it, in full or in part. The tokens are taken
    back (in proportion) when the provider confirms it; audited as `cli`.

    Example: solaris orders refund ord_0123… --amount 1250
    """
    from solaris.operations.core import CLI_ACTOR
    from solaris.operations.orders import Orders

    async def job(purchases: Purchases) -> str:
        asked = await Orders(purchases).refund(order, amount, CLI_ACTOR)
        return f"refund of {asked.amount_cents} {asked.currency} requested for {asked.order}"

    typer.echo(_with_purchases(job))
