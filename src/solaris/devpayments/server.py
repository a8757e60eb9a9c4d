"""`solaris dev-payments`: local fakes of Stripe and Mercado Pago on one port, for development
and tests. Never for production: it takes any API key and moves no money.

Routes: Stripe's /v1/checkout/sessions, /v1/refunds, … and the checkout page /c/pay/{id}
(stripe_routes.py); Mercado Pago's /v1/payments… and the Pix ticket page (mercadopago_routes.py);
the control API /_control/… (control.py); GET /health.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.config import STARTUP_FAILURE

from solaris.devpayments.control import Control
from solaris.devpayments.mercadopago import MercadoPagoState
from solaris.devpayments.mercadopago_routes import MercadoPagoApi
from solaris.devpayments.stripe_routes import StripeApi
from solaris.devpayments.stripe_state import StripeState
from solaris.devpayments.webhooks import Endpoints, Webhooks
from solaris.devpayments.wire import json_response

__all__ = ["DevPayments", "build_app", "run", "server_config"]


class DevPayments:
    """Both fakes' state, sharing one webhook log."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.webhooks = Webhooks(endpoints)
        self.stripe = StripeState(self.webhooks)
        self.mercadopago = MercadoPagoState(self.webhooks)


def build_app(endpoints: Endpoints) -> Starlette:
    fakes = DevPayments(endpoints)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await fakes.webhooks.close()

    async def health(_request: Request) -> Response:
        return json_response({"status": "ok"})

    routes = [
        Route("/health", health, methods=["GET"]),
        *StripeApi(fakes.stripe).routes(),
        *MercadoPagoApi(fakes.mercadopago).routes(),
        *Control(fakes.stripe, fakes.mercadopago).routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.fakes = fakes
    return app


def server_config(host: str, port: int, endpoints: Endpoints) -> uvicorn.Config:
    return uvicorn.Config(
        build_app(endpoints),
        host=host,
        port=port,
        ws="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


def run(host: str, port: int, endpoints: Endpoints) -> None:
    server = uvicorn.Server(server_config(host, port, endpoints))
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)  # as uvicorn.run does, e.g. when the port is taken
