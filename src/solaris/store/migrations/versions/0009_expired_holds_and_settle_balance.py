"""Holds past their expiry stop counting whenever they would cap or block a request, and the
settle returns the balance it left.

`solaris_reserve` swept a killed process's expired holds only when they would *block* a request,
so they went on *capping* every later one (its completion limit lowered by tokens nobody holds).
It now sweeps whenever the account's holds would make it hold less than it wants, and returns
the balance beside the amount held, so a block can tell "used up" from "held by other requests".
`solaris_settle` returns the balance its own transaction left, the one the in-chat notice and
the alert e-mail of the same crossing both state.

Revision ID: 0009
Revises: 0008
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESERVE = """
CREATE FUNCTION solaris_reserve(
    p_user bigint, p_request text, p_wanted bigint, p_minimum bigint,
    p_now timestamptz, p_expires timestamptz,
    OUT o_amount bigint, OUT o_balance bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_reserved bigint;
    v_freed bigint;
BEGIN
    -- A hold need not survive a database crash (it would only free tokens), so its commit
    -- does not wait for the disk; the settlement, which moves money, does.
    SET LOCAL synchronous_commit = off;
    SELECT balance, reserved INTO o_balance, v_reserved
    FROM accounts WHERE user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no account for user %', p_user;
    END IF;
    IF v_reserved > 0 AND o_balance - v_reserved < p_wanted THEN
        -- Holds of crashed processes stop counting once they expire: swept whenever they
        -- would make this request hold less than it wants.
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
    UPDATE accounts SET reserved = reserved + o_amount WHERE user_id = p_user;
    INSERT INTO reservations (id, user_id, amount, state, created_at, expires_at)
    VALUES (p_request, p_user, o_amount, 'pending', p_now, p_expires);
END $$
"""

SETTLE = """CREATE FUNCTION solaris_settle(
    p_request text, p_user bigint, p_endpoint text, p_model text,
    p_prompt integer, p_completion integer, p_cached integer, p_reasoning integer,
    p_billable bigint, p_estimated boolean, p_status text, p_latency integer,
    p_conversation text, p_now timestamptz, p_thresholds integer[], p_channels text[],
    OUT o_balance bigint, OUT o_crossed integer[]
) LANGUAGE plpgsql AS $$
DECLARE
    v_held bigint;
    v_left bigint := p_billable;
    v_take bigint;
    v_lot record;
    v_account record;
    v_before bigint;
    v_percent integer;
    v_channel text;
    v_start bigint;
BEGIN
    INSERT INTO usage (
        request_id, user_id, endpoint, model, prompt_tokens, completion_tokens, cached_tokens,
        reasoning_tokens, billable, estimated, status, latency_ms, conversation_id, created_at
    ) VALUES (
        p_request, p_user, p_endpoint, p_model, p_prompt, p_completion, p_cached,
        p_reasoning, p_billable, p_estimated, p_status, p_latency, p_conversation, p_now
    ) ON CONFLICT (request_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN;  -- already settled (o_crossed stays NULL): idempotent by request id
    END IF;
    o_crossed := '{}';
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
    SET balance = balance - p_billable, reserved = reserved - coalesce(v_held, 0),
        period_used = period_used + p_billable
    WHERE user_id = p_user
    RETURNING balance, period_used, period_offered, period_start INTO v_account;
    o_balance := v_account.balance;  -- the balance the alerts and the in-chat notice state
    IF p_billable = 0 OR v_account.period_offered <= 0 THEN
        RETURN;
    END IF;
    v_before := v_account.period_used - p_billable;
    -- Whole seconds, truncated like Python's int(datetime.timestamp()): the dedupe key must be
    -- the one `solaris.alerts.model.threshold_key` makes for the same period.
    v_start := coalesce(floor(extract(epoch FROM v_account.period_start))::bigint, 0);
    FOREACH v_percent IN ARRAY p_thresholds LOOP
        CONTINUE WHEN NOT (
            v_before * 100 < v_percent * v_account.period_offered
            AND v_percent * v_account.period_offered <= v_account.period_used * 100
        );
        o_crossed := o_crossed || v_percent;
        FOREACH v_channel IN ARRAY p_channels LOOP
            INSERT INTO alert_outbox (
                kind, dedupe_key, channel, recipient, payload, state, attempts,
                next_attempt_at, created_at
            )
            SELECT 'user_threshold',
                format('threshold:%s:%s:%s:%s', p_user, v_start, v_percent, v_channel),
                v_channel,
                CASE WHEN v_channel = 'email' THEN u.email ELSE 'operator' END,
                json_build_object(
                    'user_id', p_user, 'threshold', v_percent,
                    'used', v_account.period_used, 'total', v_account.period_offered,
                    'balance', v_account.balance,
                    'period_start', v_start
                )::text,
                'pending', 0, p_now, p_now
            FROM users u
            WHERE u.id = p_user AND (v_channel <> 'email' OR coalesce(u.email, '') <> '')
            ON CONFLICT (dedupe_key) DO NOTHING;
        END LOOP;
    END LOOP;
END $$
"""


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION solaris_reserve")
    op.execute(RESERVE)
    op.execute("DROP FUNCTION solaris_settle")
    op.execute(SETTLE)


def _pinned(filename: str, name: str) -> str:
    """A function as an earlier migration wrote it, loaded from its file rather than copied."""
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location("solaris_migration_" + filename[:4], path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(getattr(module, name))


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION solaris_settle")
    op.execute(_pinned("0008_period_thresholds.py", "SETTLE"))
    op.execute("DROP FUNCTION solaris_reserve")
    op.execute(_pinned("0002_postgres_ledger_functions.py", "RESERVE"))
