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
