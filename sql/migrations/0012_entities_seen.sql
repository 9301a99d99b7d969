-- Every user and agent any platform event names, with when it was first seen (and signed up or
-- registered): the platform totals of a period are the entities first seen before its end, an
-- index range here instead of a pass over every event before the period.
--
-- Kept by the ingest transaction that stores the events (ingest/events.py): an event earlier
-- than an entity's first_seen moves it earlier, and that batch marks every later platform
-- period dirty (the `totals` flag of _analytics.event_invalidations).

CREATE TABLE analytics.users_seen (
    user_id      text PRIMARY KEY,
    first_seen   timestamptz NOT NULL,
    signed_up_at timestamptz  -- the earliest user_signup; null: none recorded
);
CREATE INDEX users_seen_first_seen_idx ON analytics.users_seen (first_seen);

CREATE TABLE analytics.agents_seen (
    agent_id      text PRIMARY KEY,
    first_seen    timestamptz NOT NULL,
    registered_at timestamptz  -- the earliest agent_registered; null: none recorded
);
CREATE INDEX agents_seen_first_seen_idx ON analytics.agents_seen (first_seen);

INSERT INTO analytics.users_seen (user_id, first_seen, signed_up_at)
SELECT user_id, min(time), min(time) FILTER (WHERE event_type = 'user_signup')
FROM analytics.platform_events
WHERE user_id IS NOT NULL
GROUP BY user_id;

INSERT INTO analytics.agents_seen (agent_id, first_seen, registered_at)
SELECT agent_id, min(time), min(time) FILTER (WHERE event_type = 'agent_registered')
FROM analytics.platform_events
WHERE agent_id IS NOT NULL
GROUP BY agent_id;

-- Totals no longer read signups and registrations from the events.
DROP INDEX analytics.platform_events_signup_idx;
DROP INDEX analytics.platform_events_registered_idx;

-- Platform periods tracked before counted only signed-up users and registered agents: track
-- them again (until then the API computes them from raw events).
UPDATE analytics.tracked_periods SET dirty = true WHERE kind = 'platform' AND NOT dirty;
