-- Statements of the read path (query/). Parameters are asyncpg's $1, $2, ...

-- name: metric_by_name
SELECT id, name, metric_type::text AS metric_type, unit
FROM analytics.metrics
WHERE name = $1;

-- name: metric_series
-- The series of a metric that pass the tag filters, with the value of the group_by tag.
-- $2 is {"tag": ["value", ...], ...}: every tag named must have one of its values (AND across
-- tags, OR within one). Both filters and the group key are bound values, never SQL.
SELECT s.id, s.tags ->> $3 AS grp
FROM analytics.series AS s
WHERE s.metric_id = $1
  AND NOT EXISTS (
      SELECT 1
      FROM jsonb_each($2::jsonb) AS f (tag, allowed)
      WHERE NOT coalesce(f.allowed ? (s.tags ->> f.tag), false)
  )
ORDER BY s.id;

-- name: stale_hours
-- Hours whose rollups are not (yet) exact: listed by ingest, not yet processed by the job.
SELECT DISTINCT bucket FROM _analytics.rollup_invalidations
WHERE bucket >= $1 AND bucket < $2
ORDER BY bucket;

-- name: statistics_raw
-- Exact statistics straight from raw events (exact=true): percentile_disc returns an observed
-- value, the reference the rollup percentiles are held to. $1 series, $4 their groups.
SELECT g.grp,
       count(*) AS count,
       avg(e.value) AS avg,
       sum(e.value) AS sum,
       min(e.value) AS min,
       max(e.value) AS max,
       percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY e.value) AS percentiles
FROM analytics.metric_events AS e
JOIN unnest($1::integer[], $4::text[]) AS g (series_id, grp) USING (series_id)
WHERE e.series_id = ANY ($1) AND e.time >= $2 AND e.time < $3
GROUP BY g.grp
ORDER BY g.grp;

