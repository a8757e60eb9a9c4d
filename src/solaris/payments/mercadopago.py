"""Pix through Mercado Pago's Payments API (plain HTTP on the process's aiohttp).

One Pix payment per order, created with our own stable `X-Idempotency-Key` (a retried start is
the same payment) and `external_reference` = our order id; the user pays with the QR code or
the copy-paste code the portal shows. A notification is verified as Mercado Pago documents:
`x-signature: ts=…,v1=…`, HMAC-SHA256 over the manifest `id:<data.id>;request-id:<x-request-id>;
ts:<ts>;` with the endpoint's secret, and a timestamp within the tolerance (Mercado Pago has
sent it in seconds and in milliseconds: both are read). Then the payment is fetched and only its
fetched status is acted on.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from solaris.payments.base import (
    Checkout,
    Event,
    InvalidEvent,
    OrderToPay,
    PaymentState,
    PaymentStatus,
    ProviderUnavailable,
)

__all__ = ["MercadoPagoPix"]

API_BASE = "https://api.mercadopago.com"
SIGNATURE_TOLERANCE_S = 300
PIX_TTL = timedelta(hours=1)  # Mercado Pago takes 30 minutes to 30 days
TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
STATUSES: dict[str, PaymentStatus] = {
    "approved": "paid",
    "authorized": "pending",
    "pending": "pending",
    "in_process": "pending",
    "in_mediation": "paid",
    "rejected": "failed",
    "cancelled": "expired",  # what an unpaid Pix becomes at its date_of_expiration
    "refunded": "paid",
    "charged_back": "paid",
}


class MercadoPagoPix:
    name = "mercadopago"
    checkout_origin: str | None = None  # the portal shows the Pix code itself: nowhere to be sent

    def __init__(
        self, access_token: str, webhook_secret: str, notification_url: str, api_base: str | None
    ) -> None:
        self._base = (api_base or API_BASE).rstrip("/")
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._secret = webhook_secret.encode()
        self._notification_url = notification_url
        self._session: aiohttp.ClientSession | None = None

    async def start(self, order: OrderToPay, key: str) -> Checkout:
        expires = datetime.now(UTC) + PIX_TTL
        body = {
            "payment_method_id": "pix",
            "transaction_amount": float(Decimal(order.amount_cents).scaleb(-2)),
            "description": order.description,
            "external_reference": order.public_id,
            "notification_url": self._notification_url,
            "date_of_expiration": expires.isoformat(timespec="milliseconds"),
            # Mercado Pago wants a payer's e-mail; a user LibreChat sent none of gets the order's.
            "payer": {"email": order.email or f"{order.public_id}@pix.invalid"},
        }
        payment = await self._call("POST", "/v1/payments", body, {"X-Idempotency-Key": key})
        data = (payment.get("point_of_interaction") or {}).get("transaction_data") or {}
        return Checkout(
            ref=str(payment["id"]),
            pay_url=None,
            expires_at=_moment(payment.get("date_of_expiration")) or expires,
            pix_code=data.get("qr_code"),
            pix_qr_png=data.get("qr_code_base64"),
        )

    def verify(self, body: bytes, headers: dict[str, str], query: dict[str, str]) -> Event:
        data_id = query.get("data.id") or ""
        request_id = headers.get("x-request-id", "")
        parts = dict(
            part.strip().split("=", 1)
            for part in headers.get("x-signature", "").split(",")
            if "=" in part
        )
        ts, given = parts.get("ts", ""), parts.get("v1", "")
        if not (data_id and ts.isdigit() and given):
            raise InvalidEvent("Not a signed Mercado Pago notification.")
        manifest = f"id:{data_id.lower()};request-id:{request_id};ts:{ts};".encode()
        wanted = hmac.new(self._secret, manifest, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(wanted, given):
            raise InvalidEvent("The notification's signature does not match.")
        sent_s = int(ts) / 1000 if len(ts) > 11 else int(ts)  # milliseconds or seconds
        if abs(time.time() - sent_s) > SIGNATURE_TOLERANCE_S:
            raise InvalidEvent("The notification is too old.")
        kind = query.get("type") or "payment"
        ref = data_id if kind == "payment" else None
        return Event(_notification_id(body) or f"{data_id}:{request_id or ts}", kind, ref=ref)

    async def state(self, ref: str) -> PaymentState:
        if not ref.isdigit():
            raise InvalidEvent(f"Mercado Pago knows no payment {ref!r}.")
        payment = await self._call("GET", f"/v1/payments/{ref}")
        status = str(payment.get("status"))
        return PaymentState(
            provider=self.name,
            ref=str(payment["id"]),
            order_public_id=payment.get("external_reference"),
            status=STATUSES.get(status, "pending"),
            amount_cents=_cents(payment.get("transaction_amount")),
            currency=str(payment.get("currency_id") or "").upper(),
            refunded_cents=_cents(payment.get("transaction_amount_refunded")),
            disputed=status in ("charged_back", "in_mediation"),
            payment_ref=str(payment["id"]),
        )

    async def refund(self, state: PaymentState, amount_cents: int, key: str) -> None:
        body = {"amount": float(Decimal(amount_cents).scaleb(-2))}
        path = f"/v1/payments/{state.ref}/refunds"
        await self._call("POST", path, body, {"X-Idempotency-Key": key})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        try:
            async with self._session.request(
                method, self._base + path, json=body, headers={**self._headers, **(headers or {})}
            ) as response:
                answer = await response.json(content_type=None)
                if response.status == 404:
                    raise InvalidEvent(f"Mercado Pago knows no {path}.")
                if response.status >= 400 or not isinstance(answer, dict):
                    raise ProviderUnavailable(f"Mercado Pago answered {response.status}: {answer}")
                return answer
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            raise ProviderUnavailable(f"Mercado Pago did not answer: {error}") from None


def _cents(amount: object) -> int:
    """A decimal amount as Mercado Pago writes it (12.5) in centavos, exactly."""
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        return 0
    return int((Decimal(str(amount)) * 100).to_integral_value())


def _notification_id(body: bytes) -> str | None:
    """The notification's own id, when its body carries one (the body is not signed: it only
    names the event for the record, never what is done)."""
    try:
        value = orjson.loads(body).get("id") if body else None
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return str(value) if isinstance(value, int | str) and value != "" else None


def _moment(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC) if value else None
    except ValueError:
        return None
