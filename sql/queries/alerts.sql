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
       r.created_at, r.updated_at,
       coalesce(s.state::text, 'ok') AS state, s.since AS state_since, s.last_value,
       s.last_evaluated_at
FROM analytics.alert_rules AS r
LEFT JOIN analytics.alert_rule_state AS s ON s.rule_id = r.id
WHERE $1::integer IS NULL OR r.id = $1
ORDER BY r.id;

-- name: incidents_select
-- Incidents by status (null: open and acknowledged), severity and opening time, newest first.
SELECT id, rule_id, rule_name, severity::text AS severity, status::text AS status,
       metric_name, metric_value, threshold, last_value, opened_at, acknowledged_at,
       acknowledged_by, resolved_at, resolved_by, resolution_note, updated_at
FROM analytics.incidents
WHERE ($1::text IS NULL AND status IN ('open', 'acknowledged') OR status::text = $1)
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
    RETURNING id, rule_id
), reset AS (
    UPDATE analytics.alert_rule_state AS s SET state = 'ok', since = now()
    FROM resolved WHERE s.rule_id = resolved.rule_id
)
SELECT id FROM resolved;

-- name: incident_event_insert
INSERT INTO analytics.incident_events (incident_id, kind, actor, note, value)
VALUES ($1, $2, $3, $4, $5);

-- name: incident_status
SELECT status::text AS status FROM analytics.incidents WHERE id = $1;
