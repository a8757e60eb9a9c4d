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
    solaris admins create ops@example.com
    solaris alerts list --state failed
    solaris dev-provider --port 9100 --chunk-delay-s 0.05
    solaris demo
"""

from __future__ import annotations

import sys

import typer

from solaris.cli import accounts, admins, alerts, demo, money, orders, server
from solaris.errors import SolarisError

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
server.register(app)
app.add_typer(accounts.users_app, name="users")
app.add_typer(accounts.plans_app, name="plans")
app.add_typer(accounts.credits_app, name="credits")
app.add_typer(accounts.keys_app, name="keys")
app.add_typer(money.usage_app, name="usage")
money.register(app)
app.add_typer(money.ledger_app, name="ledger")
app.add_typer(admins.admins_app, name="admins")
app.add_typer(alerts.alerts_app, name="alerts")
app.add_typer(orders.orders_app, name="orders")
demo.register(app)


def main() -> None:
    try:
        app()
    except SolarisError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except Exception as error:
        # pydantic's, e.g. `plans set --period yearly`; pydantic is imported only by the
        # commands that use it, so `--help` and a typo answer without it.
        from pydantic import ValidationError

        if not isinstance(error, ValidationError):
            raise
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        typer.echo(f"error: {problems}", err=True)
        sys.exit(2)
