CREATE FUNCTION solaris_reserve(
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
