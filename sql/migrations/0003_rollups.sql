-- Rollups: one definition each, two ways to materialise it.
--
-- Each rollup's SELECT is written once, below, and handed to _analytics.create_rollup, which
-- makes it a continuous aggregate on the Community edition (timescaledb.license = 'timescale')
-- and a hypertable of the same name and columns on the Apache edition, where the rollup job
-- (jobs/rollups.py) fills it from the same definition. The query layer cannot tell them apart.
--
-- Freshness is the same on both: an hour listed in _analytics.rollup_invalidations (every
-- committed batch lists the hours it touched) is read from raw events; every other hour from
-- the rollups. Real-time aggregation is therefore off (materialized_only = true): the query
-- layer merges the not-yet-materialised tail itself, identically on both editions.

-- Percentile sketch: a logarithmic histogram in the manner of DDSketch. A value v > 0 falls in
-- bucket k = ceil(ln v / ln g) with g = (1 + a) / (1 - a), a = 0.009; every value in that
-- bucket lies within a relative 0.9% of the bucket's representative 2 g^k / (g + 1), so any
-- percentile read off the merged histogram is within 0.9% of the exact percentile_disc value
-- (0.1% is left for floating-point rounding at bucket edges). Negative values mirror the
-- positive buckets and zero has its own key; keys are biased by 50,000 so that they sort in
-- the order of the values they stand for (the full double range needs about 41,400 each way).
-- Merging sketches is summing counts per key; that is what makes them survive rolling up.
-- 128 keys cover a factor of ten.
-- (The representative 2 g^k / (g + 1) is exactly (1 - a) g^k = 0.991 g^k.)
CREATE FUNCTION analytics.sketch_key(value double precision) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN value > 0 THEN 50000 + ceil(ln(value) / 0.018000486023620893)::integer
        WHEN value < 0 THEN -(50000 + ceil(ln(-value) / 0.018000486023620893)::integer)
        ELSE 0
    END
$$;

CREATE FUNCTION analytics.sketch_value(key integer) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN key > 0 THEN 0.991 * exp((key - 50000) * 0.018000486023620893)
        WHEN key < 0 THEN -0.991 * exp((-key - 50000) * 0.018000486023620893)
        ELSE 0
    END
$$;

-- The rollups there are, with their definitions: the job reads them from here.
CREATE TABLE _analytics.rollups (
    name       text PRIMARY KEY,
    width      interval NOT NULL,
    source     text NOT NULL,
    definition text NOT NULL,
    position   integer NOT NULL UNIQUE
);

CREATE FUNCTION _analytics.create_rollup(
    rollup_name text, width interval, source text, definition text, key_columns text[],
    chunk_interval interval, refresh_start interval, refresh_end interval,
    refresh_every interval
) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE format(
            'CREATE MATERIALIZED VIEW analytics.%I WITH (timescaledb.continuous, '
            'timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) '
            'AS %s WITH NO DATA', rollup_name, definition);
        EXECUTE format('CREATE INDEX ON analytics.%I (%s)', rollup_name,
                       array_to_string(key_columns, ', '));
        PERFORM add_continuous_aggregate_policy(
            format('analytics.%I', rollup_name)::regclass, start_offset => refresh_start,
            end_offset => refresh_end, schedule_interval => refresh_every);
    ELSE
        EXECUTE format('CREATE TABLE analytics.%I AS %s WITH NO DATA', rollup_name, definition);
        EXECUTE format('ALTER TABLE analytics.%I ADD PRIMARY KEY (%s)', rollup_name,
                       array_to_string(key_columns, ', '));
        PERFORM create_hypertable(format('analytics.%I', rollup_name)::regclass,
                                  by_range('bucket', chunk_interval));
    END IF;
    INSERT INTO _analytics.rollups (name, width, source, definition, position)
    VALUES (rollup_name, width, source, definition,
            (SELECT count(*) FROM _analytics.rollups));
END
$fn$;

-- Hourly, over raw events: count, sum, min, max and the last value of each series-hour.
SELECT _analytics.create_rollup(
    'metric_rollup_1h', INTERVAL '1 hour', 'analytics.metric_events', $$
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
           series_id,
           count(*) AS count,
           sum(value) AS sum,
           min(value) AS min,
           max(value) AS max,
           last(value, time) AS last
    FROM analytics.metric_events
    GROUP BY 1, 2
$$, ARRAY['series_id', 'bucket'], INTERVAL '7 days', INTERVAL '3 days', INTERVAL '1 hour',
    INTERVAL '15 minutes');

