"""Caps beside the balance: a plan's usage windows (per local day or week, per rolling hours)
and per-model caps, and a cap a user sets themselves. `solaris_reserve` checks them in the
transaction that holds the balance (`ledger/caps.py`) and says which one refused;
`solaris_batch` passes them and answers with it.

Revision ID: 0015
Revises: 0014
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESERVE = r"""CREATE FUNCTION solaris_reserve(
    p_user bigint, p_request text, p_wanted bigint, p_minimum bigint,
    p_now timestamptz, p_expires timestamptz, p_caps jsonb,
    OUT o_amount bigint, OUT o_balance bigint, OUT o_refused integer
) LANGUAGE plpgsql AS $$
DECLARE
    v_reserved bigint;
    v_freed bigint;
    v_room bigint;
    v_cap jsonb;
    v_index integer;
BEGIN
    -- A hold need not survive a database crash (it would only free tokens), so its commit
    -- does not wait for the disk; the settlement, which moves money, does.
    SET LOCAL synchronous_commit = off;
    SELECT balance, reserved INTO o_balance, v_reserved
    FROM accounts WHERE user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no account for user %', p_user;
    END IF;
    IF v_reserved > 0 AND (o_balance - v_reserved < p_wanted OR jsonb_array_length(p_caps) > 0)
    THEN
        -- Holds of crashed processes stop counting once they expire: swept whenever they
        -- would make this request hold less than it wants, or count against a cap.
        WITH expired AS (
            UPDATE reservations SET state = 'expired', resolved_at = p_now
            WHERE user_id = p_user AND state = 'pending' AND expires_at <= p_now
            RETURNING amount
        )
        SELECT coalesce(sum(amount), 0) INTO v_freed FROM expired;
        IF v_freed > 0 THEN
            UPDATE accounts SET reserved = reserved - v_freed WHERE user_id = p_user;
            v_reserved := v_reserved - v_freed;
        END IF;
    END IF;
    IF o_balance - v_reserved < p_minimum THEN
        o_amount := 0;
        RETURN;
    END IF;
    o_amount := least(p_wanted, o_balance - v_reserved);
    -- Each cap: what the user spent since its window began (of its models), and every open
    -- hold, leave this much room (caps.py).
    FOR v_cap, v_index IN
        SELECT value, ordinality::integer - 1 FROM jsonb_array_elements(p_caps) WITH ORDINALITY
    LOOP
        SELECT (v_cap->>'tokens')::bigint - coalesce(sum(u.billable), 0) - v_reserved
        INTO v_room
        FROM usage u
        WHERE u.user_id = p_user AND u.created_at >= (v_cap->>'since')::timestamptz
            AND (v_cap->>'like' IS NULL OR u.model LIKE v_cap->>'like' ESCAPE '\');
        IF v_room < p_minimum THEN
            o_amount := 0;
            o_refused := v_index;
            RETURN;
        END IF;
        o_amount := least(o_amount, v_room);
    END LOOP;
    UPDATE accounts SET reserved = reserved + o_amount WHERE user_id = p_user;
    INSERT INTO reservations (id, user_id, amount, state, created_at, expires_at)
    VALUES (p_request, p_user, o_amount, 'pending', p_now, p_expires);
END $$
"""

BATCH = """CREATE FUNCTION solaris_batch(p_calls jsonb, p_thresholds integer[], p_channels text[])
RETURNS TABLE (
    b_index integer, b_amount bigint, b_balance bigint, b_crossed integer[], b_refused integer
)
LANGUAGE plpgsql AS $$
DECLARE
    v_call jsonb;
    v_moves_money boolean := false;
BEGIN
    -- Group commit: the reserves, settles and releases that arrived together, in one
    -- transaction. Account rows are locked in user order, whichever batch comes first, so lock
    -- orders never cross; one user's calls keep the order they arrived in.
    FOR v_call, b_index IN
        SELECT value, ordinality::integer FROM jsonb_array_elements(p_calls) WITH ORDINALITY
        ORDER BY (value->>'user')::bigint, ordinality
    LOOP
        b_amount := NULL;
        b_balance := NULL;
        b_crossed := NULL;
        b_refused := NULL;
        CASE v_call->>'call'
        WHEN 'reserve' THEN
            SELECT r.o_amount, r.o_balance, r.o_refused INTO b_amount, b_balance, b_refused
            FROM solaris_reserve(
                (v_call->>'user')::bigint, v_call->>'request', (v_call->>'wanted')::bigint,
                (v_call->>'minimum')::bigint, (v_call->>'now')::timestamptz,
                (v_call->>'expires')::timestamptz, coalesce(v_call->'caps', '[]'::jsonb)
            ) r;
        WHEN 'settle' THEN
            v_moves_money := true;
            SELECT s.o_balance, s.o_crossed INTO b_balance, b_crossed
            FROM solaris_settle(
                v_call->>'request', (v_call->>'user')::bigint, v_call->>'endpoint',
                v_call->>'model', (v_call->>'prompt')::integer,
                (v_call->>'completion')::integer, (v_call->>'cached')::integer,
                (v_call->>'reasoning')::integer, (v_call->>'billable')::bigint,
                (v_call->>'estimated')::boolean, v_call->>'status',
                (v_call->>'latency')::integer, v_call->>'conversation',
                (v_call->>'now')::timestamptz, p_thresholds, p_channels,
                (v_call->>'cache_write')::integer, v_call->>'weights', v_call->>'tool_calls',
                ARRAY(SELECT jsonb_array_elements_text(v_call->'tool_names')),
                ARRAY(SELECT jsonb_array_elements_text(v_call->'tool_amounts')::bigint),
                ARRAY(SELECT jsonb_array_elements_text(v_call->'tool_notes'))
            ) s;
        WHEN 'release' THEN
            v_moves_money := true;
            PERFORM solaris_release(
                (v_call->>'user')::bigint, v_call->>'request', (v_call->>'now')::timestamptz
            );
        END CASE;
        RETURN NEXT;
    END LOOP;
    IF v_moves_money THEN
        -- solaris_reserve lets its hold commit without waiting for the disk; a settlement
        -- in the same transaction must wait for it.
        PERFORM set_config('synchronous_commit', 'on', true);
    END IF;
END $$
"""

OLD_RESERVE = "solaris_reserve(bigint, text, bigint, bigint, timestamptz, timestamptz)"


def upgrade() -> None:
    op.add_column("plans", sa.Column("windows", sa.Text(), nullable=True))
    op.add_column("plans", sa.Column("model_caps", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("own_cap_tokens", sa.BigInteger(), nullable=True))
    op.add_column("users", sa.Column("own_cap_period", sa.String(length=8), nullable=True))
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION solaris_batch")
        op.execute(f"DROP FUNCTION {OLD_RESERVE}")
        op.execute(RESERVE)
        op.execute(BATCH)


def _pinned(filename: str, name: str) -> str:
    """A function as an earlier migration wrote it, loaded from its file rather than copied."""
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location("solaris_migration_" + filename[:4], path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(getattr(module, name))


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION solaris_batch")
        op.execute("DROP FUNCTION solaris_reserve")
        op.execute(_pinned("0009_expired_holds_and_settle_balance.py", "RESERVE"))
        op.execute(_pinned("0013_group_commit.py", "BATCH"))
    for table, column in (
        ("users", "own_cap_period"),
        ("users", "own_cap_tokens"),
        ("plans", "model_caps"),
        ("plans", "windows"),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
