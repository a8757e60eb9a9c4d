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
