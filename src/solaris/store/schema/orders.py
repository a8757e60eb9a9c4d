"""Credit purchases and the payment providers' events."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from solaris.store.columns import Id, Timestamp
from solaris.store.schema.meta import metadata

# Credit purchases (solaris.payments, solaris.operations.purchases). An order copies the pack it
# sold (name, tokens, price), so editing a pack changes no order. `status` follows what the
# provider reports, converged in one transaction under the order's row lock; its purchase entry
# in the ledger has the idempotency key `order:<public_id>`, so it credits once whatever arrives
# twice. `refunded_cents` only grows; each growth takes back the same share of the tokens.
ORDER_STATES = ("open", "pending", "paid", "failed", "expired", "refunded", "disputed")
PAYMENT_PROVIDERS = ("stripe", "mercadopago")

orders = Table(
    "orders",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("public_id", String(40), nullable=False, unique=True),  # in URLs and at the provider
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("pack_name", String(80), nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("credit_days", Integer),  # the credits expire this long after payment, if set
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("provider_ref", String(255)),  # Stripe's Checkout Session id, Mercado Pago's payment id
    Column("provider_payment", String(255)),  # Stripe's PaymentIntent id (refunds name it)
    Column("status", String(16), nullable=False),
    Column("refunded_cents", BigInteger, nullable=False),
    Column("pay_url", Text),  # the provider's hosted checkout page
    Column("pix_code", Text),  # Pix copia e cola
    Column("pix_qr_png", Text),  # base64, as Mercado Pago gives it
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("paid_at", Timestamp),
    Column("expires_at", Timestamp),  # when the provider stops taking this payment
    Column("language", String(8)),  # the buyer's ("pt-BR", "en"): the receipt's language
    CheckConstraint(
        "status IN ('open', 'pending', 'paid', 'failed', 'expired', 'refunded', 'disputed')",
        name="status_known",
    ),
    CheckConstraint("provider IN ('stripe', 'mercadopago')", name="provider_known"),
    CheckConstraint("tokens > 0 AND amount_cents > 0", name="amounts_positive"),
    CheckConstraint(
        "refunded_cents >= 0 AND refunded_cents <= amount_cents", name="refund_within_amount"
    ),
    UniqueConstraint("provider", "provider_ref", name="uq_orders_provider_ref"),
    Index("ix_orders_user_id_created_at", "user_id", "created_at"),
    Index("ix_orders_status_updated_at", "status", "updated_at"),
)

# Every provider event taken in, by the provider's own id: a second delivery of one event is
# recognised here and changes nothing.
payment_events = Table(
    "payment_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("provider", String(16), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("order_id", Id, ForeignKey("orders.id")),
    Column("received_at", Timestamp, nullable=False),
    UniqueConstraint("provider", "event_id", name="uq_payment_events_provider_event_id"),
)
