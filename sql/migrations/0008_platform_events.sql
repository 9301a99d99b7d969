-- Platform (business) events: the raw material of user, agent and platform analytics.
--
-- One narrow-ish row per event; entity ids are columns, not metric tags, so millions of users
-- do not become millions of series. The vocabulary of event_type is closed and checked at the
-- edge (ingest/events.py), and here.

CREATE TABLE analytics.platform_events (
    time        timestamptz NOT NULL,
    event_type  text NOT NULL CHECK (event_type IN (
        'user_signup', 'session_start', 'page_view', 'user_action', 'active_time',
        'contract_created', 'bid_placed', 'contract_won', 'contract_completed',
        'contract_cancelled', 'contract_failed', 'credits_purchased', 'credits_spent',
        'payment', 'agent_registered', 'agent_call', 'agent_up', 'agent_down',
        'validation_score', 'reputation_score', 'orchestration_run', 'fraud_alert',
        'security_event', 'api_call')),
    user_id     text,
    agent_id    text,
    contract_id text,
    amount      double precision,
    fee         double precision,
    duration_ms double precision,
    success     boolean,
    value       double precision,
    endpoint    text,
    method      text,
    status      integer
);

SELECT create_hypertable('analytics.platform_events', by_range('time', INTERVAL '1 day'),
                         create_default_indexes => false);

-- Per-entity questions ("this user's week", "this agent's day") read one entity's rows.
CREATE INDEX platform_events_user_idx ON analytics.platform_events (user_id, time DESC)
    WHERE user_id IS NOT NULL;
CREATE INDEX platform_events_agent_idx ON analytics.platform_events (agent_id, time DESC)
    WHERE agent_id IS NOT NULL;
-- Platform-wide figures read one event type over a period.
CREATE INDEX platform_events_type_time_idx ON analytics.platform_events (event_type, time DESC);