-- name: statistics_merged
-- Statistics over [$2, $3) from three sources that never overlap:
--   raw events: the partial hours at the window's edges (before $4, from $5 on) and the stale
--               hours $6 (listed in the invalidation log, so not yet exact in the rollups);
--   hourly rollups: the hours $12, the other whole hours in [$4, $5) except those of the
--                   days in $7 (an index lookup on the rollups' primary keys);
--   daily rollups: the days $7, whole days inside the window with no stale hour.
-- Percentiles merge the sketches of all three (raw values keyed on the fly) and read the value
-- at rank ceil(p * n), as percentile_disc does, with the same float8 arithmetic. That is the
-- representative of a sketch bucket, which may lie just outside the data (one 125.5 keys to a
-- bucket whose representative is 125.598): each is clamped to the min and max of the same
-- selection, from the same rows, so a single value is its own p50, p95 and p99.
-- $1 series ids, $8 the group of each (null without group_by). $9, when not null, is the
-- metric id of a query over all of the metric's series: the per-metric rollups answer it
-- (metric_totals_*), the per-series ones are skipped (a one-time filter), and the other way
-- round. The raw part reads the same either way.
WITH groups AS (
    SELECT * FROM unnest($1::integer[], $8::text[]) AS g (series_id, grp)
), raw AS MATERIALIZED (
    -- Three plain time ranges, so that chunk exclusion and the (series_id, time) index apply
    -- to each: the window's left edge, its right edge, and the stale hours inside their
    -- bounding range [$10, $11).
    SELECT g.grp, e.value
    FROM analytics.metric_events AS e JOIN groups AS g USING (series_id)
    WHERE e.series_id = ANY ($1) AND e.time >= $2 AND e.time < $4
    UNION ALL
    SELECT g.grp, e.value
    FROM analytics.metric_events AS e JOIN groups AS g USING (series_id)
    WHERE e.series_id = ANY ($1) AND e.time >= $5 AND e.time < $3
    UNION ALL
    SELECT g.grp, e.value
    FROM analytics.metric_events AS e JOIN groups AS g USING (series_id)
    WHERE e.series_id = ANY ($1) AND e.time >= $10 AND e.time < $11
      AND time_bucket(INTERVAL '1 hour', e.time) = ANY ($6)
), hourly AS (
    SELECT g.grp, r.count, r.sum, r.min, r.max
    FROM analytics.metric_rollup_1h AS r
    JOIN groups AS g USING (series_id)
    WHERE $9::integer IS NULL AND r.series_id = ANY ($1) AND r.bucket = ANY ($12)
    UNION ALL
    SELECT NULL, r.count, r.sum, r.min, r.max
    FROM analytics.metric_totals_1h AS r
    WHERE r.metric_id = $9 AND r.bucket = ANY ($12)
), daily AS (
    SELECT g.grp, r.count, r.sum, r.min, r.max
    FROM analytics.metric_rollup_1d AS r
    JOIN groups AS g USING (series_id)
    WHERE $9::integer IS NULL AND r.series_id = ANY ($1) AND r.bucket = ANY ($7)
    UNION ALL
    SELECT NULL, r.count, r.sum, r.min, r.max
    FROM analytics.metric_totals_1d AS r
    WHERE r.metric_id = $9 AND r.bucket = ANY ($7)
), parts AS (
    SELECT grp, count(*)::numeric AS count, sum(value) AS sum, min(value) AS min,
           max(value) AS max
    FROM raw GROUP BY grp
    UNION ALL
    SELECT grp, sum(count), sum(sum), min(min), max(max) FROM hourly GROUP BY grp
    UNION ALL
    SELECT grp, sum(count), sum(sum), min(min), max(max) FROM daily GROUP BY grp
), keys AS (
    SELECT grp, analytics.sketch_key(value) AS key, count(*)::numeric AS n
    FROM raw GROUP BY 1, 2
    UNION ALL
    SELECT g.grp, s.key, sum(s.n)
    FROM analytics.metric_sketch_1h AS s
    JOIN groups AS g USING (series_id)
    WHERE $9::integer IS NULL AND s.series_id = ANY ($1) AND s.bucket = ANY ($12)
    GROUP BY 1, 2
    UNION ALL
    SELECT g.grp, s.key, sum(s.n)
    FROM analytics.metric_sketch_1d AS s
    JOIN groups AS g USING (series_id)
    WHERE $9::integer IS NULL AND s.series_id = ANY ($1) AND s.bucket = ANY ($7)
    GROUP BY 1, 2
    UNION ALL
    SELECT NULL, s.key, sum(s.n)
    FROM analytics.metric_totals_sketch_1h AS s
    WHERE s.metric_id = $9 AND s.bucket = ANY ($12)
    GROUP BY 1, 2
    UNION ALL
    SELECT NULL, s.key, sum(s.n)
    FROM analytics.metric_totals_sketch_1d AS s
    WHERE s.metric_id = $9 AND s.bucket = ANY ($7)
    GROUP BY 1, 2
), ranked AS (
    SELECT grp, key,
           sum(n) OVER (PARTITION BY grp ORDER BY key) AS running,
           sum(n) OVER (PARTITION BY grp) AS total
    FROM (SELECT grp, key, sum(n) AS n FROM keys GROUP BY grp, key) AS merged
), percentiles AS (
    SELECT grp,
           analytics.sketch_value(min(key) FILTER (
               WHERE running >= ceil(0.5::float8 * total::float8))) AS p50,
           analytics.sketch_value(min(key) FILTER (
               WHERE running >= ceil(0.95::float8 * total::float8))) AS p95,
           analytics.sketch_value(min(key) FILTER (
               WHERE running >= ceil(0.99::float8 * total::float8))) AS p99
    FROM ranked GROUP BY grp
), totals AS (
    SELECT grp, sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max
    FROM parts GROUP BY grp
)
SELECT t.grp, t.count, t.sum / nullif(t.count, 0) AS avg, t.sum, t.min, t.max,
       CASE WHEN p.p50 IS NOT NULL THEN  -- (greatest would turn a missing one into the min)
           ARRAY[least(greatest(p.p50, t.min), t.max), least(greatest(p.p95, t.min), t.max),
                 least(greatest(p.p99, t.min), t.max)]
       END AS percentiles
FROM totals AS t
LEFT JOIN percentiles AS p ON p.grp IS NOT DISTINCT FROM t.grp
WHERE t.count > 0
ORDER BY t.grp;

-- name: applied_migrations
SELECT version FROM _analytics.schema_migrations;

-- name: timeseries_merged
-- Figures per output bucket of width $13 over [$2, $3), from the same three non-overlapping
-- sources as statistics_merged ($4..$7 as there; for a raw-resolution answer $4 = $5 = $3,
-- so raw covers the window). The interval is a whole multiple of the source rollup's width,
-- so every hourly or daily row falls into exactly one output bucket. Empty buckets come back
-- with count 0 (gap filling). $1..$12 are those of statistics_merged.
-- With $14, a fraction, each bucket also has that percentile, merged from the sketches of the
-- same sources and clamped to the bucket's min and max, as in statistics_merged; the raw part
-- is read once for both. Without it (null), no sketch is read.
WITH groups AS (
    SELECT * FROM unnest($1::integer[], $8::text[]) AS g (series_id, grp)
), raw AS (
    -- As in statistics_merged: left edge, right edge, stale hours within [$10, $11).
    SELECT series_id, time, value FROM analytics.metric_events
    WHERE series_id = ANY ($1) AND time >= $2 AND time < $4
    UNION ALL
    SELECT series_id, time, value FROM analytics.metric_events
    WHERE series_id = ANY ($1) AND time >= $5 AND time < $3
    UNION ALL
    SELECT series_id, time, value FROM analytics.metric_events
    WHERE series_id = ANY ($1) AND time >= $10 AND time < $11
      AND time_bucket(INTERVAL '1 hour', time) = ANY ($6)
), raw_keys AS MATERIALIZED (
    -- Raw figures per group, bucket and sketch key (one null key when no percentile is asked
    -- for): the figures and the percentile's sketch both come from this one pass.
    SELECT g.grp, time_bucket($13::text::interval, e.time) AS bucket,
           CASE WHEN $14::float8 IS NOT NULL THEN analytics.sketch_key(e.value) END AS key,
           count(*)::numeric AS count, sum(e.value) AS sum, min(e.value) AS min,
           max(e.value) AS max
    FROM raw AS e
    JOIN groups AS g USING (series_id)
    GROUP BY 1, 2, 3
), parts AS (
    SELECT grp, bucket, sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max
    FROM raw_keys
    GROUP BY 1, 2
    UNION ALL
    SELECT g.grp, time_bucket($13::text::interval, r.bucket), sum(r.count), sum(r.sum),
           min(r.min), max(r.max)
    FROM analytics.metric_rollup_1h AS r
    JOIN groups AS g USING (series_id)
    WHERE $9::integer IS NULL AND r.series_id = ANY ($1) AND r.bucket = ANY ($12)
    GROUP BY 1, 2
    UNION ALL
    SELECT g.grp, time_bucket($13::text::interval, r.bucket), sum(r.count), sum(r.sum),
           min(r.min), max(r.max)
    FROM analytics.metric_rollup_1d AS r
    JOIN groups AS g USING (series_id)
    WHERE $9::integer IS NULL AND r.series_id = ANY ($1) AND r.bucket = ANY ($7)
    GROUP BY 1, 2
    UNION ALL
    SELECT NULL, time_bucket($13::text::interval, r.bucket), sum(r.count), sum(r.sum),
           min(r.min), max(r.max)
    FROM analytics.metric_totals_1h AS r
    WHERE r.metric_id = $9 AND r.bucket = ANY ($12)
    GROUP BY 1, 2
    UNION ALL
    SELECT NULL, time_bucket($13::text::interval, r.bucket), sum(r.count), sum(r.sum),
           min(r.min), max(r.max)
    FROM analytics.metric_totals_1d AS r
    WHERE r.metric_id = $9 AND r.bucket = ANY ($7)
    GROUP BY 1, 2
), totals AS (
    SELECT grp, bucket, sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min,
           max(max) AS max
    FROM parts GROUP BY 1, 2
), keys AS (
    SELECT grp, bucket, key, count AS n
    FROM raw_keys
    WHERE $14::float8 IS NOT NULL
    UNION ALL
    SELECT g.grp, time_bucket($13::text::interval, s.bucket), s.key, sum(s.n)
    FROM analytics.metric_sketch_1h AS s
    JOIN groups AS g USING (series_id)
    WHERE $14::float8 IS NOT NULL AND $9::integer IS NULL
      AND s.series_id = ANY ($1) AND s.bucket = ANY ($12)
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT g.grp, time_bucket($13::text::interval, s.bucket), s.key, sum(s.n)
    FROM analytics.metric_sketch_1d AS s
    JOIN groups AS g USING (series_id)
    WHERE $14::float8 IS NOT NULL AND $9::integer IS NULL
      AND s.series_id = ANY ($1) AND s.bucket = ANY ($7)
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT NULL, time_bucket($13::text::interval, s.bucket), s.key, sum(s.n)
    FROM analytics.metric_totals_sketch_1h AS s
    WHERE $14::float8 IS NOT NULL AND s.metric_id = $9 AND s.bucket = ANY ($12)
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT NULL, time_bucket($13::text::interval, s.bucket), s.key, sum(s.n)
    FROM analytics.metric_totals_sketch_1d AS s
    WHERE $14::float8 IS NOT NULL AND s.metric_id = $9 AND s.bucket = ANY ($7)
    GROUP BY 1, 2, 3
), ranked AS (
    SELECT grp, bucket, key,
           sum(n) OVER (PARTITION BY grp, bucket ORDER BY key) AS running,
           sum(n) OVER (PARTITION BY grp, bucket) AS total
    FROM (SELECT grp, bucket, key, sum(n) AS n FROM keys GROUP BY 1, 2, 3) AS merged
), percentiles AS (
    SELECT grp, bucket,
           analytics.sketch_value(min(key) FILTER (
               WHERE running >= ceil($14::float8 * total::float8))) AS value
    FROM ranked
    GROUP BY grp, bucket
), buckets AS (
    SELECT generate_series(time_bucket($13::text::interval, $2), $3 - INTERVAL '1 microsecond',
                           $13::text::interval) AS bucket
), wanted AS (
    SELECT grp, bucket FROM (SELECT DISTINCT grp FROM groups) AS gs CROSS JOIN buckets
)
SELECT w.grp, w.bucket, coalesce(t.count, 0) AS count, t.sum, t.min, t.max,
       t.sum / extract(epoch FROM (w.bucket + $13::text::interval) - w.bucket) AS rate,
       CASE WHEN p.value IS NOT NULL THEN least(greatest(p.value, t.min), t.max) END
           AS percentile
FROM wanted AS w
LEFT JOIN totals AS t ON t.grp IS NOT DISTINCT FROM w.grp AND t.bucket = w.bucket
LEFT JOIN percentiles AS p ON p.grp IS NOT DISTINCT FROM w.grp AND p.bucket = w.bucket
ORDER BY w.grp NULLS LAST, w.bucket;

-- name: metrics_list
SELECT m.name, m.metric_type::text AS metric_type, m.unit, m.description,
       count(s.id) AS series, m.created_at
FROM analytics.metrics AS m
LEFT JOIN analytics.series AS s ON s.metric_id = m.id
GROUP BY m.id
ORDER BY m.name;

-- name: metric_tags
-- Every tag key of a metric's series with its values and how many series carry each.
SELECT t.key, t.value, count(*) AS series
FROM analytics.series AS s
CROSS JOIN LATERAL jsonb_each_text(s.tags) AS t
WHERE s.metric_id = $1
GROUP BY t.key, t.value
ORDER BY t.key, t.value;

-- name: job_runs_api
SELECT id, job, started_at, finished_at,
       extract(epoch FROM finished_at - started_at) * 1000 AS duration_ms,
       rows_affected, outcome, error, detail, host, pid, trigger
FROM _analytics.job_runs
WHERE $1::text IS NULL OR job = $1
ORDER BY started_at DESC, id DESC
LIMIT $2;
