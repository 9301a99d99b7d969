-- Statements of the monitoring API (monitoring/). Parameters are asyncpg's $1, $2, ...

-- name: service_insert
INSERT INTO analytics.services (name, service_type, check_spec, interval_seconds, timeout_ms,
                                degraded_ms, sla_target, channels, enabled)
VALUES ($1, $2::text::analytics.service_type, $3::jsonb, $4, $5, $6, $7, $8::integer[], $9)
RETURNING id;

-- name: service_update
UPDATE analytics.services SET
    name = $2, service_type = $3::text::analytics.service_type, check_spec = $4::jsonb,
    interval_seconds = $5, timeout_ms = $6, degraded_ms = $7, sla_target = $8,
    channels = $9::integer[], enabled = $10, updated_at = now()
WHERE id = $1
RETURNING id;

-- name: service_delete
DELETE FROM analytics.services WHERE id = $1 AND NOT builtin RETURNING id;

-- name: services_health
-- Every service (or the one named $1) with where it stands. A service without a result in the
-- last two of its intervals is 'unknown'.
SELECT s.id, s.name, s.service_type::text AS service_type, s.check_spec::text AS check_spec,
       s.interval_seconds, s.timeout_ms, s.degraded_ms, s.sla_target, s.channels, s.enabled,
       s.builtin, s.created_at, s.updated_at,
       CASE WHEN st.last_checked IS NULL
                 OR st.last_checked < now() - make_interval(secs => 2 * s.interval_seconds)
            THEN 'unknown' ELSE st.status::text END AS status,
       st.response_time_ms, coalesce(st.consecutive_failures, 0) AS consecutive_failures,
       st.last_checked, st.error
FROM analytics.services AS s
LEFT JOIN analytics.service_state AS st ON st.service_id = s.id
WHERE ($1::text IS NULL OR s.name = $1) AND ($1::text IS NOT NULL OR s.enabled)
ORDER BY s.name;

-- name: service_history
SELECT time, status::text AS status, response_time_ms, error
FROM analytics.health_checks
WHERE service_id = $1
ORDER BY time DESC
LIMIT $2;

-- name: service_sla
-- Time-weighted figures over [$2, $3) for service $1 checked every $4 seconds. Each result's
-- status holds until the next result, for at most two intervals; time not covered so is
-- unknown. Up is healthy or degraded; downtime incidents are the moves into unhealthy.
WITH checks AS (
    SELECT time, status, response_time_ms,
           lead(time) OVER (ORDER BY time) AS next_time,
           lag(status) OVER (ORDER BY time) AS previous
    FROM analytics.health_checks
    WHERE service_id = $1 AND time < $3::timestamptz
      AND time >= $2::timestamptz - make_interval(secs => 2 * $4::integer)
), spans AS (
    SELECT status, previous, time, response_time_ms,
           greatest(time, $2::timestamptz) AS span_start,
           least(coalesce(next_time, $3::timestamptz),
                 time + make_interval(secs => 2 * $4::integer), $3::timestamptz) AS span_end
    FROM checks
)
SELECT coalesce(sum(extract(epoch FROM span_end - span_start))
                FILTER (WHERE status <> 'unhealthy' AND span_end > span_start), 0) AS up_s,
       coalesce(sum(extract(epoch FROM span_end - span_start))
                FILTER (WHERE status = 'degraded' AND span_end > span_start), 0) AS degraded_s,
       coalesce(sum(extract(epoch FROM span_end - span_start))
                FILTER (WHERE status = 'unhealthy' AND span_end > span_start), 0) AS down_s,
       count(*) FILTER (WHERE status = 'unhealthy' AND previous IS DISTINCT FROM 'unhealthy'
                        AND time >= $2) AS downtime_incidents,
       avg(response_time_ms) FILTER (WHERE status <> 'unhealthy' AND time >= $2)
           AS avg_response_time_ms,
       count(*) FILTER (WHERE time >= $2) AS checks
FROM spans;

-- name: service_upsert
-- A service from the services file: created, or brought in line with the file by name.
INSERT INTO analytics.services (name, service_type, check_spec, interval_seconds, timeout_ms,
                                degraded_ms, sla_target, channels, enabled)
VALUES ($1, $2::text::analytics.service_type, $3::jsonb, $4, $5, $6, $7, $8::integer[], $9)
ON CONFLICT (name) DO UPDATE SET
    service_type = excluded.service_type, check_spec = excluded.check_spec,
    interval_seconds = excluded.interval_seconds, timeout_ms = excluded.timeout_ms,
    degraded_ms = excluded.degraded_ms, sla_target = excluded.sla_target,
    channels = excluded.channels, enabled = excluded.enabled, updated_at = now()
RETURNING id;

-- name: self_metrics_lag
-- Age in seconds of the oldest change the compactor and the track job have not processed yet.
SELECT (SELECT extract(epoch FROM now() - min(recorded_at))
        FROM (SELECT recorded_at FROM _analytics.series_deltas
              UNION ALL
              SELECT recorded_at FROM _analytics.metric_deltas) AS pending) AS rollups,
       (SELECT extract(epoch FROM now() - min(recorded_at))
        FROM _analytics.event_invalidations) AS track;

-- name: self_metrics_jobs
-- Per periodic job: the last finished run's duration and the failed runs of the last day.
SELECT job,
       (array_agg(extract(epoch FROM finished_at - started_at) ORDER BY started_at DESC)
            FILTER (WHERE finished_at IS NOT NULL))[1] AS last_duration_s,
       count(*) FILTER (WHERE outcome IN ('failed', 'interrupted')) AS failures
FROM _analytics.job_runs
WHERE started_at > now() - interval '1 day'
GROUP BY job;

-- name: self_metrics_notifications
SELECT count(*) FROM analytics.notification_attempts
WHERE NOT ok AND at > now() - interval '1 day';

-- name: api_keys_live
SELECT key_sha256, scopes FROM analytics.api_keys WHERE revoked_at IS NULL;
