"""What the operator's side keeps: API keys, spent links, the alert outbox, the deployment's id,
admins, sessions and the audit log."""

from __future__ import annotations

from sqlalchemy import (
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

used_links = Table(
    "used_links",
    metadata,
    Column("jti", String(64), primary_key=True),  # a signed link's id, spent once
    Column("used_at", Timestamp, nullable=False),
)

# Alerts waiting for, or done with, delivery (solaris.alerts), written in the settle's transaction;
# the unique dedupe_key makes "once per user, threshold and period" hold across processes.
ALERT_STATES = ("pending", "sent", "failed")

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
