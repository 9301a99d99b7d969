-- Notifications: channels, an outbox of what to send, and every delivery attempt; silences.

CREATE TYPE analytics.channel_type AS ENUM ('email', 'slack', 'webhook');

CREATE TABLE analytics.alert_channels (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    type       analytics.channel_type NOT NULL,
    config     jsonb NOT NULL,  -- email: {"to": [...]}; slack: {"url"}; webhook: {"url", "secret"}
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE analytics.alert_rules ADD COLUMN channels integer[] NOT NULL DEFAULT '{}';

-- The outbox. A row is written in the same transaction as the incident change it announces,
-- once per channel (the unique key), so an evaluation that commits has its notifications and
-- one that rolls back has none. Delivery happens later, outside that transaction.
CREATE TABLE analytics.notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id     bigint NOT NULL REFERENCES analytics.incidents (id) ON DELETE CASCADE,
    channel_id      integer NOT NULL REFERENCES analytics.alert_channels (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('firing', 'repeat', 'resolved')),
    sequence        integer NOT NULL DEFAULT 0,  -- the n-th repeat
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed', 'suppressed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    last_error      text,
    UNIQUE (incident_id, channel_id, kind, sequence)
);

CREATE INDEX notifications_due_idx ON analytics.notifications (next_attempt_at)
    WHERE status = 'pending';

-- Every attempt to deliver, successful or not: the delivery log of an incident.
CREATE TABLE analytics.notification_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES analytics.notifications (id) ON DELETE CASCADE,
    at              timestamptz NOT NULL DEFAULT now(),
    ok              boolean NOT NULL,
    detail          text
);

CREATE INDEX notification_attempts_notification_idx
    ON analytics.notification_attempts (notification_id, at);

-- Silences: by rule, or by matchers on the rule's metric and tag filters, for a time range.
CREATE TABLE analytics.silences (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id    integer REFERENCES analytics.alert_rules (id) ON DELETE CASCADE,
    matchers   jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"metric_name": ..., "<tag>": ...}
    starts_at  timestamptz NOT NULL DEFAULT now(),
    ends_at    timestamptz NOT NULL,
    created_by text NOT NULL,
    comment    text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK (rule_id IS NOT NULL OR matchers <> '{}'::jsonb)
);

-- Whether a silence covers a rule at a moment: one naming the rule, or whose matchers all
-- match it (metric_name against the rule's metric, any other key against its tag filters).
CREATE FUNCTION analytics.silenced(rule integer, at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1
        FROM analytics.silences AS s
        JOIN analytics.alert_rules AS r ON r.id = rule
        WHERE s.starts_at <= at AND at < s.ends_at
          AND (s.rule_id = r.id
               OR (s.rule_id IS NULL AND NOT EXISTS (
                   SELECT 1 FROM jsonb_each_text(s.matchers) AS m (key, value)
                   WHERE NOT CASE
                       WHEN m.key = 'metric_name' THEN r.metric_name = m.value
                       ELSE coalesce(r.tags -> m.key ? m.value, false)
                   END)))
    )
$$;
