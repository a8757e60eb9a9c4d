"""Credit lots, allowance periods, and the PostgreSQL settle that spends lots in order.

Existing balances become one lot each, and their current period counts as already granted, so
nobody gets a second allowance from the upgrade.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 01:49:14.534782
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Same steps as solaris.ledger.ledger.Ledger.settle; lots are spent as solaris.ledger.lots.spend.
SETTLE = """
CREATE FUNCTION solaris_settle(
    p_request text, p_user bigint, p_endpoint text, p_model text,
    p_prompt integer, p_completion integer, p_cached integer, p_reasoning integer,
    p_billable bigint, p_estimated boolean, p_status text, p_latency integer,
    p_conversation text, p_now timestamptz
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_held bigint;
    v_left bigint := p_billable;
    v_take bigint;
    v_lot record;
BEGIN
    INSERT INTO usage (
        request_id, user_id, endpoint, model, prompt_tokens, completion_tokens, cached_tokens,
        reasoning_tokens, billable, estimated, status, latency_ms, conversation_id, created_at
    ) VALUES (
        p_request, p_user, p_endpoint, p_model, p_prompt, p_completion, p_cached,
        p_reasoning, p_billable, p_estimated, p_status, p_latency, p_conversation, p_now
    ) ON CONFLICT (request_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;  -- already settled: idempotent by request id
    END IF;
    -- The account row first, as every other writer does, so lock orders never cross.
    PERFORM 1 FROM accounts WHERE user_id = p_user FOR UPDATE;
    UPDATE reservations SET state = 'settled', resolved_at = p_now
    WHERE id = p_request AND state = 'pending'
    RETURNING amount INTO v_held;
    IF p_billable > 0 THEN
        INSERT INTO ledger_entries (
            user_id, kind, amount, idempotency_key, request_id, created_by, created_at
        ) VALUES (
            p_user, 'usage', -p_billable, 'usage:' || p_request, p_request, 'gateway', p_now
        );
        FOR v_lot IN
            SELECT id, remaining FROM lots WHERE user_id = p_user AND remaining > 0
            ORDER BY (kind <> 'allowance'), expires_at NULLS LAST, id
            FOR UPDATE
        LOOP
            v_take := least(v_lot.remaining, v_left);
            UPDATE lots SET remaining = remaining - v_take WHERE id = v_lot.id;
            v_left := v_left - v_take;
            EXIT WHEN v_left = 0;
        END LOOP;
    END IF;
    UPDATE accounts
    SET balance = balance - p_billable, reserved = reserved - coalesce(v_held, 0)
    WHERE user_id = p_user;
    RETURN true;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "lots",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entry_key", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= amount", name=op.f("ck_lots_remaining_within_amount")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_lots_user_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lots")),
        sa.UniqueConstraint("entry_key", name=op.f("uq_lots_entry_key")),
    )
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.create_index("ix_lots_user_id_remaining", ["user_id", "remaining"], unique=False)

    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("period_start", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("next_expiry", sa.DateTime(timezone=True), nullable=True))

    op.execute(
        "INSERT INTO lots (user_id, kind, amount, remaining, entry_key, created_at)"
        " SELECT user_id, 'grant', balance, balance, 'migrated:' || user_id, CURRENT_TIMESTAMP"
        " FROM accounts WHERE balance > 0"
    )
    op.execute("UPDATE accounts SET period_start = CURRENT_TIMESTAMP")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION solaris_settle")
        op.execute(SETTLE)


def _previous_settle() -> str:
    """Migration 0002's settle (without lots), loaded from its file rather than copied."""
    path = Path(__file__).with_name("0002_postgres_ledger_functions.py")
    spec = importlib.util.spec_from_file_location("solaris_migration_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.SETTLE)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION solaris_settle")
        op.execute(_previous_settle())
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("next_expiry")
        batch_op.drop_column("period_start")

    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.drop_index("ix_lots_user_id_remaining")

    op.drop_table("lots")
