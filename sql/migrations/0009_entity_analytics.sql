-- User, agent and platform analytics materialised per UTC calendar period (batch tracking).
--
-- The figures are defined once, by the functions analytics.user_figures, agent_figures and
-- platform_figures (sql/idempotent/0200_entity_figures.sql): the API computes a period from the
-- raw events with them, and batch tracking (POST /batch-track, `python -m jobs track`, the
-- scheduled `track` job) stores their rows here. Upserts that change nothing write nothing, so
-- tracking a period twice leaves the same rows.

CREATE TABLE analytics.user_analytics (
    period_type         text NOT NULL CHECK (period_type IN ('hour', 'day', 'week', 'month')),
    period_start        timestamptz NOT NULL,
    period_end          timestamptz NOT NULL,
    user_id             text NOT NULL,
    sessions            bigint NOT NULL,
    page_views          bigint NOT NULL,
    actions             bigint NOT NULL,
    active_time_seconds double precision NOT NULL,
    contracts_created   bigint NOT NULL,
    contracts_completed bigint NOT NULL,
    contracts_cancelled bigint NOT NULL,
    credits_purchased   double precision NOT NULL,
    credits_spent       double precision NOT NULL,
    total_spent         double precision NOT NULL,
    agents_used         bigint NOT NULL,
    orchestrations_run  bigint NOT NULL,
    PRIMARY KEY (period_type, period_start, user_id)
);
SELECT create_hypertable('analytics.user_analytics', by_range('period_start', INTERVAL '30 days'));
CREATE INDEX user_analytics_user_idx
    ON analytics.user_analytics (user_id, period_type, period_start DESC);

CREATE TABLE analytics.agent_analytics (
    period_type          text NOT NULL CHECK (period_type IN ('hour', 'day', 'week', 'month')),
    period_start         timestamptz NOT NULL,
    period_end           timestamptz NOT NULL,
    agent_id             text NOT NULL,
    calls_total          bigint NOT NULL,
    calls_successful     bigint NOT NULL,
    calls_failed         bigint NOT NULL,
    success_rate         double precision,
    response_time_avg_ms double precision,
    response_time_p50_ms double precision,
    response_time_p95_ms double precision,
    response_time_p99_ms double precision,
    uptime_percentage    double precision,
    downtime_percentage  double precision,
    bids_placed          bigint NOT NULL,
    average_bid_price    double precision,
    contracts_won        bigint NOT NULL,
    contracts_completed  bigint NOT NULL,
    contracts_failed     bigint NOT NULL,
    revenue              double precision NOT NULL,
    validation_score     double precision,
    reputation_score     double precision,
    PRIMARY KEY (period_type, period_start, agent_id)
);
SELECT create_hypertable('analytics.agent_analytics', by_range('period_start', INTERVAL '30 days'));
CREATE INDEX agent_analytics_agent_idx
    ON analytics.agent_analytics (agent_id, period_type, period_start DESC);

CREATE TABLE analytics.platform_metrics (
    period_type         text NOT NULL CHECK (period_type IN ('hour', 'day', 'week', 'month')),
    period_start        timestamptz NOT NULL,
    period_end          timestamptz NOT NULL,
    users_total         bigint NOT NULL,
    users_active        bigint NOT NULL,
    users_new           bigint NOT NULL,
    users_churned       bigint NOT NULL,
    agents_total        bigint NOT NULL,
    agents_active       bigint NOT NULL,
    agents_new          bigint NOT NULL,
    contracts_total     bigint NOT NULL,
    contracts_active    bigint NOT NULL,
    contracts_completed bigint NOT NULL,
    contracts_failed    bigint NOT NULL,
    revenue             double precision NOT NULL,
    platform_fees       double precision NOT NULL,
    credits_purchased   double precision NOT NULL,
    credits_spent       double precision NOT NULL,
    response_time_avg_ms double precision,
    error_rate          double precision,
    throughput_per_s    double precision NOT NULL,
    api_calls           bigint NOT NULL,
    orchestrations      bigint NOT NULL,
    fraud_alerts        bigint NOT NULL,
    security_events     bigint NOT NULL,
    PRIMARY KEY (period_type, period_start)
);
SELECT create_hypertable('analytics.platform_metrics', by_range('period_start', INTERVAL '365 days'));

-- Platform totals (users and agents ever signed up, up to a time) read these alone.
CREATE INDEX platform_events_signup_idx ON analytics.platform_events (time) INCLUDE (user_id)
    WHERE event_type = 'user_signup';
CREATE INDEX platform_events_registered_idx ON analytics.platform_events (time)
    INCLUDE (agent_id) WHERE event_type = 'agent_registered';

-- Which periods are materialised, per kind of entity. `dirty`: events arrived in the period
-- since it was last tracked (or it was never tracked); reads then compute it from raw events.
CREATE TABLE analytics.tracked_periods (
    kind         text NOT NULL CHECK (kind IN ('user', 'agent', 'platform')),
    period_type  text NOT NULL CHECK (period_type IN ('hour', 'day', 'week', 'month')),
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    dirty        boolean NOT NULL,
    tracked_at   timestamptz,
    PRIMARY KEY (kind, period_type, period_start)
);
CREATE INDEX tracked_periods_dirty_idx ON analytics.tracked_periods (period_end) WHERE dirty;

-- Append-only, like _analytics.rollup_invalidations: the hours each committed batch of platform
-- events touched (the current hour at most once until the track job reads it). The track job
-- turns the rows its snapshot sees into dirty periods and deletes exactly those rows.
-- A period's figures also depend on earlier events: churn on the period before, platform totals
-- (`totals`: the batch had signups, registrations or contract events) and agent uptime
-- (`states`: agent_up / agent_down) on everything before. Those flags dirty later periods too.
CREATE TABLE _analytics.event_invalidations (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    hour        timestamptz NOT NULL,
    totals      boolean NOT NULL DEFAULT false,
    states      boolean NOT NULL DEFAULT false,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_invalidations_hour_idx ON _analytics.event_invalidations (hour);

-- Events stored before this migration: their hours are tracked like late events.
INSERT INTO _analytics.event_invalidations (hour, totals, states)
SELECT DISTINCT date_trunc('hour', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', true, true
FROM analytics.platform_events;
