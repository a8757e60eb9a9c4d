"""Mercado Pago's Payments API for Pix, as documented: create, get, search and refund.

`POST /v1/payments` takes JSON (`payment_method_id: "pix"`, `transaction_amount`,
`description`, `payer.email`, `external_reference`, `notification_url`, `date_of_expiration`)
with a Bearer token (any) and answers a pending payment whose
`point_of_interaction.transaction_data` carries the Pix code, its QR image and a ticket page.
The same `X-Idempotency-Key` gets the same payment back. Changes notify as Mercado Pago does:
`payment.created`, then `payment.updated` for every change of state (see webhooks.py).
Errors are Mercado Pago's envelope `{message, error, status, cause: [{code, description}]}`.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from solaris.devpayments import pix
from solaris.devpayments.webhooks import Event, Webhooks
from solaris.devpayments.wire import Json

__all__ = ["OBJECTS_MAX", "MercadoPagoError", "MercadoPagoState", "mp_time"]

OBJECTS_MAX = 50_000
PIX_TTL_DEFAULT = timedelta(hours=24)
_ZONE = timezone(timedelta(hours=-4))  # the offset Mercado Pago writes its dates in
_USER_ID = 1_234_567_890  # the fake seller's account
_AMOUNT_MAX_CENTAVOS = 100_000_000


class MercadoPagoError(Exception):
    def __init__(self, status: int, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.status = status
        error = {400: "bad_request", 401: "unauthorized", 404: "not_found"}.get(status, "error")
        self.body: Json = {
            "message": message,
            "error": error,
            "status": status,
            "cause": [{"code": code, "description": message, "data": None}],
        }


def mp_time(moment: datetime) -> str:
    """2026-12-02T10:00:00.000-04:00, how Mercado Pago writes a moment."""
    return moment.astimezone(_ZONE).isoformat(timespec="milliseconds")


class MercadoPagoState:
    """Payments by id (numbers, as Mercado Pago's), and the notifications they emit."""

    def __init__(self, webhooks: Webhooks) -> None:
        self.webhooks = webhooks
        self.payments: dict[int, Json] = {}
        self.by_key: dict[str, int] = {}  # X-Idempotency-Key -> payment id
        self.refunds_by_key: dict[str, Json] = {}  # X-Idempotency-Key -> refund
        base = 1_300_000_000 + secrets.randbelow(100_000_000)
        self._payment_ids = itertools.count(base)
        self._refund_ids = itertools.count(base + 200_000_000)
        self._notification_ids = itertools.count(12_000_000_000 + secrets.randbelow(10**9))

    def create(self, body: Json, key: str | None, base_url: str) -> tuple[Json, list[Event]]:
        if key is not None and key in self.by_key:
            return self.payments[self.by_key[key]], []
        if len(self.payments) >= OBJECTS_MAX:
            raise MercadoPagoError(400, f"dev-payments keeps at most {OBJECTS_MAX} payments")
        if body.get("payment_method_id") != "pix":
            raise MercadoPagoError(400, "dev-payments fakes payment_method_id pix only", 4033)
        amount = body.get("transaction_amount")
        centavos = _centavos(amount)
        payer = body.get("payer")
        email = payer.get("email") if isinstance(payer, dict) else None
        if not isinstance(email, str) or "@" not in email:
            raise MercadoPagoError(400, "payer.email must be a valid email", 4050)
        now = datetime.now(_ZONE)
        expires = _expiry(body.get("date_of_expiration"), now)
        id = next(self._payment_ids)
        code = pix.br_code(centavos, f"mp{id}")
        payment: Json = {
            "id": id,
            "date_created": mp_time(now),
            "date_approved": None,
            "date_last_updated": mp_time(now),
            "date_of_expiration": mp_time(expires),
            "money_release_date": None,
            "operation_type": "regular_payment",
            "payment_method_id": "pix",
            "payment_type_id": "bank_transfer",
            "status": "pending",
            "status_detail": "pending_waiting_transfer",
            "currency_id": "BRL",
            "description": _optional_text(body, "description", 600),
            "live_mode": False,
            "collector_id": _USER_ID,
            "external_reference": _optional_text(body, "external_reference", 256),
            "notification_url": _optional_text(body, "notification_url", 500),
            "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
            "transaction_amount": amount,
            "transaction_amount_refunded": 0,
            "transaction_details": {
                "net_received_amount": 0,
                "total_paid_amount": amount,
                "overpaid_amount": 0,
                "installment_amount": 0,
            },
            "installments": 1,
            "captured": True,
            "binary_mode": False,
            "payer": {"email": email, "identification": payer.get("identification")},  # type: ignore[union-attr]
            "point_of_interaction": {
                "type": "OPENPLATFORM",
                "transaction_data": {
                    "qr_code": code,
                    "qr_code_base64": pix.qr_png_base64(code),
                    "ticket_url": f"{base_url.rstrip('/')}/mp/payments/{id}/ticket",
                    "transaction_id": None,
                },
            },
            "refunds": [],
            "_centavos": centavos,
            "_refunded_centavos": 0,
        }
        self.payments[id] = payment
        if key is not None:
            self.by_key[key] = id
        return payment, [self._notify(payment, "payment.created")]

    def payment(self, id: int) -> Json:
        payment = self.payments.get(id)
        if payment is None:
            raise MercadoPagoError(404, "Payment not found", 2000)
        return payment

    def search(self, query: dict[str, str]) -> Json:
        found = [
            public(payment)
            for payment in self.payments.values()
            if all(
                str(payment.get(key)) == query[key]
                for key in ("external_reference", "status")
                if key in query
            )
        ]
        if query.get("criteria", "desc") == "desc":
            found.reverse()  # newest first; ids grow with time
        limit = _bounded(query.get("limit"), 30, 1000)
        offset = _bounded(query.get("offset"), 0, 10_000)
        return {
            "paging": {"total": len(found), "limit": limit, "offset": offset},
            "results": found[offset : offset + limit],
        }

    def change(
        self, id: int, status: str, detail: str, amount: Any = None
    ) -> tuple[Json, list[Event]]:
        """The payer paid (approved), the bank refused (rejected) or the code expired
        (cancelled). `amount` makes the approved amount differ, for mismatch tests."""
        payment = self.payment(id)
        if payment["status"] != "pending":
            raise MercadoPagoError(400, f"Payment is {payment['status']}, not pending")
        now = mp_time(datetime.now(_ZONE))
        payment.update(status=status, status_detail=detail, date_last_updated=now)
        if status == "approved":
            paid = payment["transaction_amount"] if amount is None else amount
            payment["_centavos"] = _centavos(paid)
            payment["transaction_amount"] = paid
            payment["date_approved"] = now
            payment["money_release_date"] = now
            payment["transaction_details"].update(net_received_amount=paid, total_paid_amount=paid)
        return payment, [self._notify(payment, "payment.updated")]

    def refund(self, id: int, body: Json, key: str | None = None) -> tuple[Json, list[Event]]:
        """Refund `amount` (all that is left when absent); the same key refunds once."""
        payment = self.payment(id)
        if key is not None and key in self.refunds_by_key:
            return self.refunds_by_key[key], []
        if payment["status"] != "approved":
            raise MercadoPagoError(
                400, f"Payment is {payment['status']}; only approved ones refund", 2063
            )
        remaining = payment["_centavos"] - payment["_refunded_centavos"]
        centavos = remaining if body.get("amount") is None else _centavos(body["amount"])
        if centavos > remaining:
            raise MercadoPagoError(400, "The refund amount is over what is left to refund", 2085)
        refund: Json = {
            "id": next(self._refund_ids),
            "payment_id": id,
            "amount": centavos / 100,
            "metadata": {},
            "source": {"id": str(_USER_ID), "name": "dev-payments", "type": "collector"},
            "date_created": mp_time(datetime.now(_ZONE)),
            "unique_sequence_number": None,
            "refund_mode": "standard",
            "adjustment_amount": 0,
            "status": "approved",
            "reason": None,
            "labels": [],
        }
        payment["refunds"].append(refund)
        if key is not None:
            self.refunds_by_key[key] = refund
        payment["_refunded_centavos"] += centavos
        payment["transaction_amount_refunded"] = payment["_refunded_centavos"] / 100
        full = payment["_refunded_centavos"] == payment["_centavos"]
        payment.update(
            status="refunded" if full else "approved",
            status_detail="refunded" if full else "partially_refunded",
            date_last_updated=refund["date_created"],
        )
        return refund, [self._notify(payment, "payment.updated")]

    def _notify(self, payment: Json, action: str) -> Event:
        id = next(self._notification_ids)
        body = {
            "id": id,
            "live_mode": False,
            "type": "payment",
            "date_created": mp_time(datetime.now(_ZONE)),
            "user_id": _USER_ID,
            "api_version": "v1",
            "action": action,
            "data": {"id": str(payment["id"])},
        }
        return self.webhooks.new_event(
            "mercadopago",
            str(id),
            action,
            str(payment["id"]),
            orjson.dumps(body),
            payment["notification_url"],
        )


def public(payment: Json) -> Json:
    return {key: value for key, value in payment.items() if not key.startswith("_")}


def _centavos(amount: object) -> int:
    if not isinstance(amount, int | float) or isinstance(amount, bool):
        raise MercadoPagoError(400, "transaction_amount must be a number", 4037)
    centavos = round(amount * 100)
    if abs(centavos - amount * 100) > 1e-6 or not 0 < centavos <= _AMOUNT_MAX_CENTAVOS:
        raise MercadoPagoError(400, "Invalid transaction_amount", 4037)
    return centavos


def _expiry(given: object, now: datetime) -> datetime:
    if given is None:
        return now + PIX_TTL_DEFAULT
    try:
        moment = datetime.fromisoformat(given) if isinstance(given, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise MercadoPagoError(
            400, "date_of_expiration must be an ISO 8601 date with an offset", 4038
        )
    if not now + timedelta(minutes=30) <= moment <= now + timedelta(days=30):
        raise MercadoPagoError(400, "date_of_expiration must be 30 minutes to 30 days away", 4038)
    return moment


def _optional_text(body: Json, key: str, length_max: int) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > length_max):
        raise MercadoPagoError(400, f"{key} must be a string of at most {length_max} characters")
    return value


def _bounded(given: str | None, default: int, maximum: int) -> int:
    if given is None or not given.isdigit():
        return default
    return min(int(given), maximum)
