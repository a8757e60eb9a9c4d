"""Stripe's objects in the fake, and every change to them with the events it emits.

Shapes follow Stripe's API reference (Checkout Session, PaymentIntent, Charge, Refund, Dispute,
Event), with the fields a payment-mode integration reads; ids carry Stripe's prefixes. Each
change returns the events it emits, snapshots of the objects as they were then; the caller
hands them to `Webhooks.emit`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from solaris.devpayments.webhooks import Event, Webhooks
from solaris.devpayments.wire import Json, random_id

__all__ = ["API_VERSION", "OBJECTS_MAX", "StripeError", "StripeState"]

API_VERSION = "2026-10-28.endive"  # what stripe 16.1 sends; a request's Stripe-Version wins
OBJECTS_MAX = 50_000  # sessions kept before create refuses; restart the fake to start over
SESSION_TTL_S = 24 * 3600
_BUYER = {"email": "buyer@example.com", "name": "Dev Buyer"}


class StripeError(Exception):
    """An API error, answered as Stripe's `{"error": {...}}` envelope with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Json = {
            "error": {
                "type": kind,
                "message": message,
                **({"param": param} if param else {}),
                **({"code": code} if code else {}),
            }
        }


def missing(kind: str, id: str, param: str) -> StripeError:
    return StripeError(404, f"No such {kind}: '{id}'", param, "resource_missing")


