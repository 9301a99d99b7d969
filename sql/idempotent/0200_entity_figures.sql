-- The one definition of user, agent and platform analytics over a period [p_start, p_end).
--
-- Re-applied on every migrate (CREATE OR REPLACE). Changing a function's result columns needs a
-- migration that drops it first, and one for the table that stores its rows.
--
-- The API computes a period from raw events with these (filtering on the entity id outside:
-- the functions are plain SQL, so PostgreSQL inlines them and the filter reaches the index on
-- (user_id, time) or (agent_id, time)); batch tracking stores their rows for every entity.
-- Periods are UTC calendar periods: hour, day, week (ISO: Monday), month. Sums and averages
-- of floats add up in numeric: the same whatever order the rows come in (parallel workers,
-- synchronised scans), so a period tracked twice gets the very same figures.

CREATE OR REPLACE FUNCTION analytics.period_start(p_type text, p_time timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_trunc(p_type, p_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';

CREATE OR REPLACE FUNCTION analytics.period_end(p_type text, p_time timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (date_trunc(p_type, p_time AT TIME ZONE 'UTC') + ('1 ' || p_type)::interval)
       AT TIME ZONE 'UTC';

-- One row per user named by an event in the period. agents_used is a distinct count over the
-- period (a week's is not the sum of its days'); total_spent is what the user paid (payment
-- amounts), credits_spent the credits the user's work consumed.
CREATE OR REPLACE FUNCTION analytics.user_figures(p_start timestamptz, p_end timestamptz)
RETURNS TABLE (
    user_id text, sessions bigint, page_views bigint, actions bigint,
    active_time_seconds double precision, contracts_created bigint, contracts_completed bigint,
    contracts_cancelled bigint, credits_purchased double precision,
    credits_spent double precision, total_spent double precision, agents_used bigint,
    orchestrations_run bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT e.user_id,
       count(*) FILTER (WHERE e.event_type = 'session_start'),
       count(*) FILTER (WHERE e.event_type = 'page_view'),
       count(*) FILTER (WHERE e.event_type = 'user_action'),
       coalesce(sum(e.value::numeric) FILTER (WHERE e.event_type = 'active_time'), 0)::float8,
       count(*) FILTER (WHERE e.event_type = 'contract_created'),
       count(*) FILTER (WHERE e.event_type = 'contract_completed'),
       count(*) FILTER (WHERE e.event_type = 'contract_cancelled'),
       coalesce(sum(e.amount::numeric) FILTER (WHERE e.event_type = 'credits_purchased'), 0)::float8,
       coalesce(sum(e.amount::numeric) FILTER (WHERE e.event_type = 'credits_spent'), 0)::float8,
       coalesce(sum(e.amount::numeric) FILTER (WHERE e.event_type = 'payment'), 0)::float8,
       count(DISTINCT e.agent_id),
       count(*) FILTER (WHERE e.event_type = 'orchestration_run')
FROM analytics.platform_events e
WHERE e.user_id IS NOT NULL AND e.time >= p_start AND e.time < p_end
GROUP BY e.user_id
$$;

-- The last agent_up / agent_down of each agent before p_start: the state it enters a period in.
CREATE OR REPLACE FUNCTION analytics.agent_state_before(p_start timestamptz)
RETURNS TABLE (agent_id text, changed_at timestamptz, event_type text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT DISTINCT ON (e.agent_id) e.agent_id, e.time, e.event_type
FROM analytics.platform_events e
WHERE e.agent_id IS NOT NULL AND e.event_type IN ('agent_up', 'agent_down') AND e.time < p_start
ORDER BY e.agent_id, e.time DESC
$$;

-- One row per agent named by an event in the period or with a known up/down state before it.
-- Uptime is time-weighted over [p_start, p_until) (p_until: the period's end, or now for the
-- current period); time with no known state is left out. Revenue is the payment amounts naming
-- the agent; the average bid is over bid_placed; response times are over agent_call durations
-- (percentiles are exact: percentile_disc).
CREATE OR REPLACE FUNCTION analytics.agent_figures(
    p_start timestamptz, p_end timestamptz, p_until timestamptz)
RETURNS TABLE (
    agent_id text, calls_total bigint, calls_successful bigint, calls_failed bigint,
    success_rate double precision, response_time_avg_ms double precision,
    response_time_p50_ms double precision, response_time_p95_ms double precision,
    response_time_p99_ms double precision, uptime_percentage double precision,
    downtime_percentage double precision, bids_placed bigint, average_bid_price double precision,
    contracts_won bigint, contracts_completed bigint, contracts_failed bigint,
    revenue double precision, validation_score double precision,
    reputation_score double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT ids.agent_id,
       coalesce(f.calls_total, 0),
       coalesce(f.calls_successful, 0),
       coalesce(f.calls_failed, 0),
       f.calls_successful::float8 / nullif(f.calls_total, 0),
       f.response_time_avg_ms,
       f.percentiles[1], f.percentiles[2], f.percentiles[3],
       100 * u.up_s / nullif(u.up_s + u.down_s, 0),
       100 * u.down_s / nullif(u.up_s + u.down_s, 0),
       coalesce(f.bids_placed, 0),
       f.average_bid_price,
       coalesce(f.contracts_won, 0),
       coalesce(f.contracts_completed, 0),
       coalesce(f.contracts_failed, 0),
       coalesce(f.revenue, 0),
       f.validation_score,
       f.reputation_score
FROM (
    SELECT e.agent_id FROM analytics.platform_events e
    WHERE e.agent_id IS NOT NULL AND e.time >= p_start AND e.time < p_end
    UNION
    SELECT s.agent_id FROM analytics.agent_state_before(p_start) s
) ids
LEFT JOIN (
    SELECT e.agent_id,
           count(*) FILTER (WHERE e.event_type = 'agent_call') AS calls_total,
           count(*) FILTER (WHERE e.event_type = 'agent_call' AND e.success) AS calls_successful,
           count(*) FILTER (WHERE e.event_type = 'agent_call' AND NOT e.success)
               AS calls_failed,
           (avg(e.duration_ms::numeric) FILTER (WHERE e.event_type = 'agent_call'))::float8 AS response_time_avg_ms,
           percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY e.duration_ms)
               FILTER (WHERE e.event_type = 'agent_call') AS percentiles,
           count(*) FILTER (WHERE e.event_type = 'bid_placed') AS bids_placed,
           (avg(e.amount::numeric) FILTER (WHERE e.event_type = 'bid_placed'))::float8 AS average_bid_price,
           count(*) FILTER (WHERE e.event_type = 'contract_won') AS contracts_won,
           count(*) FILTER (WHERE e.event_type = 'contract_completed') AS contracts_completed,
           count(*) FILTER (WHERE e.event_type = 'contract_failed') AS contracts_failed,
           (sum(e.amount::numeric) FILTER (WHERE e.event_type = 'payment'))::float8 AS revenue,
           (avg(e.value::numeric) FILTER (WHERE e.event_type = 'validation_score'))::float8 AS validation_score,
           (avg(e.value::numeric) FILTER (WHERE e.event_type = 'reputation_score'))::float8 AS reputation_score
    FROM analytics.platform_events e
    WHERE e.agent_id IS NOT NULL AND e.time >= p_start AND e.time < p_end
    GROUP BY e.agent_id
) f ON f.agent_id = ids.agent_id
LEFT JOIN (
    SELECT c.agent_id,
           coalesce(sum(extract(epoch FROM c.span_end - c.span_start))
                    FILTER (WHERE c.event_type = 'agent_up' AND c.span_end > c.span_start), 0)
               AS up_s,
           coalesce(sum(extract(epoch FROM c.span_end - c.span_start))
                    FILTER (WHERE c.event_type = 'agent_down' AND c.span_end > c.span_start), 0)
               AS down_s
    FROM (
        SELECT x.agent_id, x.event_type, greatest(x.changed_at, p_start) AS span_start,
               least(coalesce(lead(x.changed_at) OVER (PARTITION BY x.agent_id ORDER BY x.changed_at),
                              p_until), p_until) AS span_end
        FROM (
            SELECT s.agent_id, s.changed_at, s.event_type FROM analytics.agent_state_before(p_start) s
            UNION ALL
            SELECT e.agent_id, e.time AS changed_at, e.event_type FROM analytics.platform_events e
            WHERE e.agent_id IS NOT NULL AND e.event_type IN ('agent_up', 'agent_down')
              AND e.time >= p_start AND e.time < p_end
        ) x
    ) c
    GROUP BY c.agent_id
) u ON u.agent_id = ids.agent_id
$$;

-- Platform-wide figures over the period; p_before is the start of the period before (for
-- churn). "Total" figures count everything up to the period's end: users and agents first seen
-- (named by any event) before it, so a total is never below the actives of the same period;
-- "new" ones were first seen in the period (a period's total is the one before plus its new);
-- "active" means named by any event in the period; churned users were active in the period
-- before and are not in this one; active contracts were created and not yet completed,
-- cancelled or failed by the period's end.
-- Read in passes the indexes serve: the period's events once, users over both periods once
-- (grouped: active and churned together), agents once, index ranges of users_seen and
-- agents_seen (on first_seen) for the user and agent totals, index-only counts for contracts.
CREATE OR REPLACE FUNCTION analytics.platform_figures(
    p_start timestamptz, p_end timestamptz, p_before timestamptz)
RETURNS TABLE (
    users_total bigint, users_active bigint, users_new bigint, users_churned bigint,
    agents_total bigint, agents_active bigint, agents_new bigint, contracts_total bigint,
    contracts_active bigint, contracts_completed bigint, contracts_failed bigint,
    revenue double precision, platform_fees double precision,
    credits_purchased double precision, credits_spent double precision,
    response_time_avg_ms double precision, error_rate double precision,
    throughput_per_s double precision, api_calls bigint, orchestrations bigint,
    fraud_alerts bigint, security_events bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
WITH period AS (
    SELECT count(*) FILTER (WHERE e.event_type = 'contract_completed') AS contracts_completed,
           count(*) FILTER (WHERE e.event_type = 'contract_failed') AS contracts_failed,
           coalesce(sum(e.amount::numeric) FILTER (WHERE e.event_type = 'payment'), 0)::float8 AS revenue,
           coalesce(sum(e.fee::numeric) FILTER (WHERE e.event_type = 'payment'), 0)::float8 AS platform_fees,
           coalesce(sum(e.amount::numeric) FILTER (WHERE e.event_type = 'credits_purchased'), 0)::float8
               AS credits_purchased,
           coalesce(sum(e.amount::numeric) FILTER (WHERE e.event_type = 'credits_spent'), 0)::float8
               AS credits_spent,
           (avg(e.duration_ms::numeric) FILTER (WHERE e.event_type = 'api_call'))::float8 AS response_time_avg_ms,
           (count(*) FILTER (WHERE e.event_type = 'api_call' AND e.status >= 500))::float8
               / nullif(count(*) FILTER (WHERE e.event_type = 'api_call'), 0) AS error_rate,
           count(*) FILTER (WHERE e.event_type = 'api_call') AS api_calls,
           count(*) FILTER (WHERE e.event_type = 'orchestration_run') AS orchestrations,
           count(*) FILTER (WHERE e.event_type = 'fraud_alert') AS fraud_alerts,
           count(*) FILTER (WHERE e.event_type = 'security_event') AS security_events
    FROM analytics.platform_events e
    WHERE e.time >= p_start AND e.time < p_end
), users AS (
    SELECT count(*) FILTER (WHERE u.now) AS active,
           count(*) FILTER (WHERE u.before AND NOT u.now) AS churned
    FROM (SELECT bool_or(e.time >= p_start) AS now, bool_or(e.time < p_start) AS before
          FROM analytics.platform_events e
          WHERE e.user_id IS NOT NULL AND e.time >= p_before AND e.time < p_end
          GROUP BY e.user_id) u
), agents AS (
    SELECT count(*) AS active
    FROM (SELECT e.agent_id FROM analytics.platform_events e
          WHERE e.agent_id IS NOT NULL AND e.time >= p_start AND e.time < p_end
          GROUP BY e.agent_id) a
), totals AS (
    SELECT (SELECT count(*) FROM analytics.users_seen s WHERE s.first_seen < p_end) AS users,
           (SELECT count(*) FROM analytics.users_seen s
            WHERE s.first_seen >= p_start AND s.first_seen < p_end) AS users_new,
           (SELECT count(*) FROM analytics.agents_seen s WHERE s.first_seen < p_end) AS agents,
           (SELECT count(*) FROM analytics.agents_seen s
            WHERE s.first_seen >= p_start AND s.first_seen < p_end) AS agents_new,
           (SELECT count(*) FROM analytics.platform_events e
            WHERE e.event_type = 'contract_created' AND e.time < p_end) AS contracts,
           (SELECT count(*) FROM analytics.platform_events e
            WHERE e.event_type IN ('contract_completed', 'contract_cancelled', 'contract_failed')
              AND e.time < p_end) AS contracts_ended
)
SELECT t.users, u.active, t.users_new, u.churned,
       t.agents, a.active, t.agents_new,
       t.contracts, t.contracts - t.contracts_ended, p.contracts_completed, p.contracts_failed,
       p.revenue, p.platform_fees, p.credits_purchased, p.credits_spent,
       p.response_time_avg_ms, p.error_rate,
       p.api_calls::float8 / extract(epoch FROM p_end - p_start), p.api_calls,
       p.orchestrations, p.fraud_alerts, p.security_events
FROM period p, users u, agents a, totals t
$$;

-- Rebuilds analytics.users_seen and agents_seen from the stored events, for after events were
-- deleted (or written around the ingest path, as the benchmark's COPY does): entities no event
-- names any more are removed, first-seen and signup times recomputed. Every hour an entity's
-- first_seen moved from or to is logged for the track job with `totals`, so the platform
-- periods after it are tracked again. Ingest waits meanwhile (the tables are locked against
-- writes; reads go on); returns the number of entities added, changed or removed.
CREATE OR REPLACE FUNCTION analytics.refresh_entities_seen() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    changed bigint;
BEGIN
    LOCK TABLE analytics.users_seen, analytics.agents_seen IN SHARE ROW EXCLUSIVE MODE;
    WITH users AS (
        SELECT e.user_id, min(e.time) AS first_seen,
               min(e.time) FILTER (WHERE e.event_type = 'user_signup') AS signed_up_at
        FROM analytics.platform_events e WHERE e.user_id IS NOT NULL GROUP BY e.user_id
    ), user_changes AS (
        SELECT coalesce(n.user_id, o.user_id) AS user_id, n.first_seen, n.signed_up_at,
               least(n.first_seen, o.first_seen) AS moved
        FROM users n FULL JOIN analytics.users_seen o ON o.user_id = n.user_id
        WHERE (n.first_seen, n.signed_up_at) IS DISTINCT FROM (o.first_seen, o.signed_up_at)
    ), users_upserted AS (
        INSERT INTO analytics.users_seen AS s (user_id, first_seen, signed_up_at)
        SELECT c.user_id, c.first_seen, c.signed_up_at FROM user_changes c
        WHERE c.first_seen IS NOT NULL
        ON CONFLICT (user_id) DO UPDATE
            SET first_seen = excluded.first_seen, signed_up_at = excluded.signed_up_at
    ), users_deleted AS (
        DELETE FROM analytics.users_seen s USING user_changes c
        WHERE c.first_seen IS NULL AND s.user_id = c.user_id
    ), agents AS (
        SELECT e.agent_id, min(e.time) AS first_seen,
               min(e.time) FILTER (WHERE e.event_type = 'agent_registered') AS registered_at
        FROM analytics.platform_events e WHERE e.agent_id IS NOT NULL GROUP BY e.agent_id
    ), agent_changes AS (
        SELECT coalesce(n.agent_id, o.agent_id) AS agent_id, n.first_seen, n.registered_at,
               least(n.first_seen, o.first_seen) AS moved
        FROM agents n FULL JOIN analytics.agents_seen o ON o.agent_id = n.agent_id
        WHERE (n.first_seen, n.registered_at) IS DISTINCT FROM (o.first_seen, o.registered_at)
    ), agents_upserted AS (
        INSERT INTO analytics.agents_seen AS s (agent_id, first_seen, registered_at)
        SELECT c.agent_id, c.first_seen, c.registered_at FROM agent_changes c
        WHERE c.first_seen IS NOT NULL
        ON CONFLICT (agent_id) DO UPDATE
            SET first_seen = excluded.first_seen, registered_at = excluded.registered_at
    ), agents_deleted AS (
        DELETE FROM analytics.agents_seen s USING agent_changes c
        WHERE c.first_seen IS NULL AND s.agent_id = c.agent_id
    ), moves AS (
        SELECT c.moved FROM user_changes c UNION ALL SELECT c.moved FROM agent_changes c
    ), logged AS (
        INSERT INTO _analytics.event_invalidations (hour, totals)
        SELECT DISTINCT date_trunc('hour', m.moved AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', true
        FROM moves m
    )
    SELECT count(*) INTO changed FROM moves;
    RETURN changed;
END
$$;
