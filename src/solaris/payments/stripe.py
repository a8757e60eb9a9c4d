"""Cards through Stripe Checkout, with the official SDK (its aiohttp client: no second HTTP
stack in the process).

One Checkout Session per order: the price inline, our order id in `client_reference_id` and in
the metadata of the session and of its PaymentIntent, the user's language, an idempotency key
per order (a retried start is the same session). A webhook is only a hint: its signature is
checked over the raw body (`Stripe-Signature`, five minutes' tolerance), then the session is
fetched back and only what Stripe says of it *now* is acted on, so a late, repeated or
reordered event changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import stripe as sdk

from solaris.payments.base import (
    Checkout,
    Event,
    InvalidEvent,
    OrderToPay,
    PaymentState,
    PaymentStatus,
    ProviderUnavailable,
)

__all__ = ["StripeCheckout"]

SIGNATURE_TOLERANCE_S = 300
CHECKOUT_ORIGIN = "https://checkout.stripe.com"  # Stripe's hosted page (a fake serves its own)
# Events about a Checkout Session, and about the charge behind one (refunds, disputes).
SESSION_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)
CHARGE_EVENTS = frozenset(
    {"charge.refunded", "charge.dispute.created", "charge.dispute.closed", "charge.refund.updated"}
)
FAILED_INTENTS = frozenset({"canceled", "requires_payment_method"})


class StripeCheckout:
    name = "stripe"

    def __init__(self, api_key: str, webhook_secret: str, api_base: str | None = None) -> None:
        addresses: Any = {"api": api_base} if api_base else {}
        self.checkout_origin: str | None = _origin(api_base) if api_base else CHECKOUT_ORIGIN
        self._http = sdk.AIOHTTPClient()
        self._client = sdk.StripeClient(
            api_key, base_addresses=addresses, http_client=self._http, max_network_retries=2
        )
        self._secret = webhook_secret

    async def start(self, order: OrderToPay, key: str) -> Checkout:
        params: Any = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": order.currency.lower(),
                        "unit_amount": order.amount_cents,
                        "product_data": {"name": order.description},
                    },
                    "quantity": 1,
                }
            ],
            "client_reference_id": order.public_id,
            "metadata": {"order": order.public_id},
            "payment_intent_data": {"metadata": {"order": order.public_id}},
            "success_url": order.success_url,
            "cancel_url": order.cancel_url,
            "locale": "pt-BR" if order.language == "pt-BR" else "en",
        }
        if order.email:
            params["customer_email"] = order.email
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params=params, options={"idempotency_key": key}
            )
        except sdk.StripeError as error:
            raise ProviderUnavailable(f"Stripe refused the checkout: {error}") from None
        expires = _field(session, "expires_at")
        return Checkout(
            ref=session.id,
            pay_url=_field(session, "url"),
            expires_at=datetime.fromtimestamp(expires, UTC) if expires else None,
        )

    def verify(self, body: bytes, headers: dict[str, str], query: dict[str, str]) -> Event:
        signature = headers.get("stripe-signature")
        try:
            event = sdk.Webhook.construct_event(
                body, signature, self._secret, tolerance=SIGNATURE_TOLERANCE_S
            )
        except (sdk.SignatureVerificationError, ValueError) as error:
            raise InvalidEvent(f"Not a Stripe event for this endpoint: {error}") from None
        item = event.data.object
        if event.type in SESSION_EVENTS:
            return Event(event.id, event.type, ref=_field(item, "id"))
        if event.type in CHARGE_EVENTS:
            intent = _field(item, "payment_intent")
            return Event(event.id, event.type, ref=None, payment_ref=_id(intent))
        return Event(event.id, event.type, ref=None)

    async def state(self, ref: str) -> PaymentState:
        try:
            session = await self._client.v1.checkout.sessions.retrieve_async(
                ref, params={"expand": ["payment_intent.latest_charge"]}
            )
        except sdk.InvalidRequestError:
            raise InvalidEvent(f"Stripe knows no Checkout Session {ref!r}.") from None
        except sdk.StripeError as error:
            raise ProviderUnavailable(f"Stripe did not answer: {error}") from None
        intent = _field(session, "payment_intent")
        charge = _field(intent, "latest_charge")
        return PaymentState(
            provider=self.name,
            ref=session.id,
            order_public_id=_field(session, "client_reference_id"),
            status=_status(session, intent),
            amount_cents=int(_field(session, "amount_total") or 0),
            currency=str(_field(session, "currency") or "").upper(),
            refunded_cents=int(_field(charge, "amount_refunded") or 0),
            disputed=bool(_field(charge, "disputed")),
            payment_ref=_id(intent),
        )

    async def refund(self, state: PaymentState, amount_cents: int, key: str) -> None:
        assert state.payment_ref is not None, "only a paid session can be refunded"
        try:
            await self._client.v1.refunds.create_async(
                params={"payment_intent": state.payment_ref, "amount": amount_cents},
                options={"idempotency_key": key},
            )
        except sdk.StripeError as error:
            raise ProviderUnavailable(f"Stripe refused the refund: {error}") from None

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _field(item: Any, name: str) -> Any:
    """A field of a Stripe object (or of an id that was not expanded: None)."""
    return getattr(item, name, None) if isinstance(item, sdk.StripeObject) else None


def _id(item: Any) -> str | None:
    """An object's id, expanded or not."""
    return item if isinstance(item, str) else _field(item, "id")


def _status(session: Any, intent: Any) -> PaymentStatus:
    if _field(session, "payment_status") == "paid":
        return "paid"
    if _field(session, "status") == "expired":
        return "expired"
    if _field(intent, "status") in FAILED_INTENTS and _field(session, "status") == "complete":
        return "failed"
    return "pending"
