"""What every payment provider offers the purchase flow, and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from solaris.errors import BadRequest, ServiceUnavailable

__all__ = [
    "Checkout",
    "Event",
    "InvalidEvent",
    "OrderToPay",
    "PaymentState",
    "PaymentStatus",
    "Provider",
    "ProviderUnavailable",
]

PaymentStatus = Literal["pending", "paid", "failed", "expired"]


class InvalidEvent(BadRequest):
    """A webhook whose signature, timestamp or body does not hold: refused, nothing stored."""

    code = "invalid_event"


class ProviderUnavailable(ServiceUnavailable):
    """The provider did not answer, or refused us: the order stays as it was."""

    code = "payment_provider_unavailable"


@dataclass(frozen=True, slots=True)
class OrderToPay:
    """What a provider is told of an order (a copy: it never sees our tables)."""

    public_id: str
    description: str
    amount_cents: int
    currency: str
    email: str | None
    language: str  # "pt-BR" or "en", for the provider's own pages
    success_url: str
    cancel_url: str


@dataclass(frozen=True, slots=True)
class Checkout:
    """A payment started at the provider: where the user pays, and until when."""

    ref: str  # the provider's id of it (a Checkout Session, a Pix payment)
    pay_url: str | None
    expires_at: datetime | None
    pix_code: str | None = None
    pix_qr_png: str | None = None  # base64


@dataclass(frozen=True, slots=True)
class PaymentState:
    """A payment as the provider reports it when asked; amounts in the currency's minor unit."""

    provider: str
    ref: str
    order_public_id: str | None  # ours, as we gave it to the provider
    status: PaymentStatus
    amount_cents: int
    currency: str  # upper case
    refunded_cents: int = 0
    disputed: bool = False
    payment_ref: str | None = None  # what a refund names (Stripe's PaymentIntent)


@dataclass(frozen=True, slots=True)
class Event:
    """A verified webhook: the provider's event id and kind, and which payment it is about."""

    id: str
    kind: str
    ref: str | None  # the payment it is about; None with neither: not one we act on
    payment_ref: str | None = None  # or the charge behind it (Stripe's refunds, disputes)


class Provider(Protocol):
    name: str
    checkout_origin: str | None  # where its `pay_url`s lead (the purchase form redirects there)

    async def start(self, order: OrderToPay, key: str) -> Checkout:
        """Start the payment; `key` makes a retry start the same one (idempotency)."""
        ...

    def verify(self, body: bytes, headers: dict[str, str], query: dict[str, str]) -> Event:
        """The event in a webhook, if it really is the provider's; else `InvalidEvent`."""
        ...

    async def state(self, ref: str) -> PaymentState:
        """The payment's state, fetched from the provider."""
        ...

    async def refund(self, state: PaymentState, amount_cents: int, key: str) -> None:
        """Ask the provider to refund; the ledger changes when its event confirms it."""
        ...

    async def close(self) -> None: ...
