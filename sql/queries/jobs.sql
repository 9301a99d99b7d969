-- Statements of the job scheduler (jobs/scheduler.py). Parameters are psycopg's %(name)s.

-- name: job_due
-- By the database's clock, so that replicas' clocks do not matter. Only the scheduler's own
-- runs count: a manual one (a range refresh, a retention with other --days) does not stand for
-- the periodic run.
SELECT coalesce(max(started_at) <= now() - %(interval)s::interval, true) AS due
FROM _analytics.job_runs
WHERE job = %(job)s AND trigger = 'schedule';

-- name: job_mark_interrupted
-- Called holding the job's advisory lock: a run still 'running' belongs to a dead process
-- (scheduled and manual runs alike hold the lock while they run).
UPDATE _analytics.job_runs
SET outcome = 'interrupted', finished_at = now(),
    error = 'the process running it stopped before it finished'
WHERE job = %(job)s AND outcome = 'running';

-- name: job_start
INSERT INTO _analytics.job_runs (job, host, pid, trigger)
VALUES (%(job)s, %(host)s, %(pid)s, %(trigger)s)
RETURNING id, started_at;

-- name: job_finish
UPDATE _analytics.job_runs
SET finished_at = now(), outcome = %(outcome)s, rows_affected = %(rows)s, error = %(error)s,
    detail = %(detail)s
WHERE id = %(id)s;

-- name: job_runs_recent
SELECT id, job, started_at, finished_at,
       extract(epoch FROM finished_at - started_at) * 1000 AS duration_ms,
       rows_affected, outcome, error, detail, host, pid, trigger
FROM _analytics.job_runs
WHERE %(job)s::text IS NULL OR job = %(job)s
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s;

-- name: job_runs_prune
DELETE FROM _analytics.job_runs WHERE started_at < now() - %(keep)s::interval;

-- name: oldest_raw_time
-- Where raw events (and histogram points) begin: the tiers are never rebuilt before it (that
-- would empty them).
SELECT min(range_start) AS oldest
FROM timescaledb_information.chunks
WHERE hypertable_schema = 'analytics'
  AND hypertable_name IN ('metric_event_store', 'distribution_store');

-- name: idempotency_keys_prune
DELETE FROM _analytics.idempotency_keys WHERE created_at < now() - %(ttl)s::interval;

-- name: alert_values
-- One value per enabled rule over its own window (%(now)s - window, %(now)s], in one statement
-- for all rules: each rule's series are found by its tag filters, and each series' events in
-- the window by an index probe on (series_id, time). Rules on a metric not recorded yet get
-- `recorded` false: no data, whatever the aggregation (their no_data setting decides).
WITH rules AS (
    SELECT r.id, r.aggregation, r.window_seconds, r.tags, m.id AS metric_id
    FROM analytics.alert_rules AS r
    LEFT JOIN analytics.metrics AS m ON m.name = r.metric_name
    WHERE r.enabled
), matched AS (
    SELECT r.id AS rule_id, s.id AS series_id, r.window_seconds
    FROM rules AS r
    JOIN analytics.series AS s ON s.metric_id = r.metric_id
    WHERE NOT EXISTS (
        SELECT 1 FROM jsonb_each(r.tags) AS f (tag, allowed)
        WHERE NOT coalesce(f.allowed ? (s.tags ->> f.tag), false)
    )
), vals AS (
    SELECT m.rule_id, e.value
    FROM matched AS m
    CROSS JOIN LATERAL (
        SELECT value FROM analytics.metric_events AS e
        WHERE e.series_id = m.series_id
          AND e.time > %(now)s::timestamptz - make_interval(secs => m.window_seconds)
          AND e.time <= %(now)s::timestamptz
    ) AS e
)
SELECT r.id AS rule_id,
       r.metric_id IS NOT NULL AS recorded,
       count(v.value) AS count,
       CASE r.aggregation
           WHEN 'avg' THEN avg(v.value)
           WHEN 'min' THEN min(v.value)
           WHEN 'max' THEN max(v.value)
           WHEN 'sum' THEN coalesce(sum(v.value), 0)
           WHEN 'count' THEN count(v.value)
           WHEN 'rate' THEN coalesce(sum(v.value), 0) / r.window_seconds
           WHEN 'p50' THEN percentile_disc(0.5) WITHIN GROUP (ORDER BY v.value)
           WHEN 'p95' THEN percentile_disc(0.95) WITHIN GROUP (ORDER BY v.value)
           WHEN 'p99' THEN percentile_disc(0.99) WITHIN GROUP (ORDER BY v.value)
       END AS value
