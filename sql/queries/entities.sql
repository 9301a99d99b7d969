-- Statements of the user and agent analytics (query/entities.py). asyncpg's $1, $2, ...

-- name: entity_seen
-- Whether any event names this user ($1 = 'user') or agent ($1 = 'agent').
SELECT EXISTS (
    SELECT 1 FROM analytics.platform_events
    WHERE ($1 = 'user' AND user_id = $2) OR ($1 = 'agent' AND agent_id = $2)
);

-- name: user_period
-- One user's figures over [$2, $3), from the user's own events (index on user_id, time).
-- agents_used counts the distinct agents the user's events name, in the period: a distinct
-- count, so a week's is not the sum of its days'.
SELECT count(*) FILTER (WHERE event_type = 'session_start') AS sessions,
       count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
       count(*) FILTER (WHERE event_type = 'user_action') AS actions,
       coalesce(sum(value) FILTER (WHERE event_type = 'active_time'), 0) AS active_time_seconds,
       count(*) FILTER (WHERE event_type = 'contract_created') AS contracts_created,
       count(*) FILTER (WHERE event_type = 'contract_completed') AS contracts_completed,
       count(*) FILTER (WHERE event_type = 'contract_cancelled') AS contracts_cancelled,
       coalesce(sum(amount) FILTER (WHERE event_type = 'credits_purchased'), 0)
           AS credits_purchased,
       coalesce(sum(amount) FILTER (WHERE event_type = 'credits_spent'), 0) AS credits_spent,
       count(DISTINCT agent_id) AS agents_used,
       count(*) FILTER (WHERE event_type = 'orchestration_run') AS orchestrations_run,
       (SELECT coalesce(sum(amount), 0) FROM analytics.platform_events
        WHERE user_id = $1 AND event_type = 'credits_spent' AND time < $3) AS total_spent
FROM analytics.platform_events
WHERE user_id = $1 AND time >= $2 AND time < $3;

-- name: agent_period
-- One agent's figures over [$2, $3). Uptime is time-weighted from agent_up / agent_down
-- events (the state before the period carries into it); time with no known state is left out.
-- Revenue is the amount of payment events naming the agent; the average bid is over bid_placed.
WITH changes AS (
    (SELECT time, event_type FROM analytics.platform_events
     WHERE agent_id = $1 AND event_type IN ('agent_up', 'agent_down') AND time < $2
     ORDER BY time DESC LIMIT 1)
    UNION ALL
    SELECT time, event_type FROM analytics.platform_events
    WHERE agent_id = $1 AND event_type IN ('agent_up', 'agent_down')
      AND time >= $2 AND time < $3
), spans AS (
    SELECT event_type, greatest(time, $2) AS span_start,
           least(coalesce(lead(time) OVER (ORDER BY time), $4), $4) AS span_end
    FROM changes
), uptime AS (
    SELECT coalesce(sum(extract(epoch FROM span_end - span_start))
                    FILTER (WHERE event_type = 'agent_up' AND span_end > span_start), 0) AS up_s,
           coalesce(sum(extract(epoch FROM span_end - span_start))
                    FILTER (WHERE event_type = 'agent_down' AND span_end > span_start), 0)
               AS down_s
    FROM spans
)
SELECT count(*) FILTER (WHERE event_type = 'agent_call') AS calls_total,
       count(*) FILTER (WHERE event_type = 'agent_call' AND success) AS calls_successful,
       count(*) FILTER (WHERE event_type = 'agent_call' AND NOT success) AS calls_failed,
       avg(duration_ms) FILTER (WHERE event_type = 'agent_call') AS response_time_avg_ms,
       percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY duration_ms)
           FILTER (WHERE event_type = 'agent_call') AS response_time_percentiles,
       count(*) FILTER (WHERE event_type = 'bid_placed') AS bids_placed,
       avg(amount) FILTER (WHERE event_type = 'bid_placed') AS average_bid_price,
       count(*) FILTER (WHERE event_type = 'contract_won') AS contracts_won,
       count(*) FILTER (WHERE event_type = 'contract_completed') AS contracts_completed,
       count(*) FILTER (WHERE event_type = 'contract_failed') AS contracts_failed,
       coalesce(sum(amount) FILTER (WHERE event_type = 'payment'), 0) AS revenue,
       avg(value) FILTER (WHERE event_type = 'validation_score') AS validation_score,
       avg(value) FILTER (WHERE event_type = 'reputation_score') AS reputation_score,
       (SELECT up_s FROM uptime) AS up_s,
       (SELECT down_s FROM uptime) AS down_s
