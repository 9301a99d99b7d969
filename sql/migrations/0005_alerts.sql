-- Alerting: rules, their evaluation state, and incidents with their timeline.

CREATE TYPE analytics.alert_operator AS ENUM ('gt', 'lt', 'eq', 'gte', 'lte');
CREATE TYPE analytics.alert_severity AS ENUM ('info', 'warning', 'error', 'critical');
CREATE TYPE analytics.alert_aggregation AS ENUM (
    'avg', 'min', 'max', 'sum', 'count', 'p50', 'p95', 'p99', 'rate');
CREATE TYPE analytics.alert_no_data AS ENUM ('ok', 'alerting', 'keep_state');
CREATE TYPE analytics.alert_state AS ENUM ('ok', 'pending', 'firing');
CREATE TYPE analytics.incident_status AS ENUM ('open', 'acknowledged', 'resolved');

CREATE TABLE analytics.alert_rules (
    id                 integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    metric_name        text NOT NULL,
    tags               jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"key": ["value", ...]}
    aggregation        analytics.alert_aggregation NOT NULL DEFAULT 'avg',
    window_seconds     integer NOT NULL DEFAULT 60 CHECK (window_seconds > 0),
    condition_operator analytics.alert_operator NOT NULL,
    threshold          double precision NOT NULL,
    recovery_threshold double precision,
    duration_seconds   integer NOT NULL DEFAULT 0 CHECK (duration_seconds >= 0),
    severity           analytics.alert_severity NOT NULL DEFAULT 'warning',
    description        text,
    no_data            analytics.alert_no_data NOT NULL DEFAULT 'keep_state',
    enabled            boolean NOT NULL DEFAULT true,
    trigger_count      integer NOT NULL DEFAULT 0,
    last_triggered_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Where each rule stands between evaluations; it survives restarts because it lives here.
CREATE TABLE analytics.alert_rule_state (
    rule_id          integer PRIMARY KEY REFERENCES analytics.alert_rules (id) ON DELETE CASCADE,
    state            analytics.alert_state NOT NULL DEFAULT 'ok',
    since            timestamptz NOT NULL DEFAULT now(),  -- when it entered `state`
    last_value       double precision,
    last_evaluated_at timestamptz
);

CREATE TABLE analytics.incidents (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id          integer REFERENCES analytics.alert_rules (id) ON DELETE SET NULL,
    rule_name        text NOT NULL,
    severity         analytics.alert_severity NOT NULL,
    status           analytics.incident_status NOT NULL DEFAULT 'open',
    metric_name      text NOT NULL,
    metric_value     double precision,  -- the value that triggered it
    threshold        double precision NOT NULL,
    last_value       double precision,  -- the latest value while it is open
    opened_at        timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    resolved_by      text,  -- null when the rule recovered on its own
    resolution_note  text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Exactly one open (or acknowledged) incident per rule: the evaluator relies on it.
CREATE UNIQUE INDEX incidents_one_open_per_rule ON analytics.incidents (rule_id)
    WHERE status IN ('open', 'acknowledged');
CREATE INDEX incidents_status_opened_idx ON analytics.incidents (status, opened_at DESC);

-- Every change of an incident, for its timeline.
CREATE TABLE analytics.incident_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES analytics.incidents (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,  -- opened, updated, acknowledged, resolved, recovered
    actor       text,
    note        text,
    value       double precision
);

CREATE INDEX incident_events_incident_idx ON analytics.incident_events (incident_id, at);
