"""The test-only control API under /_control: drive a payment, then see and replay its webhooks.

Changes (POST, JSON body optional) answer `{"object": …, "events": [event…]}` once their
events are delivered (or held), each event with its `deliveries` (`status` the receiver's
answer):

  /_control/stripe/sessions/{id}/pay            {"payment_status": "paid"|"unpaid",
                                                 "amount_total": n}  checkout.session.completed
  /_control/stripe/sessions/{id}/async_payment_succeeded | async_payment_failed
  /_control/stripe/sessions/{id}/expire         checkout.session.expired
  /_control/stripe/sessions/{id}/refund         {"amount": n}  charge.refunded
  /_control/stripe/sessions/{id}/dispute        {"amount": n, "reason": "fraudulent"}
                                                charge.dispute.created
  /_control/stripe/sessions/{id}/dispute/close  {"status": "won"|"lost"}  charge.dispute.closed
  /_control/mercadopago/payments/{id}/approve   {"transaction_amount": x}  payment.updated
  /_control/mercadopago/payments/{id}/reject | expire | refund {"amount": x}

Webhooks:

  GET    /_control/events?provider=&type=&object_id=   what was emitted, oldest first
  DELETE /_control/events                              forget them
  POST   /_control/events/{seq}/send   {"times": n, "tamper": {"secret", "timestamp",
                                        "body", "unsigned"}, "urls": [u, …]}  deliver again
                                        (duplicates, signatures a receiver must refuse; with
                                        urls, one signed request to each at once); {seq} may
                                        be `last`. Nothing is retried by itself.
  POST   /_control/webhooks/hold       keep new events back (a lost or late webhook)
  POST   /_control/webhooks/release    {"reverse": true}  deliver what was held (out of order)
  POST   /_control/webhooks/settle     wait until the deliveries the API started are done
  GET|PUT /_control/config             the webhook URLs and secrets
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from solaris.devpayments.mercadopago import MercadoPagoError, MercadoPagoState
from solaris.devpayments.stripe_state import StripeError, StripeState, public
from solaris.devpayments.webhooks import SENDS_MAX, Endpoints, Event, Tamper, Webhooks
from solaris.devpayments.wire import FormError, Json, json_response, read_json

__all__ = ["Control"]

Change = Callable[[Request, Json], tuple[Json, list[Event]]]
_REASONS = ("fraudulent", "duplicate", "product_not_received", "general")


class Control:
    def __init__(self, stripe: StripeState, mercadopago: MercadoPagoState) -> None:
        self.stripe = stripe
        self.mercadopago = mercadopago
        self.webhooks: Webhooks = stripe.webhooks

    def routes(self) -> list[Route]:
        stripe, mp = "/_control/stripe/sessions/{id}", "/_control/mercadopago/payments/{id:int}"
        changes: dict[str, Change] = {
            f"{stripe}/pay": self._pay,
            f"{stripe}/async_payment_succeeded": self._async(True),
            f"{stripe}/async_payment_failed": self._async(False),
            f"{stripe}/expire": lambda request, _: self.stripe.expire(request.path_params["id"]),
            f"{stripe}/refund": self._stripe_refund,
            f"{stripe}/dispute": self._dispute,
            f"{stripe}/dispute/close": self._close_dispute,
            f"{mp}/approve": self._approve,
            f"{mp}/reject": self._mp_change("rejected", "rejected_high_risk"),
            f"{mp}/expire": self._mp_change("cancelled", "expired"),
            f"{mp}/refund": lambda request, body: self.mercadopago.refund(
                request.path_params["id"], body
            ),
        }
        return [
            *(
                Route(path, self._change(change), methods=["POST"])
                for path, change in changes.items()
            ),
            Route("/_control/events", self._events, methods=["GET"]),
            Route("/_control/events", self._forget, methods=["DELETE"]),
            Route("/_control/events/{seq}/send", self._send, methods=["POST"]),
            Route("/_control/webhooks/hold", self._hold, methods=["POST"]),
            Route("/_control/webhooks/release", self._release, methods=["POST"]),
            Route("/_control/webhooks/settle", self._settle, methods=["POST"]),
            Route("/_control/config", self._config, methods=["GET", "PUT"]),
        ]

    def _change(self, change: Change) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                obj, events = change(request, await read_json(request))
            except (StripeError, MercadoPagoError) as exc:
                return _error(str(exc), exc.status)
            except (FormError, ValueError) as exc:
                return _error(str(exc))
            await self.webhooks.emit(events)
            summaries = [event.summary() for event in events]
            return json_response({"object": public(obj), "events": summaries})

        return endpoint

    def _pay(self, request: Request, body: Json) -> tuple[Json, list[Event]]:
        status = body.get("payment_status", "paid")
        if status not in ("paid", "unpaid"):
            raise ValueError("payment_status must be paid or unpaid")
        amount = _optional_int(body, "amount_total")
        return self.stripe.complete(request.path_params["id"], status == "paid", amount)

    def _async(self, succeeded: bool) -> Change:
        return lambda request, _: self.stripe.settle_delayed(request.path_params["id"], succeeded)

    def _stripe_refund(self, request: Request, body: Json) -> tuple[Json, list[Event]]:
        session = self.stripe.session(request.path_params["id"])
        if session["payment_intent"] is None:
            raise StripeError(400, "The session has no payment to refund.", "session")
        params: Json = {"payment_intent": session["payment_intent"]}
        if (amount := _optional_int(body, "amount")) is not None:
            params["amount"] = str(amount)
        return self.stripe.refund(params)

    def _dispute(self, request: Request, body: Json) -> tuple[Json, list[Event]]:
        reason = body.get("reason", "fraudulent")
        if reason not in _REASONS:
            raise ValueError(f"reason must be one of {', '.join(_REASONS)}")
        amount = _optional_int(body, "amount")
        return self.stripe.dispute(request.path_params["id"], amount, reason)

    def _close_dispute(self, request: Request, body: Json) -> tuple[Json, list[Event]]:
        status = body.get("status", "lost")
        if status not in ("won", "lost"):
            raise ValueError("status must be won or lost")
        return self.stripe.close_dispute(request.path_params["id"], status)

    def _approve(self, request: Request, body: Json) -> tuple[Json, list[Event]]:
        amount = body.get("transaction_amount")
        return self.mercadopago.change(request.path_params["id"], "approved", "accredited", amount)

    def _mp_change(self, status: str, detail: str) -> Change:
        return lambda request, _: self.mercadopago.change(request.path_params["id"], status, detail)

    async def _events(self, request: Request) -> Response:
        query = request.query_params
        shown = [
            event.summary()
            for event in self.webhooks.events
            if all(
                query[key] == getattr(event, key)
                for key in ("provider", "type", "object_id")
                if key in query
            )
        ]
        return json_response(shown)

    async def _forget(self, _request: Request) -> Response:
        self.webhooks.events.clear()
        return json_response({"deleted": True})

    async def _send(self, request: Request) -> Response:
        seq: str = request.path_params["seq"]
        if seq == "last":
            event = self.webhooks.events[-1] if self.webhooks.events else None
        else:
            event = self.webhooks.find(int(seq)) if seq.isdigit() else None
        if event is None:
            return _error("no such event (forgotten, or never emitted)", 404)
        try:
            body = await read_json(request)
            times = body.get("times", 1)
            if not isinstance(times, int) or not 1 <= times <= SENDS_MAX:
                raise ValueError(f"times must be 1..{SENDS_MAX}")
            tamper = body.get("tamper", {})
            if not isinstance(tamper, dict):
                raise ValueError("tamper must be an object")
            urls = body.get("urls")
            if urls is not None and (
                not isinstance(urls, list)
                or not 1 <= len(urls) <= SENDS_MAX
                or not all(isinstance(url, str) and url.startswith("http") for url in urls)
            ):
                raise ValueError(f"urls must be a list of 1..{SENDS_MAX} http(s) URLs")
            deliveries = await self.webhooks.send(event, Tamper.from_json(tamper), times, urls)
        except (FormError, ValueError) as exc:
            return _error(str(exc))
        return json_response({"event": event.summary(), "sent": [asdict(d) for d in deliveries]})

    async def _hold(self, _request: Request) -> Response:
        self.webhooks.hold()
        return json_response({"holding": True})

    async def _release(self, request: Request) -> Response:
        try:
            reverse = (await read_json(request)).get("reverse") is True
        except FormError as exc:
            return _error(str(exc))
        released = await self.webhooks.release(reverse)
        return json_response({"holding": False, "events": [e.summary() for e in released]})

    async def _settle(self, _request: Request) -> Response:
        await self.webhooks.settle()
        return json_response({"settled": True})

    async def _config(self, request: Request) -> Response:
        endpoints = self.webhooks.endpoints
        if request.method == "PUT":
            try:
                body = await read_json(request)
                _configure(endpoints, body)
            except (FormError, ValueError) as exc:
                return _error(str(exc))
        return json_response(asdict(endpoints))


def _configure(endpoints: Endpoints, body: Json) -> None:
    fields = set(asdict(endpoints))
    unknown = body.keys() - fields
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    for key, value in body.items():
        nullable = key.endswith("_url")
        if not (isinstance(value, str) and value) and not (nullable and value is None):
            raise ValueError(f"{key} must be a non-empty string{' or null' if nullable else ''}")
        setattr(endpoints, key, value)


def _optional_int(body: Json, key: str) -> int | None:
    value: Any = body.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{key} must be an integer >= 0")
    return value


def _error(message: str, status: int = 400) -> Response:
    return json_response({"error": message}, status)
