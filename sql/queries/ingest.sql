-- Statements of the write path (ingest/). Parameters are asyncpg's $1, $2, ...

-- name: ensure_metrics
-- Registers the metrics a batch names for the first time; the first event fixes the type and
-- unit. Rows go in name order so concurrent batches take index locks in one order (no deadlock).
INSERT INTO analytics.metrics (name, metric_type, unit)
SELECT name, metric_type::analytics.metric_type, unit
FROM unnest($1::text[], $2::text[], $3::text[]) AS m (name, metric_type, unit)
ORDER BY name
ON CONFLICT (name) DO NOTHING;

-- name: metrics_by_name
-- A separate statement from ensure_metrics: under READ COMMITTED it sees rows that a concurrent
-- batch committed while ensure_metrics waited on them.
SELECT id, name, metric_type::text AS metric_type
FROM analytics.metrics
WHERE name = ANY ($1::text[]);

-- name: ensure_series
INSERT INTO analytics.series (metric_id, tags)
SELECT metric_id, tags
FROM unnest($1::integer[], $2::jsonb[]) AS s (metric_id, tags)
ORDER BY metric_id, tags
ON CONFLICT (metric_id, tags) DO NOTHING;

-- name: series_ids
-- The id of each (metric, tags) pair, by its 1-based position in the input arrays.
SELECT s.position, series.id
FROM unnest($1::integer[], $2::jsonb[]) WITH ORDINALITY AS s (metric_id, tags, position)
JOIN analytics.series ON series.metric_id = s.metric_id AND series.tags = s.tags;