FROM rules AS r
LEFT JOIN vals AS v ON v.rule_id = r.id
GROUP BY r.id, r.metric_id, r.aggregation, r.window_seconds;

-- name: alert_rules_for_evaluation
-- Locked for the pass: state changes and incidents of one rule never interleave.
SELECT r.id, r.name, r.metric_name, r.condition_operator::text AS operator, r.threshold,
       r.aggregation::text AS aggregation,
       r.recovery_threshold, r.duration_seconds, r.severity::text AS severity,
       r.no_data::text AS no_data,
       coalesce(s.state::text, 'ok') AS state, coalesce(s.since, now()) AS since
FROM analytics.alert_rules AS r
LEFT JOIN analytics.alert_rule_state AS s ON s.rule_id = r.id
WHERE r.enabled
ORDER BY r.id
FOR UPDATE OF r;

-- name: alert_state_upsert
INSERT INTO analytics.alert_rule_state (rule_id, state, since, last_value, last_evaluated_at)
VALUES (%(rule)s, %(state)s::analytics.alert_state, %(since)s, %(value)s, %(now)s)
ON CONFLICT (rule_id) DO UPDATE SET
    state = excluded.state, since = excluded.since, last_value = excluded.last_value,
    last_evaluated_at = excluded.last_evaluated_at;

-- name: incident_open
-- At most one open incident per rule (a partial unique index): if one is open already (the
-- rule was firing, then its state was lost), it is updated instead of opening a second.
INSERT INTO analytics.incidents (rule_id, rule_name, severity, metric_name, metric_value,
                                 threshold, last_value)
VALUES (%(rule)s, %(name)s, %(severity)s::analytics.alert_severity, %(metric)s, %(value)s,
        %(threshold)s, %(value)s)
ON CONFLICT (rule_id) WHERE status IN ('open', 'acknowledged')
DO UPDATE SET last_value = excluded.last_value, updated_at = now()
RETURNING id, (xmax = 0) AS opened;

-- name: incident_update_value
UPDATE analytics.incidents SET last_value = %(value)s, updated_at = now()
WHERE rule_id = %(rule)s AND status IN ('open', 'acknowledged');

-- name: incident_recover
UPDATE analytics.incidents
SET status = 'resolved', resolved_at = now(), resolution_note = 'recovered', updated_at = now(),
    last_value = %(value)s
WHERE rule_id = %(rule)s AND status IN ('open', 'acknowledged')
RETURNING id;

-- name: incident_event
INSERT INTO analytics.incident_events (incident_id, kind, note, value)
VALUES (%(incident)s, %(kind)s, %(note)s, %(value)s);

-- name: rule_triggered
UPDATE analytics.alert_rules
SET trigger_count = trigger_count + 1, last_triggered_at = now()
WHERE id = %(rule)s;

-- name: notifications_enqueue
-- One notification per enabled channel of the rule, in the transaction of the incident change
-- it announces; a silence in force makes them 'suppressed' (kept, never sent).
INSERT INTO analytics.notifications (incident_id, channel_id, kind, sequence, status,
                                     created_at)
SELECT %(incident)s, c.id, %(kind)s, %(sequence)s,
       CASE WHEN analytics.silenced(r.id, %(now)s::timestamptz) THEN 'suppressed'
            ELSE 'pending' END,
       %(now)s::timestamptz
FROM analytics.alert_rules AS r
JOIN analytics.alert_channels AS c ON c.id = ANY (r.channels)
WHERE r.id = %(rule)s AND c.enabled
ON CONFLICT (incident_id, channel_id, kind, sequence) DO NOTHING;

-- name: notifications_last
-- When an open, unacknowledged incident last notified, and its last repeat's number.
SELECT i.id AS incident, max(n.created_at) AS last_at,
       coalesce(max(n.sequence) FILTER (WHERE n.kind = 'repeat'), 0) AS repeats
FROM analytics.incidents AS i
LEFT JOIN analytics.notifications AS n ON n.incident_id = i.id
WHERE i.rule_id = %(rule)s AND i.status = 'open'
GROUP BY i.id;

