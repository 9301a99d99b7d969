-- Statements of the read path (query/). Parameters are asyncpg's $1, $2, ...

-- name: metric_by_name
SELECT id, name, metric_type::text AS metric_type, unit
FROM analytics.metrics
WHERE name = $1;

-- name: metric_series
-- Every series of a metric, with the value of the group_by tag ($2).
SELECT s.id, s.tags ->> $2 AS grp
FROM analytics.series AS s
WHERE s.metric_id = $1
ORDER BY s.id;

-- name: metric_series_filtered
-- The series of a metric that pass the tag filters, with the value of the group_by tag ($5).
-- The filters are ($2[i], $3[i]) pairs of a tag and an allowed value, over $4 distinct tags:
-- every tag named must have one of its values (AND across tags, OR within one). Each pair is
-- an index range of series_tags (OFFSET 0 keeps the planner from trading those probes for a
-- pass over all of the metric's tags), so the cost is that of the series selected, not of
-- the metric's. Filters and the group key are bound values, never SQL.
SELECT s.id, s.tags ->> $5 AS grp
FROM (
    SELECT t.series_id
    FROM unnest($2::text[], $3::text[]) AS f (key, value)
    CROSS JOIN LATERAL (
        SELECT t.series_id, t.key
        FROM analytics.series_tags AS t
        WHERE t.metric_id = $1 AND t.key = f.key AND t.value = f.value
        OFFSET 0
    ) AS t
    GROUP BY t.series_id
    HAVING count(DISTINCT t.key) = $4
) AS matched
JOIN analytics.series AS s ON s.id = matched.series_id
ORDER BY s.id;

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

-- name: applied_migrations
SELECT version FROM _analytics.schema_migrations;

-- name: timeseries_raw
-- Figures per output bucket of width $5 over [$3, $4) straight from raw events: a time series
-- of minute buckets older than the minute tier keeps. $1 series ids, $2 the group of each.
-- With $6, a fraction, each bucket also has that percentile, exact (percentile_disc).
-- Empty buckets come back with count 0 (gap filling).
WITH groups AS (
    SELECT * FROM unnest($1::integer[], $2::text[]) AS g (series_id, grp)
), totals AS (
    SELECT g.grp, time_bucket($5::text::interval, e.time) AS bucket, count(*) AS count,
           sum(e.value) AS sum, min(e.value) AS min, max(e.value) AS max,
           CASE WHEN $6::float8 IS NOT NULL THEN
               percentile_disc($6::float8) WITHIN GROUP (ORDER BY e.value)
           END AS percentile
    FROM analytics.metric_events AS e JOIN groups AS g USING (series_id)
    WHERE e.series_id = ANY ($1) AND e.time >= $3 AND e.time < $4
    GROUP BY 1, 2
), buckets AS (
    SELECT generate_series(time_bucket($5::text::interval, $3), $4 - INTERVAL '1 microsecond',
                           $5::text::interval) AS bucket
), wanted AS (
    SELECT grp, bucket FROM (SELECT DISTINCT grp FROM groups) AS gs CROSS JOIN buckets
)
SELECT w.grp, w.bucket, coalesce(t.count, 0) AS count, t.sum, t.min, t.max,
       t.sum / extract(epoch FROM (w.bucket + $5::text::interval) - w.bucket) AS rate,
       t.percentile
FROM wanted AS w
LEFT JOIN totals AS t ON t.grp IS NOT DISTINCT FROM w.grp AND t.bucket = w.bucket
ORDER BY w.grp NULLS LAST, w.bucket;

-- name: metrics_list
SELECT m.name, m.metric_type::text AS metric_type, m.unit, m.description,
       count(s.id) AS series, m.created_at
FROM analytics.metrics AS m
LEFT JOIN analytics.series AS s ON s.metric_id = m.id
GROUP BY m.id
ORDER BY m.name;

-- name: metric_tag_keys
-- A metric's tag keys in order, one index probe each however many series carry them (a loose
-- scan of series_tags: PostgreSQL 15 has no skip scan).
WITH RECURSIVE keys AS (
    (SELECT key FROM analytics.series_tags WHERE metric_id = $1 ORDER BY key LIMIT 1)
    UNION ALL
    SELECT (SELECT t.key FROM analytics.series_tags AS t
            WHERE t.metric_id = $1 AND t.key > k.key ORDER BY t.key LIMIT 1)
    FROM keys AS k
    WHERE k.key IS NOT NULL
)
SELECT key FROM keys WHERE key IS NOT NULL;

-- name: metric_tag_values
-- The first $3 values of one tag key of a metric, in order, each with how many series carry
-- it (read from the index, stopping after the page).
SELECT value, count(*) AS series
FROM analytics.series_tags
WHERE metric_id = $1 AND key = $2
GROUP BY value
ORDER BY value
LIMIT $3;

-- name: metric_tag_values_after
-- The next page: the first $3 values after $4.
SELECT value, count(*) AS series
FROM analytics.series_tags
WHERE metric_id = $1 AND key = $2 AND value > $4
GROUP BY value
ORDER BY value
LIMIT $3;

-- name: job_runs_api
SELECT id, job, started_at, finished_at,
       extract(epoch FROM finished_at - started_at) * 1000 AS duration_ms,
       rows_affected, outcome, error, detail, host, pid, trigger
FROM _analytics.job_runs
WHERE $1::text IS NULL OR job = $1
ORDER BY started_at DESC, id DESC
LIMIT $2;

-- name: metric_with_marks
-- A metric by name (no row when there is none) with where each tier is complete (see
-- query/plan.py) and the database's clock: what a statistics or time-series query plans by,
-- in one round trip.
SELECT m.id, m.name, m.metric_type::text AS metric_type, m.unit, w.*
FROM analytics.metrics AS m
CROSS JOIN (
    SELECT max(mark) FILTER (WHERE tier = '1h') AS hours,
           max(mark) FILTER (WHERE tier = '1d') AS days,
           max(mark) FILTER (WHERE tier = 'series_1m') AS series_minutes,
           max(mark) FILTER (WHERE tier = 'metric_1m') AS metric_minutes,
           now() AS now
    FROM _analytics.tier_watermarks
) AS w
WHERE m.name = $1;
