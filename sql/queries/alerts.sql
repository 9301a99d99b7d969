-- Statements of the alerting API (alerts/). Parameters are asyncpg's $1, $2, ...

-- name: rule_insert
INSERT INTO analytics.alert_rules (
    name, metric_name, tags, aggregation, window_seconds, condition_operator, threshold,
    recovery_threshold, duration_seconds, severity, description, no_data, enabled)
VALUES ($1, $2, $3::jsonb, $4::text::analytics.alert_aggregation, $5,
        $6::text::analytics.alert_operator, $7, $8, $9, $10::text::analytics.alert_severity, $11,
        $12::text::analytics.alert_no_data, $13)
RETURNING id;

-- name: rule_update
UPDATE analytics.alert_rules SET
    name = $2, metric_name = $3, tags = $4::jsonb,
    aggregation = $5::text::analytics.alert_aggregation, window_seconds = $6,
    condition_operator = $7::text::analytics.alert_operator, threshold = $8,
    recovery_threshold = $9, duration_seconds = $10,
    severity = $11::text::analytics.alert_severity, description = $12,
    no_data = $13::text::analytics.alert_no_data, enabled = $14, updated_at = now()
WHERE id = $1
RETURNING id;

-- name: rule_delete
DELETE FROM analytics.alert_rules WHERE id = $1 RETURNING id;

-- name: rules_select
-- Every rule (or one, $1) with where it stands.
SELECT r.id, r.name, r.metric_name, r.tags::text AS tags, r.aggregation::text AS aggregation,
       r.window_seconds, r.condition_operator::text AS condition_operator, r.threshold,
       r.recovery_threshold, r.duration_seconds, r.severity::text AS severity, r.description,
       r.no_data::text AS no_data, r.enabled, r.trigger_count, r.last_triggered_at,
       r.created_at, r.updated_at, r.channels,
       coalesce(s.state::text, 'ok') AS state, s.since AS state_since, s.last_value,
       s.last_evaluated_at
FROM analytics.alert_rules AS r
LEFT JOIN analytics.alert_rule_state AS s ON s.rule_id = r.id
WHERE $1::integer IS NULL OR r.id = $1
ORDER BY r.id;

-- name: incidents_select
-- Incidents by status (null: open and acknowledged; any status when one id, $4, is asked for),
-- severity and opening time, newest first.
SELECT id, rule_id, rule_name, severity::text AS severity, status::text AS status,
       metric_name, metric_value, threshold, last_value, opened_at, acknowledged_at,
       acknowledged_by, resolved_at, resolved_by, resolution_note, updated_at,
       status <> 'resolved' AND coalesce(analytics.silenced(rule_id, now()), false) AS silenced
FROM analytics.incidents
WHERE ($1::text IS NULL AND ($4::bigint IS NOT NULL OR status IN ('open', 'acknowledged'))
       OR status::text = $1)
  AND ($2::text IS NULL OR severity::text = $2)
  AND ($3::timestamptz IS NULL OR opened_at >= $3)
  AND ($4::bigint IS NULL OR id = $4)
ORDER BY opened_at DESC, id DESC
LIMIT $5;

-- name: incident_timeline
SELECT at, kind, actor, note, value
FROM analytics.incident_events WHERE incident_id = $1 ORDER BY at, id;

-- name: incident_acknowledge
-- Only an open incident can be acknowledged; no row back means it is not open (409).
UPDATE analytics.incidents
SET status = 'acknowledged', acknowledged_at = now(), acknowledged_by = $2, updated_at = now()
WHERE id = $1 AND status = 'open'
RETURNING id;

-- name: incident_resolve
-- An open or acknowledged incident; the rule starts over from ok, so that a condition that
-- persists opens a new incident after its duration instead of being silently ongoing.
WITH resolved AS (
    UPDATE analytics.incidents
    SET status = 'resolved', resolved_at = now(), resolved_by = $2, resolution_note = $3,
        updated_at = now()
    WHERE id = $1 AND status IN ('open', 'acknowledged')
    RETURNING id, rule_id, service_id
), reset AS (
    UPDATE analytics.alert_rule_state AS s SET state = 'ok', since = now()
    FROM resolved WHERE s.rule_id = resolved.rule_id
), reset_service AS (
    -- A service starts counting failures again, so the next failure does not page at once.
    UPDATE analytics.service_state AS s SET consecutive_failures = 0
    FROM resolved WHERE s.service_id = resolved.service_id
), notify_service AS (
    INSERT INTO analytics.notifications (incident_id, channel_id, kind, status)
    SELECT resolved.id, c.id, 'resolved', 'pending'
    FROM resolved
    JOIN analytics.services AS s ON s.id = resolved.service_id
    JOIN analytics.alert_channels AS c ON c.id = ANY (s.channels)
    WHERE c.enabled
    ON CONFLICT (incident_id, channel_id, kind, sequence) DO NOTHING
), notify AS (
    -- The rule's channels hear of the resolution, as with a recovery (unless silenced).
    INSERT INTO analytics.notifications (incident_id, channel_id, kind, status)
    SELECT resolved.id, c.id, 'resolved',
           CASE WHEN analytics.silenced(r.id, now()) THEN 'suppressed' ELSE 'pending' END
    FROM resolved
    JOIN analytics.alert_rules AS r ON r.id = resolved.rule_id
    JOIN analytics.alert_channels AS c ON c.id = ANY (r.channels)
    WHERE c.enabled
    ON CONFLICT (incident_id, channel_id, kind, sequence) DO NOTHING
)
SELECT id FROM resolved;

