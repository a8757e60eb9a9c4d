"""The tables, in SQLAlchemy Core. Migrations (store/migrations) create exactly these.

Token amounts are integers ("billable tokens"). `ledger_entries` and `usage` are append-only:
triggers refuse UPDATE and DELETE on them, so a balance is always explainable by its entries.
`accounts.balance` is the running sum of a user's entries, kept in the same transaction as each
entry; `accounts.reserved` is the sum of the user's pending reservations.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from solaris.store.columns import Id, Timestamp

__all__ = [
    "ALERT_STATES", "ORDER_STATES", "PAYMENT_PROVIDERS", "RESERVATION_STATES", "accounts",
    "admin_api_keys", "admins", "alert_outbox", "api_keys", "audit_log", "deployment",
    "ledger_entries", "lots", "metadata", "orders", "payment_events", "plan_changes", "plans",
    "refusals", "reservations", "subscriptions", "usage", "used_links", "users", "web_sessions",
]  # fmt: skip

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

RESERVATION_STATES = ("pending", "settled", "released", "expired")
ENTRY_KINDS = ("allowance", "grant", "purchase", "usage", "refund", "adjustment", "expiry")

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("external_id", String(255), nullable=False, unique=True),  # LibreChat's user id
    Column("email", String(320)),
    Column("created_at", Timestamp, nullable=False),
    # Set by an admin (solaris.admin): the user's requests get 403 `user_blocked` meanwhile.
    Column("blocked_at", Timestamp),
    Column("blocked_reason", Text),
    Column("own_cap_tokens", BigInteger),  # a cap the user set themselves (NULL: none)…
    Column("own_cap_period", String(8)),  # …per local "day" or calendar "month"
)

accounts = Table(
    "accounts",
    metadata,
    Column("user_id", Id, ForeignKey("users.id"), primary_key=True),
    Column("balance", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False, default=0),
    Column("period_start", Timestamp),  # the allowance period last granted
    Column("next_expiry", Timestamp),  # soonest expiry among lots with tokens left
    # This period's consumption and what the period offers (balance at its start plus credits
    # since): the settle that moves `period_used` across a threshold of `period_offered` raises
    # the alert, inside its own transaction.
    Column("period_used", BigInteger, nullable=False, default=0, server_default="0"),
    Column("period_offered", BigInteger, nullable=False, default=0, server_default="0"),
    CheckConstraint("reserved >= 0", name="reserved_not_negative"),
)

# What the balance is made of: each credit is a lot, spent allowance first, then the credits
# that expire soonest. sum(remaining) == max(balance, 0); a negative balance (an overdraft from
# an estimate that fell short) is paid by the next credit.
lots = Table(
    "lots",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("expires_at", Timestamp),
    Column("entry_key", String(128), nullable=False, unique=True),  # the entry that made it
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_within_amount"),
    Index("ix_lots_user_id_remaining", "user_id", "remaining"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(64), primary_key=True),  # the request id
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("resolved_at", Timestamp),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("state IN ('pending', 'settled', 'released', 'expired')", name="state_known"),
    Index("ix_reservations_user_id_state", "user_id", "state"),
)

ENTRIES_BY_USER = "ix_ledger_entries_user_id_created_at"
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed: credits > 0, usage < 0
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("request_id", String(64)),
    Column("note", Text),
    Column("created_by", String(128), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    CheckConstraint(
        "kind IN ('allowance', 'grant', 'purchase', 'usage', 'refund', 'adjustment', 'expiry')",
        name="kind_known",
    ),
    CheckConstraint("amount <> 0", name="amount_not_zero"),
    # `amount` rides along (PostgreSQL): the sum before a statement's period is index-only.
    Index(ENTRIES_BY_USER, "user_id", "created_at", postgresql_include=["amount"]),
)

usage = Table(
    "usage",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(128), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("billable", BigInteger, nullable=False),
    Column("estimated", Boolean, nullable=False),
    Column("status", String(24), nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("conversation_id", String(128)),
    Column("created_at", Timestamp, nullable=False),
    # What the row was billed with, so a statement line can be recomputed: cache writes (of
    # `prompt_tokens`), the weights (JSON of decimal strings; NULL on rows from before), the
    # hosted tool calls (JSON {tool: {calls, price}}) and what they cost, of `billable`.
    Column("cache_write_tokens", Integer, nullable=False, server_default="0"),
    Column("weights", Text),
    Column("tool_calls", Text),
    Column("tool_billable", BigInteger, nullable=False, server_default="0"),
    CheckConstraint(
        "prompt_tokens >= 0 AND completion_tokens >= 0 AND cached_tokens >= 0 "
        "AND reasoning_tokens >= 0 AND billable >= 0",
        name="tokens_not_negative",
    ),
    Index("ix_usage_user_id_created_at", "user_id", "created_at"),
    Index("ix_usage_created_at", "created_at"),  # reads by time alone: overview, reports
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex of a random key
    Column("prefix", String(16), nullable=False),  # shown to operators to tell keys apart
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
)

plans = Table(
    "plans",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("allowance_tokens", BigInteger, nullable=False),
    Column("period", String(16), nullable=False),
    Column("anchor", String(16), nullable=False),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("models", Text, nullable=False),  # JSON list of fnmatch patterns
    Column("weights", Text, nullable=False),  # JSON {model: {input_weight, output_weight}}
    Column("rollover", Boolean, nullable=False),
    Column("rollover_max_tokens", BigInteger),  # at most one of the two caps is set…
    Column("rollover_max_percent", Integer),  # …(a % of the allowance); none: all rolls over
    Column("windows", Text),  # JSON [{tokens, every | hours}]; NULL: none
    Column("model_caps", Text),  # JSON {pattern: tokens per period}; NULL: none
    Column("is_default", Boolean, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    CheckConstraint("allowance_tokens >= 0", name="allowance_not_negative"),
    CheckConstraint("period IN ('monthly', 'weekly', 'daily')", name="period_known"),
    CheckConstraint("anchor IN ('subscription', 'calendar')", name="anchor_known"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("user_id", Id, ForeignKey("users.id"), primary_key=True),  # one active plan each
    Column("plan_name", String(64), ForeignKey("plans.name"), nullable=False),
    Column("anchored_at", Timestamp, nullable=False),  # periods count from here
    Column("changed_at", Timestamp, nullable=False),
)

plan_changes = Table(
    "plan_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("from_plan", String(64)),
    Column("to_plan", String(64), nullable=False),
    Column("changed_at", Timestamp, nullable=False),
    Column("changed_by", String(128), nullable=False),
)

used_links = Table(
    "used_links",
    metadata,
    Column("jti", String(64), primary_key=True),  # a signed link's id, spent once
    Column("used_at", Timestamp, nullable=False),
)

# Alerts waiting for, or done with, delivery (solaris.alerts), written in the settle's transaction;
# the unique dedupe_key makes "once per user, threshold and period" hold across processes.
ALERT_STATES = ("pending", "sent", "failed")

# Requests refused for want of balance or by a cap, for the statement: what the user was told.
# At most one a reason a minute per user (`dedupe_key`), however often they press Send.
refusals = Table(
    "refusals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id"), nullable=False),
    Column("reason", String(32), nullable=False),  # insufficient_balance, cap_day, cap_model, …
    Column("model", String(128), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("dedupe_key", String(96), nullable=False, unique=True),
    Index("ix_refusals_user_id_created_at", "user_id", "created_at"),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("dedupe_key", String(255), nullable=False, unique=True),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("last_error", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("sent_at", Timestamp),
    CheckConstraint("state IN ('pending', 'sent', 'failed')", name="state_known"),
    CheckConstraint("channel IN ('email', 'webhook')", name="channel_known"),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    Index("ix_alert_outbox_state_next_attempt_at", "state", "next_attempt_at"),
)

# One row: this deployment's id, made at migration. Keys that several deployments could share
# (Redis) carry it, so two databases behind one Redis never mix their users.
deployment = Table(
    "deployment",
    metadata,
    Column("id", String(32), primary_key=True),
)

# Admin accounts (solaris.admin): argon2 password hashes; API keys for automation, stored as the
# sha256 of a random key shown once.
admins = Table(
    "admins",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("disabled_at", Timestamp),
)

admin_api_keys = Table(
    "admin_api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("admin_id", Id, ForeignKey("admins.id"), nullable=False),
    Column("name", String(120), nullable=False),
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
    Column("last_used_at", Timestamp),
)

# Browser sessions of admins (dashboard, API refresh cookie) and portal users: only the sha256
# of the cookie's token is stored.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("subject_id", Id, nullable=False),  # admins.id or users.id, by kind
    Column("csrf", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
    CheckConstraint("kind IN ('admin', 'user')", name="kind_known"),
    Index("ix_web_sessions_expires_at", "expires_at"),
)

# Every change an admin makes: who, what, when, before and after (JSON). Append-only: triggers
# refuse UPDATE and DELETE.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("actor", String(128), nullable=False),  # "admin:3", "apikey:7", "cli"
    Column("action", String(64), nullable=False),
    Column("target_type", String(32), nullable=False),
    Column("target_id", String(255)),
    Column("before", Text),  # JSON
    Column("after", Text),  # JSON
    Index("ix_audit_log_at", "at"),
)

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
