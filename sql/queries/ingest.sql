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