-- name: notification_claim
-- The next notification due, locked so no other deliverer takes it meanwhile.
SELECT n.id, n.kind, n.attempts, c.type::text AS channel_type, c.name AS channel_name,
       c.config, i.id AS incident_id, i.rule_id, i.rule_name, i.severity::text AS severity,
       i.status::text AS status, i.metric_name, i.metric_value, i.threshold, i.last_value,
       i.opened_at, i.resolved_at,
       coalesce(r.condition_operator::text, CASE WHEN i.service_id IS NOT NULL THEN 'gte' END)
           AS operator
FROM analytics.notifications AS n
JOIN analytics.alert_channels AS c ON c.id = n.channel_id
JOIN analytics.incidents AS i ON i.id = n.incident_id
LEFT JOIN analytics.alert_rules AS r ON r.id = i.rule_id
WHERE n.status = 'pending' AND n.next_attempt_at <= now()
  -- In order per incident and channel: a resolution never overtakes its firing in backoff.
  AND NOT EXISTS (
      SELECT 1 FROM analytics.notifications AS earlier
      WHERE earlier.incident_id = n.incident_id AND earlier.channel_id = n.channel_id
        AND earlier.status = 'pending' AND earlier.id < n.id)
ORDER BY n.id
LIMIT 1
FOR UPDATE OF n SKIP LOCKED;

-- name: notification_attempt
INSERT INTO analytics.notification_attempts (notification_id, ok, detail)
VALUES (%(id)s, %(ok)s, %(detail)s);

-- name: notification_sent
UPDATE analytics.notifications
SET status = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = %(id)s;

-- name: notification_retry
UPDATE analytics.notifications
SET attempts = attempts + 1, last_error = %(error)s,
    status = CASE WHEN attempts + 1 >= %(max)s THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + %(delay)s::interval
WHERE id = %(id)s;

-- name: service_builtin
-- The service checks itself out of the box: its database, and its API where one is known.
INSERT INTO analytics.services (name, service_type, check_spec, builtin)
VALUES (%(name)s, %(type)s::analytics.service_type, %(spec)s::jsonb, true)
ON CONFLICT (name) DO NOTHING;

-- name: health_check_postgres
-- A `postgres` health check (jobs/health.py, run by asyncpg): the database answers a query.
SELECT 1;

-- name: services_to_check
SELECT s.id, s.name, s.check_spec, s.timeout_ms, s.degraded_ms
FROM analytics.services AS s
LEFT JOIN analytics.service_state AS st ON st.service_id = s.id
WHERE s.enabled
  AND (NOT %(only_due)s OR st.last_checked IS NULL
       OR st.last_checked <= now() - make_interval(secs => s.interval_seconds))
ORDER BY s.id;

-- name: service_record
-- Stores a result and returns the failures in a row it makes.
WITH stored AS (
    INSERT INTO analytics.health_checks (time, service_id, status, response_time_ms, error)
    VALUES (now(), %(service)s, %(status)s::analytics.health_status, %(ms)s, %(error)s)
)
INSERT INTO analytics.service_state AS st (service_id, status, consecutive_failures,
                                           last_checked, response_time_ms, error)
VALUES (%(service)s, %(status)s::analytics.health_status,
        CASE WHEN %(status)s::text = 'unhealthy' THEN 1 ELSE 0 END, now(), %(ms)s, %(error)s)
ON CONFLICT (service_id) DO UPDATE SET
    status = excluded.status,
    consecutive_failures = CASE WHEN excluded.status = 'unhealthy'
                                THEN st.consecutive_failures + 1 ELSE 0 END,
    last_checked = excluded.last_checked,
    response_time_ms = excluded.response_time_ms,
    error = excluded.error
RETURNING consecutive_failures;

-- name: service_incident_open
-- At most one open incident per service (a partial unique index); none back: one is open.
INSERT INTO analytics.incidents (service_id, rule_name, severity, metric_name, metric_value,
                                 threshold, last_value)
VALUES (%(service)s, 'service ' || %(name)s::text || ' unhealthy', 'critical',
        'health:' || %(name)s::text, %(failures)s, %(threshold)s, %(failures)s)
ON CONFLICT (service_id) WHERE status IN ('open', 'acknowledged') DO NOTHING
RETURNING id;

