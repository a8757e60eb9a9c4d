"""Plans, who is on which, and every change of plan."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
)

from solaris.store.columns import Id, Timestamp
from solaris.store.schema.meta import metadata

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
