"""Mercado Pago's /v1/payments routes, and the Pix ticket page a payment's ticket_url opens.

The ticket page shows the QR code, the copy-paste code and its expiry, and a "Simulate the
payment" button that approves the payment as a payer's bank would (a dev convenience, not
Mercado Pago's page). Events from these routes are delivered after the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from solaris.devpayments.mercadopago import MercadoPagoError, MercadoPagoState, public
from solaris.devpayments.webhooks import Event
from solaris.devpayments.wire import FormError, Json, json_response, read_json

__all__ = ["MercadoPagoApi"]

Handler = Callable[[Request], Awaitable[tuple[Json, list[Event], int]]]


class MercadoPagoApi:
    def __init__(self, state: MercadoPagoState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/v1/payments", self._api(self._create), methods=["POST"]),
            Route("/v1/payments/search", self._api(self._search), methods=["GET"]),
            Route("/v1/payments/{id:int}", self._api(self._get), methods=["GET"]),
            Route("/v1/payments/{id:int}/refunds", self._api(self._refund), methods=["POST"]),
            Route("/v1/payments/{id:int}/refunds", self._api(self._refunds), methods=["GET"]),
            Route("/mp/payments/{id:int}/ticket", self._ticket, methods=["GET"]),
            Route("/mp/payments/{id:int}/ticket", self._simulate, methods=["POST"]),
        ]

    def _api(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not request.headers.get("authorization", "").startswith("Bearer "):
                error = MercadoPagoError(401, "unauthorized")
                return json_response(error.body, 401)
            try:
                obj, events, status = await handler(request)
            except FormError as exc:
                return json_response(MercadoPagoError(400, str(exc)).body, 400)
            except MercadoPagoError as exc:
                return json_response(exc.body, exc.status)
            self.state.webhooks.emit_soon(events)
            return json_response(obj, status)

        return endpoint

    async def _create(self, request: Request) -> tuple[Json, list[Event], int]:
        body = await read_json(request)
        key = request.headers.get("x-idempotency-key")
        payment, events = self.state.create(body, key, str(request.base_url))
        return public(payment), events, 201

    async def _search(self, request: Request) -> tuple[Json, list[Event], int]:
        return self.state.search(dict(request.query_params)), [], 200

    async def _get(self, request: Request) -> tuple[Json, list[Event], int]:
        return public(self.state.payment(request.path_params["id"])), [], 200

    async def _refund(self, request: Request) -> tuple[Json, list[Event], int]:
        key = request.headers.get("x-idempotency-key")
        body = await read_json(request)
        refund, events = self.state.refund(request.path_params["id"], body, key)
        return refund, events, 201

    async def _refunds(self, request: Request) -> tuple[Json, list[Event], int]:
        payment = self.state.payment(request.path_params["id"])
        return payment["refunds"], [], 200

    async def _ticket(self, request: Request) -> Response:
        payment = self.state.payments.get(request.path_params["id"])
        if payment is None:
            return HTMLResponse(_page("<p>Payment not found.</p>"), 404)
        data = payment["point_of_interaction"]["transaction_data"]
        body = (
            f"<p>R$ {payment['_centavos'] / 100:.2f} · {escape(payment['description'] or '')}</p>"
            f'<p id="status">Status: {escape(payment["status"])}</p>'
            f'<img id="qr" alt="Pix QR code" src="data:image/png;base64,{data["qr_code_base64"]}">'
            f'<p><textarea id="code" readonly rows="4" cols="60">{escape(data["qr_code"])}'
            f"</textarea></p><p>Expires {escape(payment['date_of_expiration'])}</p>"
        )
        if payment["status"] == "pending":
            body += (
                f'<form method="post" action="/mp/payments/{payment["id"]}/ticket">'
                '<button id="pay" type="submit">Simulate the payment</button></form>'
            )
        return HTMLResponse(_page(body))

    async def _simulate(self, request: Request) -> Response:
        id = request.path_params["id"]
        try:
            _payment, events = self.state.change(id, "approved", "accredited")
        except MercadoPagoError as exc:
            return HTMLResponse(_page(f"<p>{escape(str(exc))}</p>"), exc.status)
        self.state.webhooks.emit_soon(events)
        return RedirectResponse(f"/mp/payments/{id}/ticket", 303)


def _page(body: str) -> str:
    return (
        '<!doctype html><html lang="pt-BR"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Pix · dev-payments (Mercado Pago)</title></head><body><h1>Pix</h1>"
        "<p><small>A local fake of Mercado Pago: no money moves.</small></p>"
        f"{body}</body></html>"
    )