class StripeState:
    """Sessions, payment intents, charges, refunds and disputes by id."""

    def __init__(self, webhooks: Webhooks) -> None:
        self.webhooks = webhooks
        self.sessions: dict[str, Json] = {}
        self.payment_intents: dict[str, Json] = {}
        self.charges: dict[str, Json] = {}
        self.refunds: dict[str, Json] = {}
        self.disputes: dict[str, Json] = {}
        self.api_versions: dict[str, str] = {}  # session id -> the version it was created with

    def create_session(self, params: Json, base_url: str, api_version: str | None) -> Json:
        if len(self.sessions) >= OBJECTS_MAX:
            raise StripeError(400, f"dev-payments keeps at most {OBJECTS_MAX} sessions")
        if params.get("mode") != "payment":
            raise StripeError(400, "dev-payments fakes mode=payment only", "mode")
        currency, amount, items = _line_items(params.get("line_items"))
        metadata = _metadata(params.get("metadata", {}))
        success_url = _text(params, "success_url", 5000, required=True)
        now = int(time.time())
        id = random_id("cs_test_a1", 56)
        session: Json = {
            "id": id,
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "cancel_url": _text(params, "cancel_url", 5000),
            "client_reference_id": _text(params, "client_reference_id", 200),
            "created": now,
            "currency": currency,
            "customer": None,
            "customer_details": None,
            "customer_email": _text(params, "customer_email", 800),
            "expires_at": _expires_at(params.get("expires_at"), now),
            "livemode": False,
            "locale": _text(params, "locale", 20),
            "metadata": metadata,
            "mode": "payment",
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "success_url": success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": f"{base_url.rstrip('/')}/c/pay/{id}",
        }
        self.sessions[id] = session
        self.api_versions[id] = api_version or API_VERSION
        session["_line_items"] = items  # dropped from answers; the hosted page shows them
        return session

    def session(self, id: str) -> Json:
        session = self.sessions.get(id)
        if session is None:
            raise missing("checkout.session", id, "session")
        return session

    def expire(self, id: str) -> tuple[Json, list[Event]]:
        session = self.session(id)
        if session["status"] != "open":
            raise StripeError(
                400,
                'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
                f'Session has a status of "{session["status"]}".',
                "session",
            )
        session.update(status="expired", url=None)
        return session, [self._event("checkout.session.expired", session, id)]

    def complete(
        self, id: str, paid: bool, amount_total: int | None = None
    ) -> tuple[Json, list[Event]]:
        """The buyer pays: by card (paid at once) or by a delayed method (unpaid until
        `settle_delayed`). `amount_total` overrides what was charged, for mismatch tests."""
        session = self.session(id)
        if session["status"] != "open":
            raise StripeError(400, f"This Checkout Session is {session['status']}.", "session")
        if amount_total is not None:
            session["amount_total"] = amount_total
        intent = self._payment_intent(session, "succeeded" if paid else "processing")
        session.update(
            status="complete",
            payment_status="paid" if paid else "unpaid",
            payment_intent=intent["id"],
            customer_details={
                "email": session["customer_email"] or _BUYER["email"],
                "name": _BUYER["name"],
                "address": None,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            },
        )
        if paid:
            self._charge(intent)
        return session, [self._event("checkout.session.completed", session, id)]

    def settle_delayed(self, id: str, succeeded: bool) -> tuple[Json, list[Event]]:
        session = self.session(id)
        if session["status"] != "complete" or session["payment_status"] != "unpaid":
            raise StripeError(400, "The session has no delayed payment to settle.", "session")
        intent = self.payment_intents[session["payment_intent"]]
        if succeeded:
            intent["status"] = "succeeded"
            self._charge(intent)
            session["payment_status"] = "paid"
            kind = "checkout.session.async_payment_succeeded"
        else:
            intent["status"] = "requires_payment_method"
            kind = "checkout.session.async_payment_failed"
        return session, [self._event(kind, session, id)]

    def refund(self, params: Json) -> tuple[Json, list[Event]]:
        charge = self._refundable_charge(params)
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = _amount(params.get("amount"), "amount") if "amount" in params else remaining
        if charge["refunded"]:
            raise StripeError(
                400,
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        if charge["disputed"]:
            raise StripeError(
                400, f"Charge {charge['id']} has been charged back.", code="charge_disputed"
            )
        if amount > remaining:
            raise StripeError(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                "amount",
            )
        refund: Json = {
            "id": random_id("re_3"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "metadata": _metadata(params.get("metadata", {})),
            "payment_intent": charge["payment_intent"],
            "reason": params.get("reason"),
            "status": "succeeded",
        }
        self.refunds[refund["id"]] = refund
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        event = self._event("charge.refunded", charge, _session_of(self, charge), previous)
        return refund, [event]

    def dispute(self, id: str, amount: int | None, reason: str) -> tuple[Json, list[Event]]:
        """A chargeback on the session's charge."""
        session = self.session(id)
        intent = self.payment_intents.get(session["payment_intent"] or "")
        charge = self.charges.get(intent["latest_charge"] or "") if intent else None
        if charge is None:
            raise StripeError(400, "The session has no charge to dispute.", "session")
        dispute: Json = {
            "id": random_id("dp_1"),
            "object": "dispute",
            "amount": charge["amount"] if amount is None else amount,
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "needs_response",
        }
        self.disputes[dispute["id"]] = dispute
        charge["disputed"] = True
        return dispute, [self._event("charge.dispute.created", dispute, id)]

    def _refundable_charge(self, params: Json) -> Json:
        if params.get("charge"):
            given = self.charges.get(params["charge"])
            if given is None:
                raise missing("charge", params["charge"], "charge")
            return given
        intent_id = params.get("payment_intent")
        if not intent_id:
            raise StripeError(
                400,
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
            )
        intent = self.payment_intents.get(intent_id)
        if intent is None:
            raise missing("payment_intent", intent_id, "payment_intent")
        if intent["latest_charge"] is None:
            raise StripeError(
                400,
                f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                "payment_intent",
            )
        charge: Json = self.charges[intent["latest_charge"]]
        return charge

    def _payment_intent(self, session: Json, status: str) -> Json:
        intent: Json = {
            "id": random_id("pi_3"),
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_received": 0,
            "created": int(time.time()),
            "currency": session["currency"],
            "latest_charge": None,
            "livemode": False,
            "metadata": {},
            "payment_method_types": ["card"],
            "status": status,
        }
        self.payment_intents[intent["id"]] = intent
        return intent

    def _charge(self, intent: Json) -> Json:
        charge: Json = {
            "id": random_id("ch_3"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"],
            "amount_refunded": 0,
            "captured": True,
            "created": int(time.time()),
            "currency": intent["currency"],
            "disputed": False,
            "livemode": False,
            "metadata": {},
            "paid": True,
            "payment_intent": intent["id"],
            "refunded": False,
            "status": "succeeded",
        }
        self.charges[charge["id"]] = charge
        intent.update(latest_charge=charge["id"], amount_received=intent["amount"])
        return charge

    def _event(self, kind: str, obj: Json, session_id: str, previous: Json | None = None) -> Event:
        id = random_id("evt_1")
        data: Json = {"object": public(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        body = {
            "id": id,
            "object": "event",
            "api_version": self.api_versions.get(session_id, API_VERSION),
            "created": int(time.time()),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }
        raw = orjson.dumps(body, option=orjson.OPT_INDENT_2)
        return self.webhooks.new_event("stripe", id, kind, obj["id"], raw, None)


def public(obj: Json) -> Json:
    """The object as the API answers it, without the fake's own keys."""
    return {key: value for key, value in obj.items() if not key.startswith("_")}


def _session_of(state: StripeState, charge: Json) -> str:
    intent_id = charge["payment_intent"]
    return next(
        (id for id, session in state.sessions.items() if session["payment_intent"] == intent_id), ""
    )


def _line_items(given: object) -> tuple[str, int, list[Json]]:
    if not isinstance(given, list) or not given:
        raise StripeError(
            400, "Missing required param: line_items.", "line_items", "parameter_missing"
        )
    currencies, total, items = set(), 0, []
    for index, item in enumerate(given):
        param = f"line_items[{index}]"
        price = item.get("price_data") if isinstance(item, dict) else None
        if not isinstance(price, dict):
            raise StripeError(400, f"dev-payments takes inline {param}[price_data] only", param)
        product = price.get("product_data")
        if not isinstance(product, dict) or not product.get("name"):
            raise StripeError(
                400,
                "Missing required param: product_data[name].",
                f"{param}[price_data][product_data][name]",
            )
        currency = price.get("currency")
        if not isinstance(currency, str) or len(currency) != 3:
            raise StripeError(400, "Invalid currency.", f"{param}[price_data][currency]")
        unit = _amount(price.get("unit_amount"), f"{param}[price_data][unit_amount]")
        quantity = _amount(item.get("quantity", "1"), f"{param}[quantity]", minimum=1)
        currencies.add(currency.lower())
        total += unit * quantity
        items.append({"name": product["name"], "unit_amount": unit, "quantity": quantity})
    if len(currencies) != 1:
        raise StripeError(400, "All line items must use the same currency.", "line_items")
    return currencies.pop(), total, items


def _amount(value: object, param: str, minimum: int = 0) -> int:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text.isdigit() or int(text) < minimum or int(text) > 99_999_999:
        raise StripeError(400, f"Invalid integer: {value}", param)
    return int(text)


def _metadata(given: object) -> dict[str, str]:
    if given == "":
        return {}
    if not isinstance(given, dict) or len(given) > 50:
        raise StripeError(400, "Invalid metadata: at most 50 string keys.", "metadata")
    for key, value in given.items():
        if len(key) > 40 or not isinstance(value, str) or len(value) > 500:
            raise StripeError(400, f"Invalid metadata[{key}].", f"metadata[{key}]")
    return dict(given)


def _text(params: Json, key: str, length_max: int, required: bool = False) -> Any:
    value = params.get(key)
    if value is None and required:
        raise StripeError(400, f"Missing required param: {key}.", key, "parameter_missing")
    if value is not None and (not isinstance(value, str) or len(value) > length_max):
        raise StripeError(400, f"Invalid {key}.", key)
    return value


def _expires_at(given: object, now: int) -> int:
    if given is None:
        return now + SESSION_TTL_S
    expires = _amount(given, "expires_at")
    if not now + 1800 <= expires <= now + SESSION_TTL_S:
        raise StripeError(400, "expires_at must be 30 minutes to 24 hours away.", "expires_at")
    return expires