-- name: lock_metrics
-- The metrics gaining series in a group commit ($1, sorted: no deadlocks), locked until it
-- ends: two commits adding series to one metric at once (Prometheus' shards, two processes)
-- count them one after the other, so together they never pass the metric's series limit.
SELECT id FROM analytics.metrics WHERE id = ANY ($1::integer[]) ORDER BY id FOR NO KEY UPDATE;

-- name: series_counts
-- Series per metric, for the cardinality guard; only for metrics gaining series in a batch,
-- once lock_metrics holds them (a statement of its own: this one then sees what the commits
-- it waited for added).
SELECT metric_id, count(*) AS series
FROM analytics.series
WHERE metric_id = ANY ($1::integer[])
GROUP BY metric_id;

-- name: claim_idempotency_keys
-- Records the keys of a group's batches; a key already there (and not expired) is not
-- returned, and its batch is answered as the duplicate it is. Sorted: no deadlocks.
INSERT INTO _analytics.idempotency_keys AS k (scope, key, body_sha256, accepted)
SELECT $1, key, sha, accepted
FROM unnest($2::text[], $3::bytea[], $4::integer[]) AS u (key, sha, accepted)
ORDER BY key
ON CONFLICT (scope, key) DO UPDATE
    SET body_sha256 = excluded.body_sha256, accepted = excluded.accepted, created_at = now()
    WHERE k.created_at < now() - $5::interval
RETURNING key;

-- name: idempotency_answers
SELECT key, body_sha256, accepted
FROM _analytics.idempotency_keys
WHERE scope = $1 AND key = ANY ($2::text[]) AND created_at >= now() - $3::interval;

-- name: release_idempotency_keys
-- Keys of batches refused inside a group commit, so that a corrected retry is stored.
DELETE FROM _analytics.idempotency_keys WHERE scope = $1 AND key = ANY ($2::text[]);

-- name: prune_idempotency_keys
DELETE FROM _analytics.idempotency_keys WHERE created_at < now() - $1::interval;


-- name: record_event_invalidations
-- What a batch of platform events changes besides its rows, in its transaction: the users
-- ($4..$6) and agents ($7..$9) it names, each once (sorted, so concurrent batches lock them in
-- one order) with its earliest time and signup / registration time (null: none), upserted into
-- users_seen / agents_seen, writing (and locking) only the rows it moves earlier; and the hours
-- it touched, for the track job. Any hour but the current one (by the database's clock) gets
-- its own row, committed with its events. The current hour is listed once: a writer that finds
-- it listed may commit after the track job consumed the row, but the hour's periods are
-- tracked only TRACK_GRACE after they close, long after.
-- `totals` (every later platform period depends on the hour): the batch has contract events
-- ($2), or an entity's first_seen moved into that hour (an entity new, or seen earlier than
-- before). $3 `states`: the batch has agent states.
WITH users AS (
    INSERT INTO analytics.users_seen AS s (user_id, first_seen, signed_up_at)
    SELECT b.user_id, b.first_seen, b.signed_up_at
    FROM unnest($4::text[], $5::timestamptz[], $6::timestamptz[]) WITH ORDINALITY
        AS b (user_id, first_seen, signed_up_at, n)
    LEFT JOIN LATERAL (
        -- An index probe per entity, whatever the table's size (as a plain join, the planner
        -- hashed the whole table for a batch of a few thousand).
        SELECT o.first_seen, o.signed_up_at FROM analytics.users_seen o
        WHERE o.user_id = b.user_id
        LIMIT 1
    ) o ON true
    WHERE o.first_seen IS NULL OR b.first_seen < o.first_seen
       OR b.signed_up_at < coalesce(o.signed_up_at, 'infinity')
    ORDER BY b.n
    ON CONFLICT (user_id) DO UPDATE
        SET first_seen = least(s.first_seen, excluded.first_seen),
            signed_up_at = least(s.signed_up_at, excluded.signed_up_at)
        WHERE s.first_seen > excluded.first_seen
           OR s.signed_up_at IS DISTINCT FROM least(s.signed_up_at, excluded.signed_up_at)
    RETURNING s.user_id, s.first_seen
), agents AS (
    INSERT INTO analytics.agents_seen AS s (agent_id, first_seen, registered_at)
    SELECT b.agent_id, b.first_seen, b.registered_at
    FROM unnest($7::text[], $8::timestamptz[], $9::timestamptz[]) WITH ORDINALITY
        AS b (agent_id, first_seen, registered_at, n)
    LEFT JOIN LATERAL (
        SELECT o.first_seen, o.registered_at FROM analytics.agents_seen o
        WHERE o.agent_id = b.agent_id
        LIMIT 1
    ) o ON true
    WHERE o.first_seen IS NULL OR b.first_seen < o.first_seen
       OR b.registered_at < coalesce(o.registered_at, 'infinity')
    ORDER BY b.n
    ON CONFLICT (agent_id) DO UPDATE
        SET first_seen = least(s.first_seen, excluded.first_seen),
            registered_at = least(s.registered_at, excluded.registered_at)
        WHERE s.first_seen > excluded.first_seen
           OR s.registered_at IS DISTINCT FROM least(s.registered_at, excluded.registered_at)
    RETURNING s.agent_id, s.first_seen
), moved AS (
    -- The row's first_seen is now this batch's time for it: it moved there (or was there, when
    -- only the signup time moved: one needless re-track at worst).
    SELECT u.first_seen FROM users u
    JOIN unnest($4::text[], $5::timestamptz[]) AS b (user_id, first_seen)
      ON b.user_id = u.user_id AND b.first_seen = u.first_seen
    UNION
    SELECT a.first_seen FROM agents a
    JOIN unnest($7::text[], $8::timestamptz[]) AS b (agent_id, first_seen)
      ON b.agent_id = a.agent_id AND b.first_seen = a.first_seen
)
INSERT INTO _analytics.event_invalidations (hour, totals, states)
SELECT h, $2 OR h IN (SELECT date_trunc('hour', m.first_seen AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                      FROM moved m),
       $3
FROM unnest($1::timestamptz[]) AS h
WHERE h <> date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
   OR NOT EXISTS (SELECT 1 FROM _analytics.event_invalidations i WHERE i.hour = h);

-- name: record_group
-- What a group commit writes besides its Idempotency-Keys and series, in one statement (one
-- round trip, and on its own an implicit transaction: all of it or nothing): the raw rows
-- $1..$6 (empty when they went by COPY, faster for a large group; value, or decimals and
-- digits: ingest/decimals.py; the running total of a counter sent as one: ingest/totals.py),
-- and the group's partial aggregates (ingest/deltas.py), per (minute, series) $7..$14 and per
-- (minute, metric) $15..$22, the sketch keys and their counts as array literals.
WITH raw AS (
    INSERT INTO analytics.metric_event_store (time, series_id, value, decimals, digits, total)
    SELECT * FROM unnest($1::timestamptz[], $2::integer[], $3::float8[], $4::smallint[],
                         $5::bigint[], $6::float8[])
), series AS (
    INSERT INTO _analytics.series_deltas (minute, series_id, count, sum, min, max, keys, counts)
    SELECT minute, owner, count, sum, min, max, keys::integer[], counts::integer[]
    FROM unnest($7::timestamptz[], $8::integer[], $9::integer[], $10::float8[], $11::float8[],
                $12::float8[], $13::text[], $14::text[])
        AS d (minute, owner, count, sum, min, max, keys, counts)
)
INSERT INTO _analytics.metric_deltas (minute, metric_id, count, sum, min, max, keys, counts)
SELECT minute, owner, count, sum, min, max, keys::integer[], counts::integer[]
FROM unnest($15::timestamptz[], $16::integer[], $17::integer[], $18::float8[], $19::float8[],
            $20::float8[], $21::text[], $22::text[])
    AS d (minute, owner, count, sum, min, max, keys, counts);

-- name: counter_totals_last
-- The newest stored sample of each series ($1), for the increase of the next running total
-- (ingest/totals.py): its time and total (null when the row is not a running total).
SELECT s.id AS series_id, last.time, last.total
FROM unnest($1::integer[]) AS s (id)
CROSS JOIN LATERAL (
    SELECT e.time, e.total
    FROM analytics.metric_event_store AS e
    WHERE e.series_id = s.id
    ORDER BY e.time DESC
    LIMIT 1
) AS last;

-- name: metrics_describe
-- A sender's metadata (remote write: help and unit per metric family) as the description and
-- unit of the metrics of the family (`x`, and the `x_total`, `x_bucket`, `x_count`, `x_sum` of
-- a counter, histogram or summary); the families matched, which need not be written again.
-- The rows are locked in id order first, as lock_metrics locks them: no deadlock with a
-- group commit adding series to several of them.
WITH d (family, unit, description) AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
), locked AS MATERIALIZED (
    SELECT m.id
    FROM analytics.metrics AS m
    WHERE m.name IN (
        SELECT d.family || s.suffix
        FROM d CROSS JOIN unnest(ARRAY['', '_total', '_bucket', '_count', '_sum']) AS s (suffix)
    )
    ORDER BY m.id
    FOR NO KEY UPDATE
)
UPDATE analytics.metrics AS m
SET unit = coalesce(d.unit, m.unit), description = coalesce(d.description, m.description)
FROM d
WHERE m.id IN (SELECT id FROM locked)
  AND m.name IN (d.family, d.family || '_total', d.family || '_bucket', d.family || '_count',
                 d.family || '_sum')