-- name: incident_event_insert
INSERT INTO analytics.incident_events (incident_id, kind, actor, note, value)
VALUES ($1, $2, $3, $4, $5);

-- name: incident_status
SELECT status::text AS status FROM analytics.incidents WHERE id = $1;

-- name: channel_insert
INSERT INTO analytics.alert_channels (name, type, config, enabled)
VALUES ($1, $2::text::analytics.channel_type, $3::jsonb, $4)
RETURNING id;

-- name: channel_update
UPDATE analytics.alert_channels
SET name = $2, type = $3::text::analytics.channel_type, config = $4::jsonb, enabled = $5,
    updated_at = now()
WHERE id = $1
RETURNING id;

-- name: channel_delete
-- Rules and services stop naming the channel, so that editing them does not fail on it.
WITH rules AS (
    UPDATE analytics.alert_rules SET channels = array_remove(channels, $1)
    WHERE $1 = ANY (channels)
), services AS (
    UPDATE analytics.services SET channels = array_remove(channels, $1)
    WHERE $1 = ANY (channels)
)
DELETE FROM analytics.alert_channels WHERE id = $1 RETURNING id;

-- name: channels_select
SELECT id, name, type::text AS type, config::text AS config, enabled, created_at, updated_at
FROM analytics.alert_channels
WHERE $1::integer IS NULL OR id = $1
ORDER BY id;

-- name: channels_existing
SELECT id FROM analytics.alert_channels WHERE id = ANY ($1::integer[]);

-- name: rule_set_channels
UPDATE analytics.alert_rules SET channels = $2::integer[] WHERE id = $1;

-- name: silence_insert
INSERT INTO analytics.silences (rule_id, matchers, starts_at, ends_at, created_by, comment)
VALUES ($1, $2::jsonb, $3, $4, $5, $6)
RETURNING id;

-- name: silences_select
-- Silences in force (or all of them, $1), newest first.
SELECT id, rule_id, matchers::text AS matchers, starts_at, ends_at, created_by, comment,
       created_at, (starts_at <= now() AND now() < ends_at) AS active
FROM analytics.silences
WHERE $1::boolean OR now() < ends_at
ORDER BY created_at DESC, id DESC;

-- name: silence_delete
DELETE FROM analytics.silences WHERE id = $1 RETURNING id;

-- name: rule_exists
SELECT 1 FROM analytics.alert_rules WHERE id = $1;

-- name: incident_deliveries
-- The delivery log of an incident: every notification and each attempt to send it.
SELECT n.id, n.kind, n.sequence, n.status, n.attempts, n.created_at, n.sent_at, n.last_error,
       c.name AS channel, c.type::text AS channel_type,
       coalesce((SELECT jsonb_agg(jsonb_build_object('at', a.at, 'ok', a.ok, 'detail', a.detail)
                                  ORDER BY a.at)
                 FROM analytics.notification_attempts AS a WHERE a.notification_id = n.id),
                '[]'::jsonb)::text AS attempts_log
FROM analytics.notifications AS n
JOIN analytics.alert_channels AS c ON c.id = n.channel_id
WHERE n.incident_id = $1
ORDER BY n.id;


-- name: evaluation_lock
-- The alert evaluator's transaction lock (alerts.EVALUATION_LOCK): taken by a manual
-- resolve so that a pass in flight cannot write its stale state over the resolution.
SELECT pg_advisory_xact_lock($1);

-- name: rule_close_incidents
-- A rule disabled or deleted closes its open incident (it would never be evaluated again).
WITH closed AS (
    UPDATE analytics.incidents
    SET status = 'resolved', resolved_at = now(), resolved_by = $2, resolution_note = $3,
        updated_at = now()
    WHERE rule_id = $1 AND status IN ('open', 'acknowledged')
    RETURNING id
), events AS (
    INSERT INTO analytics.incident_events (incident_id, kind, actor, note)
    SELECT id, 'resolved', $2, $3 FROM closed
), reset AS (
    UPDATE analytics.alert_rule_state SET state = 'ok', since = now() WHERE rule_id = $1
)
SELECT id FROM closed;

-- name: incidents_open_counts
-- Open and acknowledged incidents by severity (the dashboard).
SELECT severity::text AS severity, count(*) AS incidents
FROM analytics.incidents
WHERE status IN ('open', 'acknowledged')
GROUP BY severity;
