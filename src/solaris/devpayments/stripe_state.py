"""Stripe's objects in the fake, and every change to them with the events it emits.

Shapes follow Stripe's API reference (Checkout Session, PaymentIntent, Charge, Refund, Dispute,
Event), with the fields a payment-mode integration reads; ids carry Stripe's prefixes. Each
change returns the events it emits, snapshots of the objects as they were then; the caller
hands them to `Webhooks.emit`.
"""

from __future__ import annotations

import copy
import time

import orjson

from solaris.devpayments import stripe_params as check
from solaris.devpayments.stripe_params import StripeError, missing
from solaris.devpayments.webhooks import Event, Webhooks
from solaris.devpayments.wire import Json, random_id

__all__ = ["API_VERSION", "OBJECTS_MAX", "StripeError", "StripeState", "missing", "public"]

API_VERSION = "2026-10-28.endive"  # what stripe 16.1 sends; a request's Stripe-Version wins
OBJECTS_MAX = 50_000  # sessions kept before create refuses; restart the fake to start over
_BUYER = {"email": "buyer@example.com", "name": "Dev Buyer"}


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
        currency, amount, items = check.line_items(params.get("line_items"))
        metadata = check.metadata(params.get("metadata", {}))
        success_url = check.text(params, "success_url", 5000, required=True)
        now = int(time.time())
        id = random_id("cs_test_a1", 56)
        session: Json = {
            "id": id,
            "object": "checkout.session",
            "amount_subtotal": amount,
            "amount_total": amount,
            "cancel_url": check.text(params, "cancel_url", 5000),
            "client_reference_id": check.text(params, "client_reference_id", 200),
            "created": now,
            "currency": currency,
            "customer": None,
            "customer_details": None,
            "customer_email": check.text(params, "customer_email", 800),
            "expires_at": check.expires_at(params.get("expires_at"), now),
            "livemode": False,
            "locale": check.text(params, "locale", 20),
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
        intent_data = params.get("payment_intent_data", {})
        intent_metadata = intent_data.get("metadata", {}) if isinstance(intent_data, dict) else {}
        session["_intent_metadata"] = check.metadata(intent_metadata)
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
        amount = check.amount(params.get("amount"), "amount") if "amount" in params else remaining
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
            "metadata": check.metadata(params.get("metadata", {})),
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

    def close_dispute(self, id: str, status: str) -> tuple[Json, list[Event]]:
        """The session's latest dispute is decided: won or lost."""
        session = self.session(id)
        intent = self.payment_intents.get(session["payment_intent"] or "")
        charge_id = intent["latest_charge"] if intent else None
        found = [d for d in self.disputes.values() if d["charge"] == charge_id]
        if not found or found[-1]["status"] in ("won", "lost"):
            raise StripeError(400, "The session has no open dispute.", "session")
        dispute = found[-1]
        dispute["status"] = status
        return dispute, [self._event("charge.dispute.closed", dispute, id)]

    def expanded(self, obj: Json, paths: object) -> Json:
        """`obj` with the ids that `expand` names (e.g. payment_intent.latest_charge) replaced
        by their objects."""
        if not paths:
            return obj
        if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
            raise StripeError(400, "Invalid array", "expand")
        result = copy.deepcopy(obj)
        for path in paths:
            node: object = result
            for field in path.split("."):
                if not isinstance(node, dict) or field not in node:
                    raise StripeError(400, f"This property cannot be expanded ({path}).", "expand")
                value = node[field]
                if value is None:
                    break  # nothing to expand yet (an open session's payment_intent)
                if isinstance(value, str):
                    target = self._by_id(value)
                    if target is None:
                        raise StripeError(
                            400, f"This property cannot be expanded ({path}).", "expand"
                        )
                    value = node[field] = public(copy.deepcopy(target))
                node = value
        return result

    def _by_id(self, id: str) -> Json | None:
        tables = {
            "cs_": self.sessions,
            "pi_": self.payment_intents,
            "ch_": self.charges,
            "re_": self.refunds,
            "dp_": self.disputes,
        }
        return tables.get(id[:3], {}).get(id)

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
            "metadata": dict(session["_intent_metadata"]),
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
