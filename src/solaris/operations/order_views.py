"""What the operator's order reads return (`solaris.operations.orders`): pydantic models the
admin API answers with as they are, the dashboard renders and the CLI prints. Money is an
integer in the currency's minor unit (centavos), always beside its currency."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from solaris.store.audit import AuditEntry

__all__ = [
    "OrderDetail",
    "OrderLine",
    "PaymentEventView",
    "RefundRequested",
    "RevenueRow",
]


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class OrderLine(_View):
    public_id: str
    user_id: int
    user: str  # LibreChat's user id
    email: str | None
    pack_name: str
    tokens: int
    amount_cents: int
    currency: str
    provider: str
    status: str
    refunded_cents: int
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None


class PaymentEventView(_View):
    """A provider's event taken in about the order (by the provider's own id)."""

    event_id: str
    kind: str
    received_at: datetime


class OrderDetail(OrderLine):
    provider_ref: str | None  # Stripe's Checkout Session, Mercado Pago's payment
    provider_payment: str | None  # what a refund names (Stripe's PaymentIntent)
    language: str | None
    expires_at: datetime | None
    refundable_cents: int = Field(description="What a refund may still ask for (0 unless paid).")
    events: list[PaymentEventView]
    audit: list[AuditEntry]  # every change of the order and every refund asked, newest first


class RevenueRow(_View):
    """Orders paid in a day (UTC, `YYYY-MM-DD`) or of a pack, in one currency."""

    key: str
    currency: str
    orders: int
    paid_cents: int
    refunded_cents: int
    disputed_cents: int  # what disputes took back, beyond the refunds
    net_cents: int


class RefundRequested(_View):
    """A refund the provider accepted; the ledger changes when the provider confirms it."""

    order: str
    amount_cents: int
    currency: str
    status: Literal["requested"] = "requested"
