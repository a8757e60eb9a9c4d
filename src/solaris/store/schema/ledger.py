"""Money and usage: users, their accounts, lots, reservations, ledger entries, usage rows and
refusals."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from solaris.store.columns import Id, Timestamp
from solaris.store.schema.meta import metadata

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

# `usage` summed by quarter hour (UTC) and model, for the reports and charts that read weeks of
# every user (solaris.reports.rollup): the rows up to `usage_rollup_mark.usage_id` are in it,
# later ones are read from `usage`. Every zone's offset is whole quarter hours, so a bucket lies
# in one local day anywhere, and a local day is a sum of buckets.
ROLLUP_SUMS = (
    "requests", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
    "billable", "estimated",
)  # fmt: skip
usage_rollup = Table(
    "usage_rollup",
    metadata,
    Column("bucket", Timestamp, primary_key=True),
    Column("model", String(128), primary_key=True),
    *(Column(name, BigInteger, nullable=False) for name in ROLLUP_SUMS),
)
# One row: how far the rollup has read `usage` (`usage_id`), and the newest id seen committed at
# `seen_at`, the next to be read once no transaction older than it can still commit.
usage_rollup_mark = Table(
    "usage_rollup_mark",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("usage_id", Id, nullable=False),
    Column("seen_id", Id, nullable=False),
    Column("seen_at", Timestamp, nullable=False),
    CheckConstraint("id = 1", name="one_row"),
    CheckConstraint("usage_id <= seen_id", name="read_what_was_seen"),
)

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