RETURNING d.family;

-- name: record_distributions
-- A group's histogram points (ingest/distributions.py), in its transaction after record_group
-- (whose deltas count their observations): time, series, count, sum, min, max, and the sketch
-- keys and their counts as array literals.
INSERT INTO analytics.distribution_store (time, series_id, count, sum, min, max, keys, counts)
SELECT time, series_id, count, sum, min, max, keys::integer[], counts::integer[]
FROM unnest($1::timestamptz[], $2::integer[], $3::bigint[], $4::float8[], $5::float8[],
            $6::float8[], $7::text[], $8::text[])
    AS d (time, series_id, count, sum, min, max, keys, counts);

-- name: histogram_state_load
-- The newest cumulative histogram point of each series ($1) that has one (ingest/totals.py).
SELECT series_id, time, point::text AS point
FROM _analytics.histogram_state
WHERE series_id = ANY ($1::integer[]);

-- name: histogram_state_save
-- The newest cumulative histogram point of each series a group moved, in its transaction.
INSERT INTO _analytics.histogram_state (series_id, time, point)
SELECT series_id, time, point::jsonb
FROM unnest($1::integer[], $2::timestamptz[], $3::text[]) AS s (series_id, time, point)
ON CONFLICT (series_id) DO UPDATE SET time = EXCLUDED.time, point = EXCLUDED.point;
