-- Service health checks and SLA tracking.

CREATE TYPE analytics.service_type AS ENUM ('api', 'database', 'cache', 'external');
CREATE TYPE analytics.health_status AS ENUM ('healthy', 'degraded', 'unhealthy');

CREATE TABLE analytics.services (
    id               integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    service_type     analytics.service_type NOT NULL,
    check_spec       jsonb NOT NULL,  -- {"kind": "http" | "tcp" | "postgres" | "redis" | "custom", ...}
    interval_seconds integer NOT NULL DEFAULT 60 CHECK (interval_seconds > 0),
    timeout_ms       integer NOT NULL DEFAULT 2000 CHECK (timeout_ms > 0),
    degraded_ms      integer NOT NULL DEFAULT 500 CHECK (degraded_ms > 0),
    sla_target       double precision NOT NULL DEFAULT 99.9
                     CHECK (sla_target > 0 AND sla_target <= 100),
    channels         integer[] NOT NULL DEFAULT '{}',
    enabled          boolean NOT NULL DEFAULT true,
    builtin          boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Every check result. A status holds from its check until the next one, or for at most two
-- intervals: past that the service is 'unknown' (see service_sla).
CREATE TABLE analytics.health_checks (
    time             timestamptz NOT NULL,
    service_id       integer NOT NULL,
    status           analytics.health_status NOT NULL,
    response_time_ms double precision,
    error            text
);

SELECT create_hypertable('analytics.health_checks', by_range('time', INTERVAL '7 days'),
                         create_default_indexes => false);
CREATE INDEX health_checks_service_time_idx ON analytics.health_checks (service_id, time DESC);

-- Where each service stands: its latest result and how many failures in a row.
CREATE TABLE analytics.service_state (
    service_id           integer PRIMARY KEY REFERENCES analytics.services (id) ON DELETE CASCADE,
    status               analytics.health_status NOT NULL,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_checked         timestamptz NOT NULL,
    response_time_ms     double precision,
    error                text
);

-- A service's incidents go through the alerting machinery: same table, lifecycle, channels.
ALTER TABLE analytics.incidents ADD COLUMN service_id integer
    REFERENCES analytics.services (id) ON DELETE SET NULL;
CREATE UNIQUE INDEX incidents_one_open_per_service ON analytics.incidents (service_id)
    WHERE status IN ('open', 'acknowledged');
