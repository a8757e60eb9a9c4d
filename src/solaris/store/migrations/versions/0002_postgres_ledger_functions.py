"""PostgreSQL functions for the request path: reserve, settle and release in one round trip each.

They are the same steps as `solaris.ledger.ledger.Ledger` (which SQLite runs statement by
statement), written once in PL/pgSQL so a request costs two database calls instead of a dozen.
Each statement inside a function sees the rows other transactions committed before it, and the
account row is locked (FOR UPDATE) first, before anything is read for a decision, by every
writer — so two writers never wait on each other in opposite orders.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESERVE = """
CREATE FUNCTION solaris_reserve(
    p_user bigint, p_request text, p_wanted bigint, p_minimum bigint,
    p_now timestamptz, p_expires timestamptz
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_available bigint;
    v_freed bigint;
    v_amount bigint;
BEGIN
    -- A hold need not survive a database crash (it would only free tokens), so its commit
    -- does not wait for the disk; the settlement, which moves money, does.
    SET LOCAL synchronous_commit = off;
    SELECT balance - reserved INTO v_available FROM accounts WHERE user_id = p_user FOR UPDATE;
    IF v_available IS NULL THEN
        RAISE EXCEPTION 'no account for user %', p_user;
    END IF;
    IF v_available < p_minimum THEN
        -- Reservations of crashed processes stop counting once they expire.
        WITH expired AS (
            UPDATE reservations SET state = 'expired', resolved_at = p_now
            WHERE user_id = p_user AND state = 'pending' AND expires_at <= p_now
            RETURNING amount
        )
        SELECT coalesce(sum(amount), 0) INTO v_freed FROM expired;
        IF v_freed > 0 THEN
            UPDATE accounts SET reserved = reserved - v_freed WHERE user_id = p_user;
            v_available := v_available + v_freed;
        END IF;
    END IF;
    IF v_available < p_minimum THEN
        RETURN 0;
    END IF;
    v_amount := least(p_wanted, v_available);
    UPDATE accounts SET reserved = reserved + v_amount WHERE user_id = p_user;
    INSERT INTO reservations (id, user_id, amount, state, created_at, expires_at)
    VALUES (p_request, p_user, v_amount, 'pending', p_now, p_expires);
    RETURN v_amount;
END $$
"""

SETTLE = """
CREATE FUNCTION solaris_settle(
    p_request text, p_user bigint, p_endpoint text, p_model text,
    p_prompt integer, p_completion integer, p_cached integer, p_reasoning integer,
    p_billable bigint, p_estimated boolean, p_status text, p_latency integer,
    p_conversation text, p_now timestamptz
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_held bigint;
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
    UPDATE reservations SET state = 'settled', resolved_at = p_now
    WHERE id = p_request AND state = 'pending'
    RETURNING amount INTO v_held;
    IF p_billable > 0 THEN
        INSERT INTO ledger_entries (
            user_id, kind, amount, idempotency_key, request_id, created_by, created_at
        ) VALUES (
            p_user, 'usage', -p_billable, 'usage:' || p_request, p_request, 'gateway', p_now
        );
    END IF;
    UPDATE accounts
    SET balance = balance - p_billable, reserved = reserved - coalesce(v_held, 0)
    WHERE user_id = p_user;
    RETURN true;
END $$
"""

RELEASE = """
CREATE FUNCTION solaris_release(p_user bigint, p_request text, p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_held bigint;
BEGIN
    -- The account row first, as every other writer does, so lock orders never cross.
    PERFORM 1 FROM accounts WHERE user_id = p_user FOR UPDATE;
    UPDATE reservations SET state = 'released', resolved_at = p_now
    WHERE id = p_request AND state = 'pending'
    RETURNING amount INTO v_held;
    IF v_held IS NOT NULL THEN
        UPDATE accounts SET reserved = reserved - v_held WHERE user_id = p_user;
    END IF;
END $$
"""

FUNCTIONS = ("solaris_reserve", "solaris_settle", "solaris_release")


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for sql in (RESERVE, SETTLE, RELEASE):
        op.execute(sql)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for name in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {name}")