-- Hourly sketch: one row per series-hour and sketch key.
SELECT _analytics.create_rollup(
    'metric_sketch_1h', INTERVAL '1 hour', 'analytics.metric_events', $$
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
           series_id,
           analytics.sketch_key(value) AS key,
           count(*) AS n
    FROM analytics.metric_events
    GROUP BY 1, 2, 3
$$, ARRAY['series_id', 'bucket', 'key'], INTERVAL '7 days', INTERVAL '3 days', INTERVAL '1 hour',
    INTERVAL '15 minutes');

-- Daily, over the hourly rollup (hierarchical): weeks and months are answered from these.
SELECT _analytics.create_rollup(
    'metric_rollup_1d', INTERVAL '1 day', 'analytics.metric_rollup_1h', $$
    SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
           series_id,
           sum(count)::bigint AS count,
           sum(sum) AS sum,
           min(min) AS min,
           max(max) AS max,
           last(last, bucket) AS last
    FROM analytics.metric_rollup_1h
    GROUP BY 1, 2
$$, ARRAY['series_id', 'bucket'], INTERVAL '30 days', INTERVAL '7 days', INTERVAL '1 day',
    INTERVAL '1 hour');

SELECT _analytics.create_rollup(
    'metric_sketch_1d', INTERVAL '1 day', 'analytics.metric_sketch_1h', $$
    SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
           series_id,
           key,
           sum(n)::bigint AS n
    FROM analytics.metric_sketch_1h
    GROUP BY 1, 2, 3
$$, ARRAY['series_id', 'bucket', 'key'], INTERVAL '30 days', INTERVAL '7 days', INTERVAL '1 day',
    INTERVAL '1 hour');

-- Per metric, all its series together: what a query without tag filters or group_by reads.
-- Merging per-series sketches of 200 series over 30 days means summing about a million rows;
-- these hold a few thousand for the same answer.
SELECT _analytics.create_rollup(
    'metric_totals_1h', INTERVAL '1 hour', 'analytics.metric_events', $$
    SELECT time_bucket(INTERVAL '1 hour', e.time) AS bucket,
           s.metric_id,
           count(*) AS count,
           sum(e.value) AS sum,
           min(e.value) AS min,
           max(e.value) AS max
    FROM analytics.metric_events AS e
    JOIN analytics.series AS s ON s.id = e.series_id
    GROUP BY 1, 2
$$, ARRAY['metric_id', 'bucket'], INTERVAL '7 days', INTERVAL '3 days', INTERVAL '1 hour',
    INTERVAL '15 minutes');

SELECT _analytics.create_rollup(
    'metric_totals_sketch_1h', INTERVAL '1 hour', 'analytics.metric_events', $$
    SELECT time_bucket(INTERVAL '1 hour', e.time) AS bucket,
           s.metric_id,
           analytics.sketch_key(e.value) AS key,
           count(*) AS n
    FROM analytics.metric_events AS e
    JOIN analytics.series AS s ON s.id = e.series_id
    GROUP BY 1, 2, 3
$$, ARRAY['metric_id', 'bucket', 'key'], INTERVAL '7 days', INTERVAL '3 days', INTERVAL '1 hour',
    INTERVAL '15 minutes');

SELECT _analytics.create_rollup(
    'metric_totals_1d', INTERVAL '1 day', 'analytics.metric_totals_1h', $$
    SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
           metric_id,
           sum(count)::bigint AS count,
           sum(sum) AS sum,
           min(min) AS min,
           max(max) AS max
    FROM analytics.metric_totals_1h
    GROUP BY 1, 2
$$, ARRAY['metric_id', 'bucket'], INTERVAL '30 days', INTERVAL '7 days', INTERVAL '1 day',
    INTERVAL '1 hour');

SELECT _analytics.create_rollup(
    'metric_totals_sketch_1d', INTERVAL '1 day', 'analytics.metric_totals_sketch_1h', $$
    SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
           metric_id,
           key,
           sum(n)::bigint AS n
    FROM analytics.metric_totals_sketch_1h
    GROUP BY 1, 2, 3
$$, ARRAY['metric_id', 'bucket', 'key'], INTERVAL '30 days', INTERVAL '7 days', INTERVAL '1 day',
    INTERVAL '1 hour');

-- The job takes invalidations by id, so that it deletes exactly the rows it has processed.
ALTER TABLE _analytics.rollup_invalidations ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