-- name: service_incident_recover
UPDATE analytics.incidents
SET status = 'resolved', resolved_at = now(), resolution_note = 'recovered', updated_at = now()
WHERE service_id = %(service)s AND status IN ('open', 'acknowledged')
RETURNING id;

-- name: service_notifications_enqueue
INSERT INTO analytics.notifications (incident_id, channel_id, kind, status)
SELECT %(incident)s, c.id, %(kind)s, 'pending'
FROM analytics.services AS s
JOIN analytics.alert_channels AS c ON c.id = ANY (s.channels)
WHERE s.id = %(service)s AND c.enabled
ON CONFLICT (incident_id, channel_id, kind, sequence) DO NOTHING;

-- name: event_invalidations_read
SELECT id, hour, totals, states FROM _analytics.event_invalidations ORDER BY id LIMIT %(limit)s;

-- name: event_invalidations_delete
DELETE FROM _analytics.event_invalidations WHERE id = ANY (%(ids)s::bigint[]);

-- name: tracked_periods_dirty
-- Marks dirty, for each scheduled (kind, type) pair (%(kinds)s[i], %(types)s[i]), the period
-- containing each of %(hours)s.
INSERT INTO analytics.tracked_periods AS p (kind, period_type, period_start, period_end, dirty)
SELECT DISTINCT s.kind, s.period_type, analytics.period_start(s.period_type, h.hour),
       analytics.period_end(s.period_type, h.hour), true
FROM unnest(%(hours)s::timestamptz[]) AS h (hour)
CROSS JOIN unnest(%(kinds)s::text[], %(types)s::text[]) AS s (kind, period_type)
ON CONFLICT (kind, period_type, period_start) DO UPDATE SET dirty = true WHERE NOT p.dirty;

-- name: tracked_periods_redirty
-- Marks dirty whatever else was tracked and depends on one of %(hours)s: periods containing it
-- (say, users per hour materialised through POST /batch-track), the platform period right after
-- it (churn), and with %(totals)s / %(states)s every later platform / agent period.
UPDATE analytics.tracked_periods p SET dirty = true
WHERE NOT p.dirty
  AND EXISTS (
      SELECT 1
      FROM unnest(%(hours)s::timestamptz[], %(totals)s::boolean[], %(states)s::boolean[])
          AS h (hour, totals, states)
      WHERE (h.hour >= p.period_start AND h.hour < p.period_end)
         OR (p.kind = 'platform' AND p.period_start = analytics.period_end(p.period_type, h.hour))
         OR (p.kind = 'platform' AND h.totals AND h.hour < p.period_end)
         OR (p.kind = 'agent' AND h.states AND h.hour < p.period_end));

-- name: tracked_periods_due
-- Dirty periods closed at least %(grace)s ago, oldest first (coarse types last, so a day is
-- tracked after its hours).
SELECT kind, period_type, period_start, period_end
FROM analytics.tracked_periods
WHERE dirty AND period_end <= now() - %(grace)s::interval
ORDER BY period_start, period_end - period_start, kind
LIMIT %(limit)s;

-- name: tracked_period_clean
INSERT INTO analytics.tracked_periods AS p (kind, period_type, period_start, period_end, dirty,
                                            tracked_at)
VALUES (%(kind)s, %(period_type)s, %(start)s, %(end)s, false, now())
ON CONFLICT (kind, period_type, period_start)
    DO UPDATE SET dirty = false, tracked_at = now();

-- name: api_key_create
INSERT INTO analytics.api_keys (name, prefix, key_sha256, scopes)
VALUES (%(name)s, %(prefix)s, %(sha)s, %(scopes)s)
RETURNING id, name, prefix, scopes, created_at, revoked_at;

-- name: api_keys_list
SELECT id, name, prefix, scopes, created_at, revoked_at
FROM analytics.api_keys
ORDER BY id;

-- name: api_key_revoke
-- By id or by name (the live key of that name); no row back: no such live key.
UPDATE analytics.api_keys SET revoked_at = now()
WHERE revoked_at IS NULL
  AND CASE WHEN %(key)s ~ '^[0-9]{1,9}$' THEN id = %(key)s::integer ELSE name = %(key)s END
RETURNING id, name, prefix, scopes, created_at, revoked_at;

