-- Statements of the user and agent analytics (query/entities.py). asyncpg's $1, $2, ...

-- name: entity_seen
-- Whether any event names this user ($1 = 'user') or agent ($1 = 'agent').
SELECT EXISTS (
    SELECT 1 FROM analytics.platform_events
    WHERE ($1 = 'user' AND user_id = $2) OR ($1 = 'agent' AND agent_id = $2)
);

-- name: user_period
-- One user's figures over [$2, $3) (no row: no events of the user in the period).
SELECT * FROM analytics.user_figures($2, $3) WHERE user_id = $1;

-- name: user_periods
-- One user's figures in each period [$2[i], $3[i]) that has events of the user.
SELECT s.period_start, f.*
FROM unnest($2::timestamptz[], $3::timestamptz[]) AS s (period_start, period_end)
CROSS JOIN LATERAL analytics.user_figures(s.period_start, s.period_end) f
WHERE f.user_id = $1;

-- name: agent_period
-- One agent's figures over [$2, $3); uptime counts until $4 (now, in the current period).
SELECT * FROM analytics.agent_figures($2, $3, $4) WHERE agent_id = $1;

-- name: platform_period
-- Platform-wide figures over [$1, $2); $3 is the start of the period before (for churn).
SELECT * FROM analytics.platform_figures($1, $2, $3);

-- name: agent_periods
-- One agent's figures in each period [$2[i], $3[i]); uptime counts until $4[i].
SELECT s.period_start, f.*
FROM unnest($2::timestamptz[], $3::timestamptz[], $4::timestamptz[])
    AS s (period_start, period_end, until)
CROSS JOIN LATERAL analytics.agent_figures(s.period_start, s.period_end, s.until) f
WHERE f.agent_id = $1;

-- name: platform_tracked
-- The materialised platform figures of those periods of type $1 starting at $2 that are clean:
-- tracked, and no events they depend on arrived since (neither marked dirty nor waiting in the
-- log: events in the period or the one before, or totals events any time before its end).
SELECT m.*
FROM analytics.platform_metrics m
JOIN analytics.tracked_periods p
  ON p.kind = 'platform' AND p.period_type = m.period_type AND p.period_start = m.period_start
WHERE m.period_type = $1 AND m.period_start = ANY ($2::timestamptz[]) AND NOT p.dirty
  AND NOT EXISTS (
      SELECT 1 FROM _analytics.event_invalidations i
      WHERE i.hour < m.period_end
        AND (i.totals OR i.hour >= analytics.period_start(
                 m.period_type, m.period_start - interval '1 microsecond')));
