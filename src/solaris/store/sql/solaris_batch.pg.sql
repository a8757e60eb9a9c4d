CREATE FUNCTION solaris_batch(p_calls jsonb, p_thresholds integer[], p_channels text[])
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
