"""Running things: the gateway, its migrations, the development provider and payment fakes."""

from __future__ import annotations

import os
import signal
import socket
from typing import TYPE_CHECKING, Annotated, Any

import typer

from solaris.cli._common import run_job
from solaris.clock import utcnow

if TYPE_CHECKING:  # imported by the commands that use them (see _common)
    import uvicorn

    from solaris.app import SolarisApp
    from solaris.config import Settings
    from solaris.store.database import Database

__all__ = ["register", "serve_process", "server_config"]

WORKER_STOP_MARGIN_S = 10.0  # past its grace and settling, for a stopping worker's last steps


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command("migrate")(migrate_command)
    app.command("dev-provider")(dev_provider)
    app.command("dev-payments")(dev_payments)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (SOLARIS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SOLARIS_PORT).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Processes on the port (SOLARIS_WORKERS; one per core with Redis)."),
    ] = None,
) -> None:
    """Run the gateway. Refuses an unmigrated database: run `solaris migrate` first."""
    import structlog

    from solaris.app import SETTLE_DRAIN_S  # also loads the app once, before any fork
    from solaris.cli.workers import STARTUP_FAILURE, supervise, worker_count
    from solaris.config import load_settings, missing_setup
    from solaris.ledger.plans import Plans
    from solaris.observability.logs import configure_logging
    from solaris.store.database import migrate

    log = structlog.get_logger("solaris")
    given = {"host": host, "port": port, "workers": workers}
    settings = load_settings(**{k: v for k, v in given.items() if v is not None})
    count = worker_count(settings)
    configure_logging(settings.log_format)
    if missing := missing_setup(settings):  # the first line a newcomer reads
        log.warning("setup_incomplete", missing=missing)

    async def check(settings: Settings, database: Database) -> None:
        if settings.migrate_on_start:
            await migrate(database)
        await database.check_migrated()
        await Plans(database).sync_from_settings(settings, utcnow())

    run_job(check)
    if os.environ.get("FORWARDED_ALLOW_IPS") is not None:
        typer.echo(
            "warning: FORWARDED_ALLOW_IPS is ignored; the gateway trusts only the proxies in "
            f"SOLARIS_FORWARDED_ALLOW_IPS ({','.join(settings.forwarded_allow_ips) or 'none'})",
            err=True,
        )
    if count > 1:
        # Each worker drains for the grace, then settles; past that and a margin it is killed.
        stop_s_max = settings.shutdown_grace_s + SETTLE_DRAIN_S + WORKER_STOP_MARGIN_S
        raise typer.Exit(supervise(settings, count, serve_process, stop_s_max))
    if not serve_process(settings):
        raise typer.Exit(STARTUP_FAILURE)


def serve_process(settings: Settings, sockets: list[socket.socket] | None = None) -> bool:
    """One gateway process, its app and pools its own, served until SIGTERM (then exits 0);
    False if its app did not start. On `sockets` when a supervisor bound them."""
    import uvicorn

    from solaris.app import build_app
    from solaris.metering.tokenizer import few_malloc_arenas

    few_malloc_arenas()  # before the app's threads start
    # uvicorn drains on SIGTERM, then re-raises the signal to the handler it found: make that
    # one a clean exit, so a graceful shutdown exits 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    server = uvicorn.Server(server_config(settings, build_app(settings)))
    server.run(sockets)
    return server.started


def server_config(settings: Settings, app: SolarisApp, loop: str = "uvloop") -> uvicorn.Config:
    """How uvicorn serves the gateway (the tests serve it in-process with this same config)."""
    import uvicorn

    from solaris.gateway.server_protocol import GatewayHttpProtocol

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop=loop,
        http=GatewayHttpProtocol,  # httptools, its own 400s in OpenAI's error shape
        access_log=False,  # the gateway logs one structured line per request itself
        log_config=None,  # keep configure_logging's handler: uvicorn's lines in our format
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        **proxy_options(settings.forwarded_allow_ips),
    )


def proxy_options(trusted: list[str]) -> dict[str, Any]:
    """uvicorn's proxy options, explicit: by default uvicorn believes X-Forwarded-* from
    127.0.0.1 (or from $FORWARDED_ALLOW_IPS when its argument is None), so anyone on loopback
    could choose their client address. With nobody trusted the headers are not read at all."""
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": list(trusted)}


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def migrate_command() -> None:
    """Create or upgrade the database schema (SOLARIS_DATABASE_URL)."""
    from solaris.ledger.plans import Plans
    from solaris.observability.logs import configure_logging
    from solaris.store.database import migrate

    async def job(settings: Settings, database: Database) -> str | None:
        configure_logging(settings.log_format)  # the seeding's lines, as `serve` writes them
        revision = await migrate(database)
        await Plans(database).sync_from_settings(settings, utcnow())
        return revision

    typer.echo(f"database at revision {run_job(job)}")


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


def dev_payments(
    host: str = "127.0.0.1",
    port: int = 9200,
    stripe_webhook_url: Annotated[
        str | None, typer.Option(help="Where Stripe events go (none: only logged).")
    ] = None,
    stripe_webhook_secret: Annotated[
        str, typer.Option(help="The whsec_… they are signed with.")
    ] = "whsec_dev",
    mercadopago_webhook_url: Annotated[
        str | None,
        typer.Option(help="Where Mercado Pago notifies, unless a payment names its own."),
    ] = None,
    mercadopago_webhook_secret: Annotated[
        str, typer.Option(help="The secret x-signature is made with.")
    ] = "dev-mercadopago-secret",
) -> None:
    """Local fakes of Stripe Checkout and Mercado Pago Pix for development and tests (never for
    production: any API key is taken, no money moves).

    Both answer at one address: point the stripe SDK's base_addresses={"api": …} and the
    Mercado Pago base URL at it. Tests drive payments and webhooks with /_control/….

    Example usage:

        solaris dev-payments --port 9200 \\
          --stripe-webhook-url http://127.0.0.1:8080/webhooks/stripe \\
          --mercadopago-webhook-url http://127.0.0.1:8080/webhooks/mercadopago
    """
    try:
        from solaris.devpayments import Endpoints, run
    except ImportError as exc:  # segno comes with the dev dependencies only
        typer.echo(f"dev-payments needs the dev dependencies ({exc}): run make install", err=True)
        raise typer.Exit(2) from exc
    endpoints = Endpoints(
        stripe_url=stripe_webhook_url,
        stripe_secret=stripe_webhook_secret,
        mercadopago_url=mercadopago_webhook_url,
        mercadopago_secret=mercadopago_webhook_secret,
    )
    run(host, port, endpoints)
