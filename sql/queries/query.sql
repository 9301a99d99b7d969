-- Statements of the read path (query/). Parameters are asyncpg's $1, $2, ...

-- name: metric_by_name
SELECT id, name, metric_type::text AS metric_type, unit
FROM analytics.metrics
WHERE name = $1;

-- name: statistics_raw
-- Exact statistics of one metric over [$2, $3), all its series, straight from raw events.
-- percentile_disc returns an observed value (the exact reference for the rollup percentiles).
-- `= ANY (ARRAY(subquery))` turns the series list into one index condition on
-- metric_events (series_id, time): a bitmap scan of exactly the rows asked for.
SELECT count(*) AS count,
       avg(e.value) AS avg,
       min(e.value) AS min,
       max(e.value) AS max,
       sum(e.value) AS sum,
       percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY e.value) AS percentiles
FROM analytics.metric_events AS e
WHERE e.series_id = ANY (ARRAY(SELECT id FROM analytics.series WHERE metric_id = $1))
  AND e.time >= $2
  AND e.time < $3;

-- name: applied_migrations
SELECT version FROM _analytics.schema_migrations;
