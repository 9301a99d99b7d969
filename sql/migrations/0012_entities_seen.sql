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

-- Platform periods tracked before counted only signed-up users and registered agents: their
-- four entity totals are recomputed here, as platform_figures now defines them (users_total,
-- agents_total: first seen before the period's end; users_new, agents_new: first seen in it),
-- and the periods stay clean. (Marking them dirty instead left every tracked period to be read
-- from raw events until the track job, 30 s a run, had re-tracked them all: hours on a long
-- history.) One sorted pass per table: each period boundary among the first_seen times, the
-- count of those before it; only rows whose figures change are written.
WITH bounds AS (
    SELECT m.period_start AS at FROM analytics.platform_metrics m
    UNION
    SELECT m.period_end FROM analytics.platform_metrics m
), users_before AS (
    SELECT x.at, x.seen FROM (
        SELECT b.at, b.bound,
               count(*) FILTER (WHERE NOT b.bound)
                   OVER (ORDER BY b.at, b.bound DESC ROWS UNBOUNDED PRECEDING) AS seen
        FROM (SELECT d.at, true AS bound FROM bounds d
              UNION ALL
              SELECT s.first_seen, false FROM analytics.users_seen s) b
    ) x WHERE x.bound
), agents_before AS (
    SELECT x.at, x.seen FROM (
        SELECT b.at, b.bound,
               count(*) FILTER (WHERE NOT b.bound)
                   OVER (ORDER BY b.at, b.bound DESC ROWS UNBOUNDED PRECEDING) AS seen
        FROM (SELECT d.at, true AS bound FROM bounds d
              UNION ALL
              SELECT s.first_seen, false FROM analytics.agents_seen s) b
    ) x WHERE x.bound
), figures AS (
    SELECT m.period_type, m.period_start,
           ue.seen AS users_total, ue.seen - us.seen AS users_new,
           ae.seen AS agents_total, ae.seen - ast.seen AS agents_new
    FROM analytics.platform_metrics m
    JOIN users_before ue ON ue.at = m.period_end
    JOIN users_before us ON us.at = m.period_start
    JOIN agents_before ae ON ae.at = m.period_end
    JOIN agents_before ast ON ast.at = m.period_start
)
UPDATE analytics.platform_metrics t
SET users_total = f.users_total, users_new = f.users_new,
    agents_total = f.agents_total, agents_new = f.agents_new
FROM figures f
WHERE t.period_type = f.period_type AND t.period_start = f.period_start
  AND (t.users_total, t.users_new, t.agents_total, t.agents_new)
      IS DISTINCT FROM (f.users_total, f.users_new, f.agents_total, f.agents_new);

-- Totals no longer read signups and registrations from the events. Last, so that the ACCESS
-- EXCLUSIVE lock on platform_events (and its chunks) is held for no longer than the commit:
-- ingest and reads wait only for the drop itself (and for queries already running on the
-- table when it asks for the lock).
DROP INDEX analytics.platform_events_signup_idx;
DROP INDEX analytics.platform_events_registered_idx;
