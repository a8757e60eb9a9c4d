CREATE FUNCTION solaris_settle(
    p_request text, p_user bigint, p_endpoint text, p_model text,
    p_prompt integer, p_completion integer, p_cached integer, p_reasoning integer,
    p_billable bigint, p_estimated boolean, p_status text, p_latency integer,
    p_conversation text, p_now timestamptz, p_thresholds integer[], p_channels text[],
    p_cache_write integer, p_weights text, p_tool_calls text,
    p_tool_names text[], p_tool_amounts bigint[], p_tool_notes text[],
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
    v_tools bigint := coalesce((SELECT sum(a) FROM unnest(p_tool_amounts) a), 0);
    v_index integer;
BEGIN
    INSERT INTO usage (
        request_id, user_id, endpoint, model, prompt_tokens, completion_tokens, cached_tokens,
        reasoning_tokens, billable, estimated, status, latency_ms, conversation_id, created_at,
        cache_write_tokens, weights, tool_calls, tool_billable
    ) VALUES (
        p_request, p_user, p_endpoint, p_model, p_prompt, p_completion, p_cached,
        p_reasoning, p_billable, p_estimated, p_status, p_latency, p_conversation, p_now,
        p_cache_write, p_weights, p_tool_calls, v_tools
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
        -- The tokens' entry, then one per hosted tool: each is a line of the statement.
        IF p_billable > v_tools THEN
            INSERT INTO ledger_entries (
                user_id, kind, amount, idempotency_key, request_id, created_by, created_at
            ) VALUES (
                p_user, 'usage', v_tools - p_billable, 'usage:' || p_request, p_request,
                'gateway', p_now
            );
        END IF;
        FOR v_index IN 1 .. coalesce(array_length(p_tool_names, 1), 0) LOOP
            INSERT INTO ledger_entries (
                user_id, kind, amount, idempotency_key, request_id, note, created_by,
                created_at
            ) VALUES (
                p_user, 'usage', -p_tool_amounts[v_index],
                'tool:' || p_request || ':' || p_tool_names[v_index], p_request,
                p_tool_notes[v_index], 'gateway', p_now
            );
        END LOOP;
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