-- name: entities_seen_refresh
-- analytics.users_seen and agents_seen recomputed from the stored events; the number of
-- entities added, changed or removed (the periods they move are logged for the track job).
SELECT analytics.refresh_entities_seen();

-- name: tier_watermarks
-- Where the hourly and daily tiers end (what lies below is folded), and the database's clock.
SELECT max(mark) FILTER (WHERE tier = '1h') AS hours,
       max(mark) FILTER (WHERE tier = '1d') AS days,
       now() AS now
FROM _analytics.tier_watermarks;

-- name: tier_watermark_move
UPDATE _analytics.tier_watermarks SET mark = %(mark)s WHERE tier = %(tier)s;

-- name: tier_minutes_from
-- A minute tier's horizon moves on (never back): from the next step on, minutes before it go
-- only to the hourly and daily tiers. Whole minutes, the first at or after %(horizon)s.
UPDATE _analytics.tier_watermarks
SET mark = greatest(mark, time_bucket(INTERVAL '1 minute', %(horizon)s::timestamptz - INTERVAL '1 microsecond')
                          + INTERVAL '1 minute')
WHERE tier = %(tier)s
RETURNING mark;

-- name: tier_rebuild
-- See _analytics.rebuild_tiers (0015): run in a REPEATABLE READ transaction holding the
-- compactor's lock.
SELECT _analytics.rebuild_tiers(%(start)s, %(end)s);

-- name: transaction_repeatable_read
-- The first statement of a rebuild's transaction (jobs/compact.py): tier_rebuild reads the
-- deltas and tier rows of one snapshot throughout.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;

-- name: minute_tier_cutoffs
-- What retention may drop of each minute tier: chunks older than its retention, but never a
-- minute queries may still read (from the tier's horizon mark on) nor one of an hour not
-- folded yet (the fold reads it).
SELECT least(now() - %(series)s::interval,
             max(mark) FILTER (WHERE tier = 'series_1m'),
             max(mark) FILTER (WHERE tier = '1h')) AS series,
       least(now() - %(metric)s::interval,
             max(mark) FILTER (WHERE tier = 'metric_1m'),
             max(mark) FILTER (WHERE tier = '1h')) AS metric
FROM _analytics.tier_watermarks;

-- name: compression_policy
-- The compression policy of an analytics hypertable (Community edition): compress_after, the
-- job and its interval; no row without one.
SELECT (config ->> 'compress_after')::interval AS compress_after, job_id, schedule_interval
FROM timescaledb_information.jobs
WHERE proc_name = 'policy_compression' AND hypertable_schema = 'analytics'
  AND hypertable_name = %(relation)s;

-- name: compression_policy_replace
-- The raw events' compression policy, compressing chunks older than %(after)s.
SELECT remove_compression_policy('analytics.metric_event_store', if_exists => true),
       add_compression_policy('analytics.metric_event_store',
                              compress_after => %(after)s::interval);

-- name: compression_stats
-- Chunks of a hypertable, those compressed, and the bytes of the latter before and after.
SELECT total_chunks, number_compressed_chunks, before_compression_total_bytes,
       after_compression_total_bytes
FROM hypertable_compression_stats(%(relation)s::regclass);

-- name: database_now
-- The database's clock, the one job_runs and tracked_periods are stamped with: an alert pass's
-- moment, what batch tracking takes for closed.
SELECT now() AS now;

-- name: advisory_lock_try
-- A session advisory lock on %(key)s (a bigint: a job's lock_key, the compactor's fixed key),
-- taken without waiting: true when taken, false when another session holds it. Released by
-- advisory_unlock, or when the session ends.
SELECT pg_try_advisory_lock(%(key)s);

-- name: advisory_lock
-- A session advisory lock, waiting for whoever holds it (a manual run behind a scheduled one,
-- a rebuild behind a compactor round, a migration runner behind another).
SELECT pg_advisory_lock(%(key)s);

-- name: advisory_unlock
-- A session advisory lock released early, letting a waiter go on.
SELECT pg_advisory_unlock(%(key)s);

-- name: advisory_xact_lock
-- A transaction-scoped advisory lock, held until the transaction ends: the alert evaluation's
-- (alert passes and health incidents never interleave with each other nor with a manual
-- resolve, which takes it with evaluation_lock, its asyncpg twin) and tracking's.
SELECT pg_advisory_xact_lock(%(key)s);