FROM analytics.platform_events
WHERE agent_id = $1 AND time >= $2 AND time < $3;

-- name: platform_period
-- Platform-wide figures over [$1, $2); $3 is the start of the period before (for churn).
-- "Total" figures count everything up to the period's end; "active" means named by any event
-- in the period; churned users were active in the period before and are not in this one.
WITH period AS (
    SELECT * FROM analytics.platform_events WHERE time >= $1 AND time < $2
), users_now AS (
    SELECT DISTINCT user_id FROM period WHERE user_id IS NOT NULL
), users_before AS (
    SELECT DISTINCT user_id FROM analytics.platform_events
    WHERE time >= $3 AND time < $1 AND user_id IS NOT NULL
), calls AS (
    SELECT * FROM period WHERE event_type = 'api_call'
)
SELECT
    (SELECT count(DISTINCT user_id) FROM analytics.platform_events
     WHERE event_type = 'user_signup' AND time < $2) AS users_total,
    (SELECT count(*) FROM users_now) AS users_active,
    (SELECT count(*) FROM period WHERE event_type = 'user_signup') AS users_new,
    (SELECT count(*) FROM users_before b
     WHERE NOT EXISTS (SELECT 1 FROM users_now n WHERE n.user_id = b.user_id)) AS users_churned,
    (SELECT count(DISTINCT agent_id) FROM analytics.platform_events
     WHERE event_type = 'agent_registered' AND time < $2) AS agents_total,
    (SELECT count(DISTINCT agent_id) FROM period WHERE agent_id IS NOT NULL) AS agents_active,
    (SELECT count(*) FROM period WHERE event_type = 'agent_registered') AS agents_new,
    (SELECT count(*) FROM analytics.platform_events
     WHERE event_type = 'contract_created' AND time < $2) AS contracts_total,
    (SELECT count(*) FILTER (WHERE event_type = 'contract_created')
          - count(*) FILTER (WHERE event_type IN ('contract_completed', 'contract_cancelled',
                                                  'contract_failed'))
     FROM analytics.platform_events WHERE time < $2) AS contracts_active,
    (SELECT count(*) FROM period WHERE event_type = 'contract_completed') AS contracts_completed,
    (SELECT count(*) FROM period WHERE event_type = 'contract_failed') AS contracts_failed,
    (SELECT coalesce(sum(amount), 0) FROM period WHERE event_type = 'payment') AS revenue,
    (SELECT coalesce(sum(fee), 0) FROM period WHERE event_type = 'payment') AS platform_fees,
    (SELECT coalesce(sum(amount), 0) FROM period WHERE event_type = 'credits_purchased')
        AS credits_purchased,
    (SELECT coalesce(sum(amount), 0) FROM period WHERE event_type = 'credits_spent')
        AS credits_spent,
    (SELECT avg(duration_ms) FROM calls) AS response_time_avg_ms,
    (SELECT (count(*) FILTER (WHERE status >= 500))::float8 / nullif(count(*), 0) FROM calls)
        AS error_rate,
    (SELECT count(*) FROM calls)::float8 / extract(epoch FROM $2::timestamptz - $1)
        AS throughput_per_s,
    (SELECT count(*) FROM calls) AS api_calls,
    (SELECT count(*) FROM period WHERE event_type = 'orchestration_run') AS orchestrations,
    (SELECT count(*) FROM period WHERE event_type = 'fraud_alert') AS fraud_alerts,
    (SELECT count(*) FROM period WHERE event_type = 'security_event') AS security_events;
