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

-- name: series_counts
-- Series per metric, for the cardinality guard; only for metrics gaining series in a batch.
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

-- name: record_invalidations
INSERT INTO _analytics.rollup_invalidations (bucket)
SELECT unnest($1::timestamptz[]);

-- name: record_event_invalidations
-- The hours a batch of platform events touched, for the track job. Any hour but the current
-- one (by the database's clock) gets its own row, committed with its events. The current hour
-- is listed once: a writer that finds it listed may commit after the track job consumed the
-- row, but the hour's periods are tracked only TRACK_GRACE after they close, long after.
-- $2 / $3: the batch has events later periods depend on (totals; agent states).
INSERT INTO _analytics.event_invalidations (hour, totals, states)
SELECT h, $2, $3 FROM unnest($1::timestamptz[]) AS h
WHERE h <> date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
   OR NOT EXISTS (SELECT 1 FROM _analytics.event_invalidations i WHERE i.hour = h);
