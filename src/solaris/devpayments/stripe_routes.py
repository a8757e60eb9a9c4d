"""Stripe's API as the official SDK calls it, and the hosted checkout page.

/v1 takes form bodies and a Bearer key (any), and keeps Stripe's idempotency: a POST with an
`Idempotency-Key` seen before gets the first answer again (`Idempotent-Replayed: true`), or a
400 `idempotency_error` when its parameters differ. Events from these routes are delivered
after the answer, as Stripe does.

The checkout page at a session's `url` shows the items with a Pay button, a "Pay by a delayed
method" button (the session completes unpaid) and a Cancel link. Paying redirects to the
session's success_url with {CHECKOUT_SESSION_ID} filled in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from solaris.devpayments.stripe_state import (
    API_VERSION,
    OBJECTS_MAX,
    StripeError,
    StripeState,
    missing,
    public,
)
from solaris.devpayments.webhooks import Event
from solaris.devpayments.wire import (
    FormError,
    Json,
    decode_form,
    json_response,
    random_id,
    read_body,
)

__all__ = ["StripeApi"]

Handler = Callable[[Request, Json], Awaitable[tuple[Json, list[Event]]]]
_NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
)


class StripeApi:
    def __init__(self, state: StripeState) -> None:
        self.state = state
        # Idempotency-Key -> (route and body of the first request, its answer)
        self._replies: dict[str, tuple[bytes, bytes]] = {}

    def routes(self) -> list[Route]:
        post, get = ["POST"], ["GET"]
        return [
            Route("/v1/checkout/sessions", self._api(self._create), methods=post),
            Route("/v1/checkout/sessions/{id}", self._api(self._retrieve), methods=get),
            Route("/v1/checkout/sessions/{id}/expire", self._api(self._expire), methods=post),
            Route("/v1/refunds", self._api(self._refund), methods=post),
            Route("/v1/refunds/{id}", self._api(self._lookup("refund")), methods=get),
            Route("/v1/charges/{id}", self._api(self._lookup("charge")), methods=get),
            Route(
                "/v1/payment_intents/{id}", self._api(self._lookup("payment_intent")), methods=get
            ),
            Route("/c/pay/{id}", self._page, methods=get),
            Route("/c/pay/{id}", self._pay, methods=post),
        ]

    def _api(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            headers = {"Request-Id": random_id("req_", 14), "Stripe-Version": _version(request)}
            if not request.headers.get("authorization", "").startswith("Bearer "):
                return json_response(
                    {"error": {"type": "invalid_request_error", "message": _NO_KEY}}, 401, headers
                )
            try:
                raw = await read_body(request)
                key = request.headers.get("idempotency-key")
                fingerprint = f"{request.method} {request.url.path}\n".encode() + raw
                if key is not None and request.method == "POST" and key in self._replies:
                    return self._replay(key, fingerprint, headers)
                query = request.url.query.encode()
                params = decode_form(raw if request.method == "POST" else query)
                obj, events = await handler(request, params)
                answer = orjson.dumps(self.state.expanded(public(obj), params.get("expand")))
            except FormError as exc:
                return json_response(StripeError(400, str(exc)).body, 400, headers)
            except StripeError as exc:
                return json_response(exc.body, exc.status, headers)
            if key is not None and request.method == "POST":
                if len(self._replies) >= OBJECTS_MAX:
                    del self._replies[next(iter(self._replies))]
                self._replies[key] = (fingerprint, answer)
            self.state.webhooks.emit_soon(events)
            return Response(answer, 200, headers, media_type="application/json")

        return endpoint

    def _replay(self, key: str, fingerprint: bytes, headers: dict[str, str]) -> Response:
        first, answer = self._replies[key]
        if first != fingerprint:
            error = StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                kind="idempotency_error",
            )
            return json_response(error.body, 400, headers)
        replayed = {**headers, "Idempotent-Replayed": "true"}
        return Response(answer, 200, replayed, media_type="application/json")

    async def _create(self, request: Request, params: Json) -> tuple[Json, list[Event]]:
        base = str(request.base_url)
        version = request.headers.get("stripe-version")
        return self.state.create_session(params, base, version), []

    async def _retrieve(self, request: Request, _params: Json) -> tuple[Json, list[Event]]:
        return self.state.session(request.path_params["id"]), []

    async def _expire(self, request: Request, _params: Json) -> tuple[Json, list[Event]]:
        return self.state.expire(request.path_params["id"])

    async def _refund(self, _request: Request, params: Json) -> tuple[Json, list[Event]]:
        return self.state.refund(params)

    def _lookup(self, kind: str) -> Handler:
        table = {
            "refund": self.state.refunds,
            "charge": self.state.charges,
            "payment_intent": self.state.payment_intents,
        }[kind]

        async def handler(request: Request, _params: Json) -> tuple[Json, list[Event]]:
            id = request.path_params["id"]
            if id not in table:
                raise missing(kind, id, "id")
            return table[id], []

        return handler

    async def _page(self, request: Request) -> Response:
        session = self.state.sessions.get(request.path_params["id"])
        if session is None:
            return HTMLResponse(_page("Checkout", "<p>Something went wrong.</p>"), 404)
        if session["status"] != "open":
            body = f"<p>This Checkout Session is {escape(session['status'])}.</p>"
            return HTMLResponse(_page("Checkout", body))
        return HTMLResponse(_page("Checkout", _checkout_form(session)))

    async def _pay(self, request: Request) -> Response:
        id = request.path_params["id"]
        try:
            form = decode_form(await read_body(request))
            session, events = self.state.complete(id, paid=form.get("method") != "delayed")
        except (FormError, StripeError) as exc:
            status = exc.status if isinstance(exc, StripeError) else 400
            return HTMLResponse(_page("Checkout", f"<p>{escape(str(exc))}</p>"), status)
        self.state.webhooks.emit_soon(events)
        target = session["success_url"].replace("{CHECKOUT_SESSION_ID}", id)
        return RedirectResponse(target, 303)


def _version(request: Request) -> str:
    return request.headers.get("stripe-version") or API_VERSION


def _checkout_form(session: Json) -> str:
    currency = session["currency"].upper()
    rows = "".join(
        f"<tr><td>{escape(item['name'])} &times; {item['quantity']}</td>"
        f"<td>{currency} {item['unit_amount'] * item['quantity'] / 100:.2f}</td></tr>"
        for item in session["_line_items"]
    )
    cancel = session["cancel_url"]
    cancel_link = f'<a id="cancel" href="{escape(cancel)}">Cancel</a>' if cancel else ""
    return (
        f"<table>{rows}<tr><th>Total</th><th>{currency} "
        f"{session['amount_total'] / 100:.2f}</th></tr></table>"
        f'<form method="post" action="/c/pay/{escape(session["id"])}">'
        '<button id="pay" name="method" value="card" type="submit">Pay</button> '
        '<button id="pay-delayed" name="method" value="delayed" type="submit">'
        "Pay by a delayed method</button></form>"
        f"<p>{cancel_link}</p>"
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · dev-payments (Stripe)</title></head>"
        f"<body><h1>{escape(title)}</h1><p><small>A local fake of Stripe Checkout: no money "
        f"moves.</small></p>{body}</body></html>"
    )
